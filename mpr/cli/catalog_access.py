"""The catalog database as `mpr` commands reach it: a small pool, and errors that name the
database without its password."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from mpr.catalog.db import create_pool
from mpr.cli.output import CliError
from mpr.infra.settings import Settings


def redact_url(url: str) -> str:
    """The URL without its password, fit to appear in an error message."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = urlencode(
        [
            (key, "***" if key == "password" else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="/",
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _secrets(url: str) -> list[str]:
    parts = urlsplit(url)
    in_query = [v for k, v in parse_qsl(parts.query) if k == "password" and v]
    return [p for p in (parts.password, *in_query) if p]


@asynccontextmanager
async def open_catalog() -> AsyncIterator[asyncpg.Pool]:
    try:
        url = Settings.from_env().require_database_url()
    except RuntimeError as error:
        raise CliError(str(error)) from None
    try:
        pool = await create_pool(url, min_size=1, max_size=2)
    except (OSError, TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        reason = str(e) or type(e).__name__
        for secret in _secrets(url):
            reason = reason.replace(secret, "***")
        raise CliError(
            f"cannot reach the catalog database at {redact_url(url)}: {reason}"
        ) from None
    try:
        yield pool
    finally:
        await pool.close()
