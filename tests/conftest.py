"""Shared fixtures and hypothesis profiles: `fast` by default; `deep` (`scripts/test --deep`, or
HYPOTHESIS_PROFILE=deep) runs 10^5 examples of each property, e.g. 10^5 chunkings of each golden
stream."""

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from pgserver import PostgresServer, Unavailable

settings.register_profile("fast", max_examples=60, deadline=None)
settings.register_profile("deep", max_examples=100_000, deadline=None)
settings.load_profile(os.getenv("HYPOTHESIS_PROFILE", "fast"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test run's own (skipped, with the reason, where none can start)."""
    try:
        server = PostgresServer()
        server.start()
    except Unavailable as e:
        pytest.skip(f"no PostgreSQL server can start here: {e}")
    yield server
    server.destroy()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A fresh, empty database on that server."""
    return pg_server.create_database()
