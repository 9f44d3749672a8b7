"""Connections to the catalog database and its schema migrations."""

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
from pydantic_core import to_jsonable_python

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Any constant works as long as nothing else in the database uses it for an advisory lock.
MIGRATION_LOCK_KEY = 0x6D70725F6D6967  # "mpr_mig"

# A catalog that cannot be reached should fail a command quickly, not after asyncpg's 60 s.
CONNECT_TIMEOUT_SECONDS = 10.0

Database: TypeAlias = asyncpg.Pool | asyncpg.Connection
"""Catalog functions accept either; those needing a transaction take a connection from a pool."""


class MigrationError(Exception):
    """An applied migration's file changed: the schema no longer matches the files."""


def _dumps(value: Any) -> str:
    # Payloads may hold datetimes, enums or models; store them as their JSON form.
    return json.dumps(value, default=to_jsonable_python)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=_dumps, decoder=json.loads, schema="pg_catalog"
        )


async def create_pool(database_url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose json/jsonb columns read and write plain Python objects."""
    return await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        timeout=CONNECT_TIMEOUT_SECONDS,
    )


@asynccontextmanager
async def connection(db: Database) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS_DIR.glob("*.sql"))


async def apply_migrations(target: asyncpg.Pool | str) -> list[str]:
    """Apply the migrations not yet applied, in file name order; return their names.

    Safe to run from several processes at once: a session advisory lock serialises them, and
    each migration commits together with its schema_migrations row.
    """
    if isinstance(target, str):
        conn = await asyncpg.connect(target, timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            return await _apply_locked(conn)
        finally:
            await conn.close()
    async with target.acquire() as pooled:
        return await _apply_locked(pooled)


async def pending_migrations(conn: asyncpg.Connection) -> list[str]:
    """The migrations not yet applied, without applying them (MigrationError as above)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done = {
        row["name"]: row["sha256"]
        for row in await conn.fetch("SELECT name, sha256 FROM schema_migrations")
    } if exists else {}
    pending = []
    for path in migration_files():
        if path.name not in done:
            pending.append(path.name)
        elif done[path.name] != _digest(path):
            raise MigrationError(_changed(path))
    return pending


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_text().encode()).hexdigest()


def _changed(path: Path) -> str:
    return (f"migration {path.name} was changed after it was applied; "
            "add a new migration instead of editing an applied one")


async def _apply_locked(conn: asyncpg.Connection) -> list[str]:
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        return await _apply(conn)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def _apply(conn: asyncpg.Connection) -> list[str]:
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            name text PRIMARY KEY,
            sha256 text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    done = {
        row["name"]: row["sha256"]
        for row in await conn.fetch("SELECT name, sha256 FROM schema_migrations")
    }
    applied = []
    for path in migration_files():
        sql = path.read_text()
        digest = _digest(path)
        if path.name in done:
            if done[path.name] != digest:
                raise MigrationError(_changed(path))
            continue
        async with conn.transaction():
            # No arguments: asyncpg sends the file as one simple query, many statements.
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (name, sha256) VALUES ($1, $2)", path.name, digest
            )
        applied.append(path.name)
    return applied
