"""`mpr`, the operator's command line.

Each command group is a module with a `register(commands)` function that adds its
subcommands and sets `handler` (an async function of the parsed arguments) on each of them;
`cli.main` collects the groups. This module holds what the groups share: output, errors and
the catalog connection.
"""

import argparse
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from mpr.catalog.db import create_pool
from mpr.infra.exit_codes import FAILURE
from mpr.infra.settings import Settings

Handler = Callable[[argparse.Namespace], Awaitable[None]]
# argparse offers no public name for what add_subparsers returns.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CliError(Exception):
    """A failure the user can act on: printed as one line, no traceback."""

    def __init__(self, message: str, exit_code: int = FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for machines")


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print `data` as JSON with --json, else the human-readable `text`."""
    print(json.dumps(data, indent=2) if args.json else text)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "(none)"
    cells = [list(headers), *([value or "-" for value in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


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
