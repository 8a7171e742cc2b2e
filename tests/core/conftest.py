"""Fixtures for the local-core tests: recipes in tmp_path, a started core, real SDK clients."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.ipc import ALPHA, ALPHA_CONFIG, BETA, GAMMA, PUBLISH, SUBSCRIBE, short_run_dir, write_recipe

from vla_edge.core.protocol import Limits
from vla_edge.core.server import LocalCore


@pytest.fixture
def recipes(tmp_path: Path) -> list[Path]:
    """Alpha may publish/subscribe under test/# and camera frames; Beta has '*' on a glob; Gamma has no policy."""
    return [
        write_recipe(tmp_path, ALPHA, ALPHA_CONFIG,
                     pubsub=[([PUBLISH, SUBSCRIBE], ["test/#", "vla-edge/camera/+/frame"])]),
        write_recipe(tmp_path, BETA, {"gain": 1.5}, pubsub=[(["*"], ["test/*", "shared/topic"])]),
        write_recipe(tmp_path, GAMMA, {"x": 1}),
    ]


@pytest.fixture
def core_factory(recipes: list[Path]) -> Iterator[Callable[..., LocalCore]]:
    """Start cores (each in its own short run dir); all are stopped at teardown."""
    with contextlib.ExitStack() as stack:
        def make(recipe_paths: list[Path] | None = None, overrides: Any = None, limits: Limits | None = None,
                 start: bool = True) -> LocalCore:
            run_dir = stack.enter_context(short_run_dir())
            core = LocalCore(run_dir, recipe_paths or recipes, overrides, limits=limits)
            stack.callback(core.stop)
            return core.start() if start else core

        yield make


@pytest.fixture
def core(core_factory: Callable[..., LocalCore]) -> LocalCore:
    return core_factory()


@pytest.fixture
def ipc(core: LocalCore) -> Iterator[Callable[..., Any]]:
    """Connect the real awsiotsdk V2 client as a component of ``core``.

    ``executor=None`` runs stream callbacks on the SDK's network thread, so events arrive in
    the order the core sent them (the SDK's default thread pool may reorder them).
    """
    import awsiot.greengrasscoreipc
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    clients: list[Any] = []

    def connect(component: str, target: LocalCore | None = None) -> GreengrassCoreIPCClientV2:
        environment = (target or core).environment(component)
        connection = awsiot.greengrasscoreipc.connect(
            ipc_socket=environment["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"],
            authtoken=environment["SVCUID"])
        client = GreengrassCoreIPCClientV2(client=connection, executor=None)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        with contextlib.suppress(Exception):
            client.close().result(5)
