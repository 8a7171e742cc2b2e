"""The model updater's library: manifests, the on-device model store, and resumable downloads.

Importable without torch or LeRobot (a device's updater installs only boto3), and without
boto3 for everything but :mod:`vla_edge.updater.download`, which is therefore not
imported here::

    from vla_edge.updater import ModelStore, build_manifest, read_manifest
    from vla_edge.updater.download import S3ModelSource
"""

from vla_edge.updater.manifest import (
    MANIFEST_FILE,
    ModelManifest,
    build_manifest,
    read_manifest,
    verify_directory,
    write_manifest,
)
from vla_edge.updater.store import InstalledModel, ModelStore

__all__ = [
    "MANIFEST_FILE",
    "InstalledModel",
    "ModelManifest",
    "ModelStore",
    "build_manifest",
    "read_manifest",
    "verify_directory",
    "write_manifest",
]
