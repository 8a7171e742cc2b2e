"""Devices install only boto3 for the updater: nothing in it may import torch or LeRobot."""

from __future__ import annotations

import subprocess
import sys

_BLOCKED = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # any import of it now raises ImportError
import {modules}
"""


def _imports(modules: list[str], blocked: list[str]) -> subprocess.CompletedProcess[str]:
    code = _BLOCKED.format(blocked=blocked, modules=", ".join(modules))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_manifest_store_and_cli_need_neither_torch_lerobot_nor_boto3() -> None:
    result = _imports(
        ["vla_edge.updater", "vla_edge.updater.cli", "vla_edge.updater.local", "vla_edge.updater.store"],
        ["torch", "lerobot", "boto3", "botocore"],
    )
    assert result.returncode == 0, result.stderr


def test_the_s3_download_needs_boto3_only() -> None:
    result = _imports(["vla_edge.updater.download"], ["torch", "lerobot"])
    assert result.returncode == 0, result.stderr
