"""The catalog database as `mpr` commands reach it: a small pool, and errors that name the
database without its password."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from mpr.catalog.db import create_pool
from mpr.cli.output import CliError
from mpr.infra.entrypoint import database_label, without_secrets
from mpr.infra.settings import Settings


@asynccontextmanager
async def open_catalog() -> AsyncIterator[asyncpg.Pool]:
    try:
        url = Settings.from_env().require_database_url()
    except RuntimeError as error:
        raise CliError(str(error)) from None
    try:
        pool = await create_pool(url, min_size=1, max_size=2)
    except (OSError, TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        reason = without_secrets(str(e) or type(e).__name__, url)
        raise CliError(
            f"cannot reach the catalog database at {database_label(url)}: {reason}"
        ) from None
    try:
        yield pool
    finally:
        await pool.close()
