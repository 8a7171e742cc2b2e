"""Property: whatever arrives on the bus, no goal write leaves the joint limits or exceeds the step limit.

The real pipeline runs: raw payloads go through the in-memory broker, the component's
:class:`~vla_edge.components.base.MessageRouter` (decode, validation), the admission into
:class:`~vla_edge.components.actuator.schedule.ActionSchedule` with each ``chunkMerge``, and the
component's control tick (``_tick(slot)``) with explicit wall-clock slots, down to the
:class:`support.servos.FakeServoBus`, which records every goal write. No real-time sleeps.

Cases: ``test_no_goal_write_outside_limits_or_above_max_step`` runs 10,000 hypothesis
examples; each example is a fresh actuator fed a random sequence of payloads and ticks.
"""

from __future__ import annotations

import logging
import math
import random
import typing
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.actuator import MODEL, NAMES, actuator_config
from support.servos import FakeServoBus

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.components.actuator.component import ActuatorComponent
from vla_edge.components.actuator.merge import MergeName
from vla_edge.components.actuator.units import degrees_to_ticks

BASE = 1_800_000_000.0
MERGES: tuple[str, ...] = typing.get_args(MergeName)
CONFIGS = {merge: actuator_config("fake://servos", chunkMerge=merge, holdAfterS=0.3, torqueOffAfterS=60.0)
           for merge in MERGES}
_any = next(iter(CONFIGS.values()))
IDS = _any.motor_ids
LOWER = {j.id: degrees_to_ticks(j.min_deg) for j in _any.joints}
UPPER = {j.id: degrees_to_ticks(j.max_deg) for j in _any.joints}
STEP_TICKS = math.ceil(_any.max_step_deg * 4096 / 360.0)  # maxStepDeg in ticks, rounded up
TICK_S = _any.tick_s
OTHER_MODEL = messages.ModelRef(name="other-policy", version="2", sha256="cd" * 32)

# --- strategies ---------------------------------------------------------------------------

extreme = st.sampled_from([0.0, -0.0, 1e-300, -1e-300, 180.0, -180.0, 1e6, -1e6, 1e300, -1e300,
                           math.nan, math.inf, -math.inf])
value = st.one_of(st.floats(-200.0, 200.0), st.floats(allow_nan=True, allow_infinity=True), extreme)
row = st.lists(value, min_size=6, max_size=6)
bad_row = st.lists(value, min_size=0, max_size=8)
names = st.one_of(
    st.just(NAMES),
    st.permutations(NAMES),
    st.lists(st.sampled_from([*NAMES, "elbow", "x", ""]), min_size=0, max_size=8),
)
offset = st.one_of(st.floats(-1.0, 1.0), st.sampled_from([-1e6, -60.0, -5.0, 5.5, 60.0, 1e6]),
                   st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def chunk_payload(draw: st.DrawFn) -> dict[str, Any]:
    """A chunk as JSON, mostly well formed, sometimes not in one or more fields."""
    width_ok = draw(st.booleans())
    actions = draw(st.lists(row if width_ok else bad_row, min_size=1, max_size=12))
    start = BASE + draw(offset)
    body: dict[str, Any] = {
        "kind": messages.ActionChunk.kind,
        "schema": messages.SCHEMA_VERSION,
        "chunk_id": draw(st.sampled_from(["c1", "c2", "c3"])) if draw(st.booleans()) else draw(st.uuids()).hex,
        "model": draw(st.sampled_from([MODEL, OTHER_MODEL])).model_dump(),
        "t_created": start - 0.05,
        "t_observation": start - 0.06,
        "t_start": start,
        "dt": draw(st.one_of(st.just(1 / 30), st.floats(-1.0, 2.0), extreme)),
        "names": draw(names) if draw(st.integers(0, 3)) == 0 else NAMES,
        "actions": actions,
    }
    if draw(st.integers(0, 9)) == 0:  # drop or scramble a field
        key = draw(st.sampled_from(sorted(body)))
        if draw(st.booleans()):
            del body[key]
        else:
            body[key] = draw(st.one_of(st.none(), st.text(max_size=5), st.integers(), value))
    return body


junk = st.one_of(
    st.binary(max_size=64),
    st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.integers(), value, st.text(max_size=8)), max_size=5),
)
estop = st.builds(lambda engaged: messages.encode(messages.EStop(t=BASE, engaged=engaged, source="prop"))[1],
                  st.booleans())
