"""The inference image in Amazon ECR: the repository, registry login, push, and the pushed digest.

Components pin their image by digest (``REPO@sha256:...``), never by tag: a tag can be
moved, and a device that pulls later must run the very image that was tested. So after a
push the digest is read back from ECR (``describe_images``) rather than parsed from
docker's output.
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass

from vla_edge.fleet.aws import Aws, is_not_found
from vla_edge.fleet.docker import DockerCli
from vla_edge.fleet.errors import FleetError, NotFound

log = logging.getLogger(__name__)

REPOSITORY_TEMPLATE = "vla-edge/inference-{variant}"
"""Default repository per image variant, the one the inference recipe's placeholders name."""
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Repository:
    name: str
    uri: str
    immutable_tags: bool

    @property
    def registry(self) -> str:
        return self.uri.split("/", 1)[0]


@dataclass(frozen=True)
class PushedImage:
    """An image in ECR; ``digest`` is None when the push was only printed (no Docker engine)."""

    repository: Repository
    tag: str
    digest: str | None

    @property
    def pinned(self) -> str:
        """``REPO@sha256:...``: what recipes reference."""
        if self.digest is None:
            raise FleetError(f"{self.repository.uri}:{self.tag} has not been pushed yet")
        return f"{self.repository.uri}@{self.digest}"


def check_tag(tag: str) -> str:
    if not TAG_PATTERN.match(tag):
        raise FleetError(f"image tag {tag!r} is not valid: letters, digits, '_', '.', '-', at most 128 characters")
    return tag


def ensure_repository(aws: Aws, name: str, scan_on_push: bool = True, immutable_tags: bool = False) -> Repository:
    """The repository ``name``, created (scan on push, tag mutability as asked) when it does not exist.

    An existing repository is used as it is; its settings are only reported, because changing
    them under other users of the repository is not this command's business.
    """
    ecr = aws.client("ecr")
    try:
        found = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        repo = Repository(found["repositoryName"], found["repositoryUri"], found.get("imageTagMutability") == "IMMUTABLE")
        log.info("using ECR repository %s (tags %s)", repo.uri, "immutable" if repo.immutable_tags else "mutable")
        return repo
    except NotFound as exc:
        if not is_not_found(exc, "RepositoryNotFoundException"):
            raise
    created = ecr.create_repository(
        repositoryName=name,
        imageScanningConfiguration={"scanOnPush": scan_on_push},
        imageTagMutability="IMMUTABLE" if immutable_tags else "MUTABLE",
        encryptionConfiguration={"encryptionType": "AES256"},
    )["repository"]
    log.info("created ECR repository %s (scan on push %s)", created["repositoryUri"], scan_on_push)
    return Repository(created["repositoryName"], created["repositoryUri"], immutable_tags)


def image_digest(aws: Aws, repository: str, tag: str) -> str:
    """The digest of ``repository:tag`` in ECR."""
    try:
        details = aws.client("ecr").describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except NotFound as exc:
        raise NotFound(f"no image {repository}:{tag} in ECR ({exc.code}); push it first "
                       "(vla-edge fleet push-image) or check --repository/--image-tag", exc.code) from exc
    images = details.get("imageDetails", [])
    if not images:
        raise NotFound(f"no image {repository}:{tag} in ECR; push it first", "ImageNotFoundException")
    return str(images[0]["imageDigest"])


def tag_exists(aws: Aws, repository: str, tag: str) -> bool:
    try:
        image_digest(aws, repository, tag)
        return True
    except NotFound:
        return False


def login(aws: Aws, docker: DockerCli, repository: Repository) -> None:
    """``docker login`` to the repository's registry with a token from ``ecr:GetAuthorizationToken``.

    The token is fetched only when it will be used (an engine answers, or a dry run shows
    the call); the printed login gets its password from the AWS CLI instead.
    """
    username, password = "AWS", ""
    if docker.engine_available() or aws.dry_run:
        data = aws.client("ecr").get_authorization_token()["authorizationData"][0]
        username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    docker.login(repository.registry, username, password, aws.resolved_region())


def push_image(aws: Aws, docker: DockerCli, local_image: str, repository: Repository, tag: str) -> PushedImage:
    """Tag ``local_image`` into ``repository`` and push it; the digest is read back from ECR.

    With immutable tags an existing tag is refused before anything is pushed (ECR would
    refuse the push itself, after the upload); with mutable tags it is overwritten, with a
    warning, since components already published keep their digest.
    """
    check_tag(tag)
    if tag_exists(aws, repository.name, tag) and not aws.dry_run:
        if repository.immutable_tags:
            raise FleetError(f"{repository.uri}:{tag} exists and the repository's tags are immutable; "
                             "pick another --image-tag (e.g. the model version)")
        log.warning("%s:%s exists and will point at the new image; published components keep their digest",
                    repository.uri, tag)
    target = f"{repository.uri}:{tag}"
    login(aws, docker, repository)
    ran = docker.tag(local_image, target)
    ran = docker.push(target) and ran
    if not ran and not aws.dry_run:
        return PushedImage(repository, tag, None)
    return PushedImage(repository, tag, image_digest(aws, repository.name, tag))


def parse_image(image: str) -> tuple[str, str | None, str | None]:
    """``URI[:tag][@digest]`` -> (uri, tag, digest)."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
        if not DIGEST_PATTERN.match(digest):
            raise FleetError(f"{digest!r} is not an image digest (sha256:<64 hex digits>)")
    tag = None
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        image, tag = image.rsplit(":", 1)
    return image, tag, digest


def default_repository(variant: str) -> str:
    return REPOSITORY_TEMPLATE.format(variant=variant)


def repository_name(uri: str) -> str:
    """``ACCOUNT.dkr.ecr.REGION.amazonaws.com/vla-edge/inference-cpu`` -> ``vla-edge/inference-cpu``."""
    if "/" not in uri:
        raise FleetError(f"{uri!r} is not an ECR image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY)")
    return uri.split("/", 1)[1]


def resolve_pinned(aws: Aws, image: str) -> str:
    """An image given as ``URI:tag`` or ``URI@digest`` as ``URI@digest`` (the tag's digest read from ECR)."""
    uri, tag, digest = parse_image(image)
    if digest is None:
        digest = image_digest(aws, repository_name(uri), tag or "latest")
    return f"{uri}@{digest}"
