"""Fixtures shared by every test: settings, a running gateway, a sink, Redis.

The session also keeps every log line (in-process servers via a logging handler, child
servers via their log files) and fails if any tracked token or secret shows up in one, or
if the gateway answered any request with a 5xx.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import pytest
import redis

from gateway.config import Settings

REDIS_URL = os.environ.get("HOOKGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("HOOKGATE_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
_handler = harness.CollectingHandler()


def pytest_sessionstart(session: pytest.Session) -> None:
    logging.getLogger().addHandler(_handler)
    for name in ("hookgate", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.INFO)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_handler)
    problems = harness.scan_for_leaks() + harness.SERVER_ERRORS
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = ["log hygiene: a secret leaked into a log or the gateway answered 5xx:"]
        lines += [f"  {p}" for p in problems[:20]]
        if reporter is not None:
            reporter.write_line("\n".join(lines), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return harness.make_settings(tmp_path)


@pytest.fixture
def gateway(settings: Settings) -> Iterator[harness.Gateway]:
    with harness.running_gateway(settings) as running:
        yield running


@pytest.fixture
def sink() -> Iterator[harness.Sink]:
    with harness.running_sink() as running:
        yield running


@pytest.fixture(scope="session")
def redis_available() -> str:
    """The test Redis URL; skip (or fail under CI=true) when none answers."""
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        message = f"Redis at {REDIS_URL} is not reachable ({exc}); set HOOKGATE_TEST_REDIS_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return REDIS_URL


@pytest.fixture
def redis_url(redis_available: str, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A Redis URL plus a key prefix of this test's own; its keys are deleted afterwards."""
    # Glob characters (`[redis]` of a parametrized test) would break the SCAN MATCH cleanup.
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name[:40])
    prefix = f"hgtest:{os.getpid()}:{name}:"
    yield {"url": redis_available, "prefix": prefix}
    client = redis.Redis.from_url(redis_available)
    for pattern in (f"{prefix}*", f"{{{prefix}*"):
        for key in client.scan_iter(match=pattern, count=500):
            client.delete(key)
    client.close()


def _postgres(sql: str) -> None:
    """Run one statement on the test PostgreSQL (its own short-lived connection), in a
    thread of its own: fixtures that call this may run inside the test's event loop."""
    import asyncio
    import concurrent.futures

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=2)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def postgres_available() -> str:
    """The test PostgreSQL URL; skip (or fail under CI=true) when none answers."""
    try:
        _postgres("SELECT 1")
    except Exception as exc:
        message = (
            f"PostgreSQL at {POSTGRES_URL} is not reachable ({exc}); set HOOKGATE_TEST_POSTGRES_URL"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_URL


@pytest.fixture
def postgres_url(
    postgres_available: str, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    """The test PostgreSQL URL plus a schema of this test's own, dropped afterwards."""
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name[:30].lower())
    schema = f"hgtest_{os.getpid()}_{next(_schema_numbers)}_{name}"
    _postgres(f'CREATE SCHEMA "{schema}"')
    yield {"url": postgres_available, "schema": schema}
    _postgres(f'DROP SCHEMA "{schema}" CASCADE')


_schema_numbers = itertools.count(1)