status = st.builds(
    lambda model, state: messages.encode(messages.ModelStatus(t=BASE, state=state, model=model))[1],
    st.sampled_from([MODEL, OTHER_MODEL]), st.sampled_from(["active", "staging", "none"]),
)
event = st.one_of(
    st.tuples(st.just("tick"), st.integers(1, 4)),
    st.tuples(st.just(messages.TOPIC_ACTION_CHUNK), chunk_payload()),
    st.tuples(st.just(messages.TOPIC_ACTION_CHUNK), junk),
    st.tuples(st.just(messages.TOPIC_ESTOP), estop),
    st.tuples(st.just(messages.TOPIC_MODEL_STATUS), status),
)
start_positions = st.fixed_dictionaries({i: st.integers(LOWER[i], UPPER[i]) for i in IDS})


# --- the same payloads from a seeded generator (much cheaper than hypothesis draws) ----------

EXTREMES = [0.0, -0.0, 1e-300, -1e-300, 180.0, -180.0, 1e6, -1e6, 1e300, -1e300, math.nan, math.inf, -math.inf]
FINITE_EXTREMES = [0.0, 180.0, -180.0, 1e6, -1e6, 1e300, -1e300]
OFFSETS = [-1e6, -60.0, -5.0, 5.5, 60.0, 1e6, math.nan, math.inf, -math.inf]


def random_value(rng: random.Random) -> Any:
    pick = rng.random()
    if pick < 0.75:
        return rng.uniform(-200.0, 200.0)
    if pick < 0.95:
        return rng.choice(EXTREMES)
    return rng.choice([None, "1.0", True, [1.0], {"x": 1}])


def random_chunk(rng: random.Random) -> dict[str, Any]:
    width_ok = rng.random() < 0.8
    actions = [[random_value(rng) for _ in range(6 if width_ok else rng.randint(0, 8))]
               for _ in range(rng.randint(1, 12))]
    if rng.random() < 0.6:  # finite, well-shaped, often far out of range: the chunks that drive the arm
        actions = [[rng.uniform(-250.0, 250.0) if rng.random() < 0.8 else rng.choice(FINITE_EXTREMES)
                    for _ in range(6)] for _ in range(rng.randint(1, 40))]
    start = BASE + (rng.uniform(-0.3, 0.6) if rng.random() < 0.85 else rng.choice(OFFSETS))
    names_pick = rng.random()
    if names_pick < 0.8:
        chunk_names: Any = NAMES
    elif names_pick < 0.9:
        chunk_names = rng.sample(NAMES, len(NAMES))
    else:
        chunk_names = [rng.choice([*NAMES, "elbow", "x", ""]) for _ in range(rng.randint(0, 8))]
    body: dict[str, Any] = {
        "kind": messages.ActionChunk.kind,
        "schema": messages.SCHEMA_VERSION,
        "chunk_id": rng.choice(["c1", "c2", "c3", f"r{rng.getrandbits(64):x}"]),
        "model": rng.choice([MODEL, MODEL, MODEL, OTHER_MODEL]).model_dump(),
        "t_created": start - 0.05,
        "t_observation": start - 0.06,
        "t_start": start,
        "dt": 1 / 30 if rng.random() < 0.7 else rng.choice([*EXTREMES, rng.uniform(-1.0, 2.0), 0.01, 1.0]),
        "names": chunk_names,
        "actions": actions,
    }
    if rng.random() < 0.1:
        key = rng.choice(sorted(body))
        if rng.random() < 0.5:
            del body[key]
        else:
            body[key] = random_value(rng)
    return body


def random_event(rng: random.Random) -> tuple[str, Any]:
    pick = rng.random()
    if pick < 0.3:
        return "tick", rng.randint(1, 8)
    if pick < 0.75:
        return messages.TOPIC_ACTION_CHUNK, random_chunk(rng)
    if pick < 0.85:
        if rng.random() < 0.5:
            return messages.TOPIC_ACTION_CHUNK, rng.randbytes(rng.randint(0, 64))
        return messages.TOPIC_ACTION_CHUNK, {str(rng.random()): random_value(rng) for _ in range(rng.randint(0, 4))}
    if pick < 0.9:
        engaged = rng.random() < 0.5
        return messages.TOPIC_ESTOP, messages.encode(messages.EStop(t=BASE, engaged=engaged, source="prop"))[1]
    state = rng.choice(["active", "active", "staging", "none"])
    model = rng.choice([MODEL, MODEL, OTHER_MODEL])
    return messages.TOPIC_MODEL_STATUS, messages.encode(messages.ModelStatus(t=BASE, state=state, model=model))[1]


