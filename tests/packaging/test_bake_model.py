"""Baking a policy into the inference image: download or check the model, cache the repos it loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vla_edge.packaging import bake_model


def policy_dir(path: Path, **config: Any) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"type": "act", **config}))
    (path / "model.safetensors").write_bytes(b"weights")
    return path


class FakeHub:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> str:
        self.calls.append(kwargs)
        if "local_dir" in kwargs:
            policy_dir(Path(kwargs["local_dir"]), type="smolvla", vlm_model_name="HuggingFaceTB/SmolVLM2-500M-Video-Instruct")
        return "/cache"


def test_a_hub_model_is_downloaded_and_its_backbone_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    hub = FakeHub()
    cached = bake_model.bake(tmp_path / "model", "lerobot/smolvla_base", "v1", "google/paligemma-3b-pt-224@abc",
                             download=hub, hf_token="t")
    assert cached == ["HuggingFaceTB/SmolVLM2-500M-Video-Instruct", "google/paligemma-3b-pt-224"]
    assert hub.calls[0] == {"repo_id": "lerobot/smolvla_base", "revision": "v1", "local_dir": str(tmp_path / "model"),
                            "token": "t"}
    assert hub.calls[2] == {"repo_id": "google/paligemma-3b-pt-224", "revision": "abc", "token": "t"}
    assert (tmp_path / "hf").is_dir()


def test_a_local_model_is_checked_not_downloaded(tmp_path: Path) -> None:
    hub = FakeHub()
    assert bake_model.bake(policy_dir(tmp_path / "model"), download=hub) == []
    assert hub.calls == []


def test_a_directory_that_is_no_policy_is_refused_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model").mkdir()
    assert bake_model.main(["--dest", str(tmp_path / "model")]) == 1
    assert "no config.json" in capsys.readouterr().err
    (tmp_path / "model" / "config.json").write_text("{}")
    with pytest.raises(bake_model.BakeError, match="no weights"):
        bake_model.bake(tmp_path / "model", download=FakeHub())


def test_the_token_comes_from_the_build_secret_file(tmp_path: Path) -> None:
    assert bake_model.token(tmp_path / "absent") is None
    (tmp_path / "hf_token").write_text("hf_abc\n")
    assert bake_model.token(tmp_path / "hf_token") == "hf_abc"
