from __future__ import annotations

import json

import numpy as np
import pytest

from vla_edge import messages as m
from vla_edge.errors import InvalidMessage, MalformedMessage, OversizedMessage, UnexpectedTopic, UnsupportedSchema

REF = m.ModelRef(name="demo", version="1", sha256="a" * 64)


def chunk(**changes: object) -> m.ActionChunk:
    fields = dict(model=REF, t_created=1.0, t_observation=0.9, t_start=1.1, dt=1 / 30, names=["a", "b"], actions=[[1.0, 2.0], [3.0, 4.0]])
    fields.update(changes)
    return m.ActionChunk(**fields)


def test_frame_round_trip_keeps_pixels_and_topic() -> None:
    image = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    frame = m.Frame.from_array("wrist", 7, image, t_capture=123.5)
    topic, payload = m.encode(frame)
    assert topic == "vla-edge/debug/snapshot/wrist"
    assert isinstance(payload, bytes) and payload.startswith(b"VLAF")
    back = m.decode(topic, payload)
    assert isinstance(back, m.Frame)
    assert (back.seq, back.t_capture) == (7, 123.5)
    np.testing.assert_array_equal(back.array(), image)


def test_json_messages_round_trip_through_real_json() -> None:
    for message in (
        m.FrameReady(camera="front", seq=3, t_capture=1.5, height=480, width=640, slot=2, segment="/dev/shm/x/front.ring"),
        m.SnapshotRequest(camera="front"),
        chunk(),
        m.JointState(t=1.0, names=["a"], positions=[0.5], latency_ms=12.0),
        m.TaskInstruction(text="pick up the cube"),
        m.EStop(t=2.0, engaged=True, reason="test"),
        m.ModelStatus(t=3.0, state="active", model=REF),
        m.ComponentHealth(t=4.0, component="camera", state="RUNNING", counters={"x": 1}),
    ):
        topic, payload = m.encode(message)
        assert isinstance(payload, dict)
        assert m.decode(topic, json.loads(json.dumps(payload))) == message


def test_binary_json_payload_is_accepted() -> None:
    topic, payload = m.encode(m.TaskInstruction(text="wave"))
    assert m.decode(topic, json.dumps(payload).encode()) == m.TaskInstruction(text="wave")


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"{not json", MalformedMessage),
        (b"\xff\xfe", MalformedMessage),
        (b"[1, 2]", MalformedMessage),
        (b"x" * (m.MAX_JSON_BYTES + 1), OversizedMessage),
    ],
)
def test_bad_bytes_are_rejected_with_a_reason(payload: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        m.decode(m.TOPIC_ACTION_CHUNK, payload)
    assert m.TOPIC_ACTION_CHUNK in str(info.value)


def test_unknown_schema_version_is_rejected() -> None:
    topic, payload = m.encode(chunk())
    payload["schema"] = 99
    with pytest.raises(UnsupportedSchema, match="schema 99"):
        m.decode(topic, payload)


def test_nan_and_infinity_in_actions_are_rejected() -> None:
    topic, payload = m.encode(chunk())
    for bad in (float("nan"), float("inf"), float("-inf")):
        payload["actions"] = [[1.0, bad]]
        with pytest.raises(InvalidMessage, match="non-finite"):
            m.decode(topic, json.loads(json.dumps(payload)))
    with pytest.raises(ValueError):
        chunk(actions=[[float("nan"), 1.0]])


def test_wrong_width_unknown_field_and_kind_mismatch_are_rejected() -> None:
    topic, payload = m.encode(chunk())
    with pytest.raises(InvalidMessage, match="2 joints"):
        m.decode(topic, {**payload, "actions": [[1.0]]})
    with pytest.raises(InvalidMessage, match="Extra inputs"):
        m.decode(topic, {**payload, "surprise": 1})
    with pytest.raises(InvalidMessage, match="carries 'action_chunk'"):
        m.decode(topic, {**payload, "kind": "estop"})


def test_oversized_json_dict_is_rejected() -> None:
    topic, payload = m.encode(m.TaskInstruction(text="x"))
    payload["text"] = "y" * (m.MAX_JSON_BYTES + 10)
    with pytest.raises(OversizedMessage):
        m.decode(topic, payload)


def test_unexpected_topic_is_rejected() -> None:
    with pytest.raises(UnexpectedTopic, match="no message contract"):
        m.decode("vla-edge/somewhere/else", {"schema": 1})


def test_frame_framing_errors() -> None:
    frame = m.Frame.from_array("front", 1, np.zeros((2, 2, 3), np.uint8))
    topic, payload = m.encode(frame)
    assert isinstance(payload, bytes)
    with pytest.raises(MalformedMessage, match="must be binary"):
        m.decode(topic, {"schema": 1})
    with pytest.raises(MalformedMessage, match="does not start"):
        m.decode(topic, b"XXXX" + payload[4:])
    with pytest.raises(InvalidMessage, match="needs 12 bytes"):
        m.decode(topic, payload[:-1])
    with pytest.raises(InvalidMessage, match="arrived on"):
        m.decode("vla-edge/debug/snapshot/other", payload)
    with pytest.raises(OversizedMessage):
        m.decode(topic, payload + b"\0" * m.MAX_FRAME_BYTES)


def test_frame_ready_must_arrive_on_its_cameras_topic() -> None:
    ready = m.FrameReady(camera="front", seq=3, t_capture=1.5, height=4, width=4, slot=0, segment="/x/front.ring")
    topic, payload = m.encode(ready)
    assert topic == "vla-edge/camera/front/frame"
    with pytest.raises(InvalidMessage, match="arrived on"):
        m.decode("vla-edge/camera/wrist/frame", payload)


def test_jpeg_frames_must_carry_jpeg_data() -> None:
    jpeg = m.Frame(camera="front", seq=1, t_capture=1.0, height=2, width=2, encoding="jpeg", pixels=b"\xff\xd8rest")
    topic, payload = m.encode(jpeg)
    assert m.decode(topic, payload) == jpeg
    with pytest.raises(ValueError, match="JPEG"):
        m.Frame(camera="front", seq=1, t_capture=1.0, height=2, width=2, encoding="jpeg", pixels=b"png?")
    with pytest.raises(InvalidMessage, match="jpeg-encoded"):
        jpeg.array()
