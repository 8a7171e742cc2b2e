"""Health figures of the inference component, computed from given times (no clocks involved)."""

from __future__ import annotations

import pytest

from vla_edge import messages
from vla_edge.components.inference.metrics import RATE_WINDOW_S, InferenceMetrics

MODEL = messages.ModelRef(name="m", version="1", sha256="0" * 64)


def chunk(t_start: float, count: int = 10, dt: float = 0.1) -> messages.ActionChunk:
    return messages.ActionChunk(model=MODEL, t_created=t_start, t_observation=t_start, t_start=t_start, dt=dt,
                                names=["a"], actions=[[0.0]] * count)


def test_queue_depth_is_what_the_previous_chunk_still_had_ahead() -> None:
    stats = InferenceMetrics()
    assert stats.published(chunk(100.0), 100.0) is False  # nothing before it
    assert stats.as_dict(100.0)["queue_depth_s"] is None
    # published at 100.65: actions 7, 8, 9 of the first chunk (100.7, 100.8, 100.9) were still ahead
    assert stats.published(chunk(100.7), 100.65) is False
    figures = stats.as_dict(100.65)
    assert figures["queue_depth_s"] == pytest.approx(0.35) and figures["queue_depth_actions"] == 3.0
    # published at 101.8, after the second chunk's last action (101.6): the actuator had run dry
    assert stats.published(chunk(101.8), 101.8) is True
    figures = stats.as_dict(101.8)
    assert figures["queue_depth_s"] == 0.0 and figures["queue_depth_actions"] == 0.0
    assert figures["queue_depth_min_s"] == 0.0


def test_an_action_due_exactly_now_counts_as_ahead() -> None:
    stats = InferenceMetrics()
    stats.published(chunk(10.0, count=4, dt=0.5), 10.0)
    stats.published(chunk(11.0), 11.0)  # action 2 of the first chunk is meant for 11.0 exactly
    assert stats.as_dict(11.0)["queue_depth_actions"] == 2.0


def test_chunk_rate_over_the_window() -> None:
    stats = InferenceMetrics()
    assert stats.chunks_per_s(0.0) is None
    stats.published(chunk(0.0), 0.0)
    assert stats.chunks_per_s(0.1) is None  # one chunk is no rate yet
    for t in (0.5, 1.0, 1.5, 2.0):
        stats.published(chunk(t), t)
    assert stats.chunks_per_s(2.0) == pytest.approx(2.0)  # 4 intervals in 2 s
    for k in range(1, 40):
        stats.published(chunk(2.0 + 0.5 * k), 2.0 + 0.5 * k)
    now = 2.0 + 0.5 * 39
    assert stats.chunks_per_s(now) == pytest.approx(2.0)
    assert stats.chunks_per_s(now + RATE_WINDOW_S + 1) == 0.0  # it stopped publishing: the rate falls to 0


def test_latency_percentiles_and_ages() -> None:
    stats = InferenceMetrics()
    for value in range(1, 101):
        stats.inference(float(value), 40.0, 5.0)
    figures = stats.as_dict(0.0)
    assert figures["inference_latency_p50_ms"] == pytest.approx(50.5)
    assert figures["inference_latency_p99_ms"] == pytest.approx(99.01)
    assert (figures["observation_age_ms"], figures["joint_state_age_ms"]) == (40.0, 5.0)
