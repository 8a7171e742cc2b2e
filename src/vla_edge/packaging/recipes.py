"""The inference recipe's image placeholders, and how a publisher fills them in.

Each inference image variant (``cpu``, ``cuda``, ``jetson``) is pinned by digest in
``components/inference/recipe.yaml`` with one placeholder string::

    ACCOUNT.dkr.ecr.REGION.amazonaws.com/vla-edge/inference-<variant>@sha256:<64 zeros>

It appears in the Artifacts URI (``docker:<reference>``) and the ``VLA_EDGE_IMAGE`` setting of
every manifest of that variant. :func:`render_images` replaces every occurrence with the pushed
image's ``registry/repository@sha256:<digest>`` (as ``docker buildx build --push`` or
``docker inspect --format '{{index .RepoDigests 0}}'`` print it), on the recipe's text, so its
comments stay.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from vla_edge.errors import ConfigurationError

VARIANTS = ("cpu", "cuda", "jetson")
PLACEHOLDER_REGISTRY = "ACCOUNT.dkr.ecr.REGION.amazonaws.com"
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
PLACEHOLDER = re.compile(re.escape(PLACEHOLDER_REGISTRY) + r"/vla-edge/inference-([a-z]+)@" + PLACEHOLDER_DIGEST)
IMAGE_REFERENCE = re.compile(r"^[a-z0-9][a-z0-9.:-]*(/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}$")


def placeholder(variant: str) -> str:
    if variant not in VARIANTS:
        raise ConfigurationError(f"unknown inference image variant {variant!r}; one of {VARIANTS}")
    return f"{PLACEHOLDER_REGISTRY}/vla-edge/inference-{variant}@{PLACEHOLDER_DIGEST}"


def placeholders_in(text: str) -> set[str]:
    """The variants whose placeholder ``text`` still holds."""
    return set(PLACEHOLDER.findall(text))


def render_images(text: str, images: Mapping[str, str]) -> str:
    """``text`` with each variant's placeholder replaced by ``images[variant]`` (a reference by digest).

    Every variant left in the text must be given: a recipe that still names a placeholder image
    would fail on the device when the nucleus pulls it.
    """
    for variant, reference in images.items():
        placeholder(variant)
        if not IMAGE_REFERENCE.match(reference):
            raise ConfigurationError(
                f"image for {variant} must be registry/repository@sha256:<64 hex> (pinned by digest), got {reference!r}"
            )
    missing = sorted(placeholders_in(text) - set(images))
    if missing:
        raise ConfigurationError(f"no image given for inference variant(s) {missing}")
    return PLACEHOLDER.sub(lambda match: images.get(match.group(1), match.group(0)), text)
