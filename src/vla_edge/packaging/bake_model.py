"""Bake a policy into the inference image at build time (run in the Dockerfiles' model stage).

Standalone on purpose: the model stage has Python and ``huggingface_hub`` only, not vla-edge, so
this file is copied in and run as a script. It

1. downloads ``--repo-id`` at ``--revision`` into ``--dest`` (when given; otherwise ``--dest``
   already holds the model, copied from the build context);
2. checks that ``--dest`` is a LeRobot policy directory (``config.json`` and weights);
3. downloads the Hugging Face repos the policy reads at load time into the hub cache under
   ``$HF_HOME`` (the image sets ``HF_HOME`` to it and runs with ``HF_HUB_OFFLINE=1``): the
   backbone a SmolVLA config names in ``vlm_model_name``, plus ``--extra-repos`` (space or comma
   separated ``repo[@revision]``), e.g. a tokenizer that pi0/pi0.5 load.

A private repo needs a token: ``docker build --secret id=hf_token,src=token.txt`` (read from
``/run/secrets/hf_token``; it never lands in a layer).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TOKEN_FILE = Path("/run/secrets/hf_token")
BACKBONE_KEYS = ("vlm_model_name",)
WEIGHTS = ("model.safetensors", "pytorch_model.bin")


class BakeError(Exception):
    pass


def token(path: Path = TOKEN_FILE) -> str | None:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return value or None


def split_repos(text: str) -> list[tuple[str, str | None]]:
    repos = []
    for item in text.replace(",", " ").split():
        repo, _, revision = item.partition("@")
        repos.append((repo, revision or None))
    return repos


def backbones(config: dict[str, Any]) -> list[str]:
    return [str(config[key]) for key in BACKBONE_KEYS if isinstance(config.get(key), str) and "/" in config[key]]


def check_policy_dir(dest: Path) -> dict[str, Any]:
    config_path = dest / "config.json"
    if not config_path.is_file():
        raise BakeError(
            f"{dest} has no config.json: MODEL_SOURCE / HF_REPO_ID must be a LeRobot policy directory "
            "(the save_pretrained output, e.g. outputs/train/<run>/checkpoints/last/pretrained_model)"
        )
    if not any((dest / name).is_file() for name in WEIGHTS):
        raise BakeError(f"{dest} has no weights ({' or '.join(WEIGHTS)})")
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BakeError(f"{config_path} is not JSON: {exc}") from exc


def bake(dest: Path, repo_id: str = "", revision: str | None = None, extra_repos: str = "",
         download: Callable[..., Any] | None = None, hf_token: str | None = None) -> list[str]:
    """Steps 1-3 of the module docstring; returns the repos put in the hub cache."""
    if download is None:
        from huggingface_hub import snapshot_download as download
    if repo_id:
        dest.mkdir(parents=True, exist_ok=True)
        download(repo_id=repo_id, revision=revision or None, local_dir=str(dest), token=hf_token)
    config = check_policy_dir(dest)
    cached = []
    for repo, repo_revision in [(name, None) for name in backbones(config)] + split_repos(extra_repos):
        download(repo_id=repo, revision=repo_revision, token=hf_token)
        cached.append(repo)
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        Path(hf_home).mkdir(parents=True, exist_ok=True)  # present even when nothing was cached
    return cached


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bake a LeRobot policy (and the repos it loads) into an image")
    parser.add_argument("--dest", type=Path, required=True, help="the image's model directory")
    parser.add_argument("--repo-id", default="", help="Hugging Face model repo to download into --dest")
    parser.add_argument("--revision", default="", help="branch, tag or commit of --repo-id (default: main)")
    parser.add_argument("--extra-repos", default="", help="more repos for the hub cache: 'repo[@rev] ...'")
    args = parser.parse_args(argv)
    try:
        cached = bake(args.dest, args.repo_id, args.revision or None, args.extra_repos, hf_token=token())
    except BakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"model in {args.dest}" + (f"; cached for offline use: {', '.join(cached)}" if cached else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