# --- the property -------------------------------------------------------------------------


def check_writes(servos: FakeServoBus, history: list[tuple[str, Any]]) -> None:
    """Replay the fake's log: every write within limits, and within one step of its reference."""
    previous: dict[int, int] | None = None
    for kind, record in history:
        if kind == "torque":
            if not record:
                previous = None  # torque off: the next reference is the measured position
            continue
        goals, present = record
        for i, goal in goals.items():
            assert LOWER[i] <= goal <= UPPER[i], f"servo {i}: goal {goal} outside [{LOWER[i]}, {UPPER[i]}]"
            if goal == present[i]:
                continue  # a hold: the goal is where the servo is, nothing moves
            reference = present[i] if previous is None else previous[i]
            assert abs(goal - reference) <= STEP_TICKS + 1, (
                f"servo {i}: goal {goal} is {abs(goal - reference)} ticks from {reference} (max {STEP_TICKS} + 1)"
            )
        previous = {**(previous or present), **goals}


class RecordingServos(FakeServoBus):
    """The fake, also logging each write with the positions the servos had at that moment."""

    def __init__(self, start: dict[int, int], speed_ticks: int) -> None:
        super().__init__(IDS, start, speed_ticks)
        self.history: list[tuple[str, Any]] = []

    def sync_write_goals(self, goals: Any) -> None:
        self.history.append(("write", (dict(goals), dict(self.present))))
        super().sync_write_goals(goals)

    def set_torque(self, enabled: bool) -> None:
        self.history.append(("torque", enabled))
        super().set_torque(enabled)


def run_pipeline(merge: str, start: dict[int, int], speed: int, events: list[tuple[str, Any]]) -> None:
    log = logging.getLogger("vla_edge.actuator")
    disabled, log.disabled = log.disabled, True  # thousands of rejection warnings would dominate the run
    try:
        clock = [BASE]
        broker = InMemoryBroker()
        servos = RecordingServos(start, speed)
        component = ActuatorComponent(broker.bus(), CONFIGS[merge], servos=servos, clock=lambda: clock[0])
        component.subscribe()
        slot = BASE - TICK_S + component.config.tick_phase_s
        for topic, payload in [("tick", 1), *events, ("tick", 4)]:
            if topic == "tick":
                for _ in range(payload):
                    slot += TICK_S
                    clock[0] = slot
                    component._tick(slot)
            else:
                broker.bus().publish(topic, payload)
        assert component.counters.get("handler_errors") == 0
        assert servos.goal_writes, "connecting holds the arm: at least one write"
        check_writes(servos, servos.history)
    finally:
        log.disabled = disabled


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(merge=st.sampled_from(MERGES), seed=st.integers(0, 2**64 - 1))
def test_no_goal_write_outside_limits_or_above_max_step(merge: str, seed: int) -> None:
    """The main property, 10,000 cases: hypothesis draws the merge and a seed; the seed draws the arm's
    start, its speed and the payload sequence (cheap to generate, so 10,000 full pipeline runs fit in
    well under a minute). A failure reports the seed, which replays the exact case."""
    rng = random.Random(seed)
    start = {i: rng.randint(LOWER[i], UPPER[i]) for i in IDS}
    speed = rng.randint(1, 200)
    run_pipeline(merge, start, speed, [random_event(rng) for _ in range(rng.randint(1, 8))])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    merge=st.sampled_from(MERGES),
    start=start_positions,
    speed=st.integers(1, 200),
    events=st.lists(event, min_size=1, max_size=10),
)
def test_no_goal_write_outside_limits_or_above_max_step_shrinkable(
    merge: str, start: dict[int, int], speed: int, events: list[tuple[str, Any]]
) -> None:
    """The same property with every payload drawn by hypothesis (shrinks to a minimal failing sequence)."""
    run_pipeline(merge, start, speed, events)
