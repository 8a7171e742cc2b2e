"""The inference entry point as a real process against the local core: offline, baked model, SIGTERM.

The process is ``python -m vla_edge.components.inference`` with one addition, made by a small
wrapper script: the first real inference (after the warm-up) waits at the policy boundary until
the test says go. The test sends SIGTERM while it waits, so the signal lands mid-inference.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support import wait_for
from support.inference import Rings, joints
from support.ipc import PUBLISH, SUBSCRIBE, short_run_dir, write_recipe
from support.policy import ACT_CAMERAS

from vla_edge import messages
from vla_edge.bus.ipc import GreengrassIpcBus
from vla_edge.core.server import LocalCore

ROOT = Path(__file__).resolve().parents[3]
INFERENCE = "com.vlaedge.Inference"
FEEDER = "com.test.Feeder"
FIVE = ["a", "b", "c", "d", "e"]
WARMUP = 1

GATED_ENTRY = """
import os, sys, time
from pathlib import Path

from vla_edge.components.inference import __main__ as entry
from vla_edge.policies.policy import LoadedPolicy

gate = Path(os.environ["TEST_GATE_DIR"])
original = LoadedPolicy.predict_chunk
calls = []


def gated(self, observation, history=()):
    calls.append(1)
    if len(calls) == int(os.environ["TEST_GATE_AT_CALL"]):
        import huggingface_hub.constants as hub

        (gate / "started").write_text(str(hub.HF_HUB_OFFLINE))
        while not (gate / "go").exists():
            time.sleep(0.01)
    return original(self, observation, history)


LoadedPolicy.predict_chunk = gated
sys.exit(entry.main())
"""


def test_sigterm_mid_inference_publishes_that_chunk_and_exits_0(tmp_path: Path, act_dir: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    script = tmp_path / "gated_inference.py"
    script.write_text(GATED_ENTRY)
    rings = Rings(tmp_path / "frames")
    feeder_recipe = write_recipe(tmp_path, FEEDER, pubsub=[
        ([PUBLISH], [*(f"vla-edge/camera/{c}/frame" for c in ACT_CAMERAS), messages.TOPIC_JOINT_STATE]),
        ([SUBSCRIBE], [messages.TOPIC_ACTION_CHUNK]),
    ])
    # policyPath stays empty: the process must take $VLA_EDGE_POLICY_PATH, as in the inference image
    overrides = {INFERENCE: {"frameDir": str(rings.directory), "cameras": list(ACT_CAMERAS), "jointNames": FIVE,
                             "warmupInferences": WARMUP, "maxObservationAgeS": 30.0, "cacheDir": str(tmp_path)}}
    log = tmp_path / "inference.log"
    chunks: list[messages.ActionChunk] = []
    recipes = [ROOT / "components/inference/recipe.yaml", feeder_recipe]
    with short_run_dir() as run_dir, LocalCore(run_dir, recipes, overrides) as core, log.open("w") as out:
        feeder = GreengrassIpcBus.connect(environment=core.environment(FEEDER))
        env = {**os.environ, **core.environment(INFERENCE), "VLA_EDGE_POLICY_PATH": str(act_dir),
               "TEST_GATE_DIR": str(gate), "TEST_GATE_AT_CALL": str(WARMUP + 1)}
        env.pop("HF_HUB_OFFLINE", None)  # the entry point must set it itself
        process = subprocess.Popen([sys.executable, str(script)], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            feeder.subscribe(messages.TOPIC_ACTION_CHUNK, lambda t, p: chunks.append(messages.decode(t, p)))
            wait_for(lambda: core.component_states().get(INFERENCE) == "RUNNING" or process.poll() is not None,
                     timeout=120)
            assert process.poll() is None, log.read_text()
            sent = [rings.frame(camera=camera, shape=(48, 64)) for camera in ACT_CAMERAS]
            for item in (*sent, joints(FIVE)):
                feeder.publish(*messages.encode(item))
            wait_for(lambda: (gate / "started").exists() or process.poll() is not None, timeout=60)
            assert process.poll() is None, log.read_text()

            process.send_signal(signal.SIGTERM)  # the inference is in progress (held at the gate)
            wait_for(lambda: "received signal 15" in log.read_text(), timeout=30)
            time.sleep(0.2)  # a process that wrongly stopped mid-inference would have exited by now
            assert process.poll() is None and chunks == []
            (gate / "go").touch()
            assert process.wait(timeout=60) == 0, log.read_text()
            wait_for(lambda: chunks, timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            feeder.close()
            rings.close()
    text = log.read_text()
    assert (gate / "started").read_text() == "True"  # HF_HUB_OFFLINE was on before huggingface_hub loaded
    (chunk,) = chunks
    assert chunk.names == FIVE and len(chunk.actions) == 8
    assert chunk.t_observation == max(frame.t_capture for frame in sent)
    assert "from $VLA_EDGE_POLICY_PATH" in text and str(act_dir) in text
    assert "stopped cleanly" in text
