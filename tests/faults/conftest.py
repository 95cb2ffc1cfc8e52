"""Fixtures of the fault tests: each test gets its own PostgreSQL cluster, Redis server and seeded
installation (tests/faults/_services.py, _stack.py), stopped on the way out, pass or fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.faults._services import OwnPostgres, OwnRedis, own_postgres, own_redis
from tests.faults._stack import FaultStack, fault_stack


@pytest.fixture
def postgres() -> Iterator[OwnPostgres]:
    with own_postgres() as cluster:
        # The harness runs its cluster with synchronous_commit=off, which may lose the last
        # commits when the server crashes: exactly what "every answer was recorded" must not
        # forgive. The database setting overrides the server's for every session.
        with psycopg.connect(cluster.url(), autocommit=True) as connection:
            connection.execute("ALTER DATABASE veto SET synchronous_commit = on")
        yield cluster


@pytest.fixture
def redis_server() -> Iterator[OwnRedis]:
    with own_redis() as server:
        yield server


@pytest.fixture
def stack(postgres: OwnPostgres, redis_server: OwnRedis, tmp_path: Path) -> Iterator[FaultStack]:
    with fault_stack(postgres.url(), redis_server.url(), tmp_path / "stack") as installation:
        yield installation
