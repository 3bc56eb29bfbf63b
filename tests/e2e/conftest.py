"""A stack of a module's own, for end-to-end modules whose one worker process starts its own way."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from service.ops.redis_server import RedisServer
from tests.conftest import BACKEND_PARAMS, DatabaseFactory, Stack, running_stack


@dataclass(frozen=True)
class OneWorker:
    """How a module's own stack starts its one worker process (of one pool process)."""

    # A Redis database of the module's own: its queues never mix with another stack's.
    redis_index: int
    extra_env: dict[str, str]
    # A command the worker runs under, e.g. one that skews its clock.
    prefix: tuple[str, ...] = ()


@pytest.fixture(scope="module", params=BACKEND_PARAMS)
def own_stack(
    request: pytest.FixtureRequest,
    one_worker: OneWorker,
    databases: DatabaseFactory,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The service on each backend, its one worker process started as the module's `one_worker`."""
    with running_stack(
        request.param,
        databases,
        redis_server,
        tmp_path_factory,
        one_worker.redis_index,
        concurrency=1,
        prefix=one_worker.prefix,
        extra_env=one_worker.extra_env,
    ) as running:
        yield running
