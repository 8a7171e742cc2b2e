"""The updater's process stays small: no torch or LeRobot ever, boto3 only once an S3 source is used."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
for name in ("torch", "lerobot", "cv2", "boto3", "botocore", "serial", "scservo_sdk"):
    sys.modules[name] = None  # importing it now raises ImportError
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.components.model_updater.__main__ import main
from vla_edge.components.model_updater.component import ModelUpdaterComponent
from vla_edge.components.model_updater.config import ModelUpdaterConfig
import tempfile
store = tempfile.mkdtemp()
component = ModelUpdaterComponent(InMemoryBroker().bus(), ModelUpdaterConfig(store_dir=store), thing_name="t")
component.close()
print("ok")
"""


def test_the_updater_starts_without_torch_lerobot_or_boto3() -> None:
    result = subprocess.run([sys.executable, "-c", CODE], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
