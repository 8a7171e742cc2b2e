from __future__ import annotations

import threading

import pytest
from support import wait_for

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.cameras.synthetic import frame_number
from vla_edge.components.base import load_config
from vla_edge.components.camera.component import CameraComponent
from vla_edge.components.camera.config import CameraComponentConfig
from vla_edge.errors import ConfigurationError


def test_frames_are_published_in_order_with_timestamps(broker: InMemoryBroker) -> None:
    config = load_config(CameraComponentConfig, {"cameras": [{"name": "front", "width": 32, "height": 24, "fps": 100}]})
    frames: list[messages.Frame] = []
    broker.bus().subscribe(messages.TOPIC_FRAME_ALL, lambda t, p: frames.append(messages.decode(t, p)))
    component = CameraComponent(broker.bus(), config)
    stop = threading.Event()
    thread = threading.Thread(target=component.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: len(frames) >= 10)
    finally:
        stop.set()
        thread.join(10)
    seqs = [f.seq for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(b.t_capture >= a.t_capture for a, b in zip(frames, frames[1:]))
    assert [frame_number(f.array()) for f in frames] == seqs
    assert frames[0].array().shape == (24, 32, 3)


def test_unopenable_source_reports_errored_and_keeps_running(broker: InMemoryBroker, tmp_path) -> None:
    config = load_config(
        CameraComponentConfig,
        {"cameras": [{"name": "gone", "source": str(tmp_path / "missing.mp4")}], "reconnectBackoffS": 0.05},
    )
    bus = broker.bus()
    component = CameraComponent(bus, config)
    stop = threading.Event()
    thread = threading.Thread(target=component.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: component.counters.get("camera_errors.gone") >= 2)
        wait_for(lambda: "ERRORED" in bus.states)
        assert "cannot open source" in component.detail
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cameras": [{"name": "a"}, {"name": "a"}]}, "unique"),
        ({"cameras": [{"fps": 0}]}, "fps"),
        ({"cameras": []}, "cameras"),
        ({"camras": []}, "camras"),
    ],
)
def test_bad_configuration_is_rejected_with_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_config(CameraComponentConfig, raw)
