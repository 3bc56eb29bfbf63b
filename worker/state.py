"""Per-process worker state: configuration, torch threads and one database engine."""

from __future__ import annotations

import os
from functools import lru_cache

import sqlalchemy.orm as so

from service.config import Config
from service.db import make_engine, make_session_factory
from worker.heartbeat import Heartbeat


@lru_cache(maxsize=1)
def _state(
    pid: int,
) -> tuple[Config, so.sessionmaker[so.Session], so.sessionmaker[so.Session]]:
    config = Config.from_env()
    pin_torch_threads(config.torch_threads)
    engine = make_engine(
        config.database_url, idle_transaction_seconds=config.worker_idle_transaction_seconds
    )
    return config, make_session_factory(engine, writer=True), make_session_factory(engine)


def pin_torch_threads(threads: int) -> None:
    """Give torch this many intra-op threads (at least one).

    The bits of a float32 matmul depend on it: on some CPUs a (64, 1000) x (1000, 100) product
    rounds differently with one thread and with two, so a result compared bit for bit with a
    worker's must be computed with the worker's thread count.
    """
    import torch

    torch.set_num_threads(max(1, threads))


def worker_config() -> Config:
    """This process's configuration."""
    return _state(os.getpid())[0]


def session_factory() -> so.sessionmaker[so.Session]:
    """This process's session factory (a forked child builds its own)."""
    return _state(os.getpid())[1]


def reader_factory() -> so.sessionmaker[so.Session]:
    """This process's sessions that only read (on SQLite they take no write lock)."""
    return _state(os.getpid())[2]


@lru_cache(maxsize=1)
def _heartbeat(pid: int) -> Heartbeat:
    config = worker_config()
    return Heartbeat(session_factory(), config.lease_seconds, config.heartbeat_seconds)


def heartbeat() -> Heartbeat:
    """This process's heartbeat: one thread renews the leases of every job it trains."""
    return _heartbeat(os.getpid())


def reset_process_state() -> None:
    """Forget state inherited over fork and build it afresh for this process."""
    _state.cache_clear()
    _heartbeat.cache_clear()
    _state(os.getpid())
