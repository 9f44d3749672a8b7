"""Process exit for our command-line entry points.

An expected failure (a setting that cannot be used, a server that cannot be reached or
started) ends the process with ONE line on stderr, saying what failed and what to do, and an
exit code of infra.exit_codes (FAILURE). Entry points raise
`EntryPointError`, or let one of the errors of `EXPECTED` through; `run_and_exit` prints it.
Anything else is a bug and keeps its traceback.

The Temporal SDK's native runtime can abort the interpreter while it shuts down (temporalio
sdk-python#300: "Fatal Python error: PyGILState_Release", exit code 134) after the program has
done its work. Entry points therefore flush their output and leave with `os._exit`, so the
exit code is the program's own.
"""

import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn
from urllib.parse import parse_qs, urlsplit

import asyncpg

from mpr.catalog.db import MigrationError
from mpr.infra.codec import PayloadKeyError
from mpr.infra.exit_codes import FAILURE, INTERRUPTED, OK
from mpr.infra.settings import SettingsError
from mpr.infra.temporal import TemporalSettingsError, TemporalUnreachable


class EntryPointError(Exception):
    """An expected failure of an entry point: `message` is the one line printed (what failed
    and what to do), `exit_code` one of infra.exit_codes."""

    def __init__(self, message: str, exit_code: int = FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Errors any entry point may meet, each message already naming the setting involved.
EXPECTED: tuple[tuple[type[Exception], int], ...] = (
    (SettingsError, FAILURE),  # e.g. WORKER_MAX_CACHED_WORKFLOWS=many, DATABASE_URL unset
    (TemporalSettingsError, FAILURE),  # e.g. a TLS file named but not there
    (PayloadKeyError, FAILURE),  # MPR_PAYLOAD_KEYS malformed, unset, or lacking a key
    (TemporalUnreachable, FAILURE),  # infra.temporal.connect: names the address
    (MigrationError, FAILURE),  # an applied migration was edited
)


def expected_failure(error: BaseException) -> EntryPointError | None:
    """`error` as the one line it ends a process with; None when it is a bug."""
    if isinstance(error, EntryPointError):
        return error
    for kind, exit_code in EXPECTED:
        if isinstance(error, kind):
            return EntryPointError(str(error), exit_code)
    return None


def one_line(message: str) -> str:
    return " ".join(message.split())


def run_and_exit(main: Callable[[], int | None]) -> NoReturn:
    try:
        code = main() or OK
    except SystemExit as exit_:  # argparse, or a message of its own
        code = exit_.code if isinstance(exit_.code, int) else (FAILURE if exit_.code else OK)
        if isinstance(exit_.code, str):
            print(one_line(exit_.code), file=sys.stderr)
    except KeyboardInterrupt:
        code = INTERRUPTED
    except Exception as error:
        failure = expected_failure(error)
        if failure is None:
            traceback.print_exc()
            code = FAILURE
        else:
            print(one_line(str(failure)), file=sys.stderr)
            code = failure.exit_code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# --- PostgreSQL ------------------------------------------------------------------------------

# What asyncpg raises when it cannot connect: the OS's errors (refused, no such socket, no
# such host), its timeout, and the server's refusals (no such database, wrong password).
CONNECT_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@contextmanager
def reaching_database(url: str, what_to_do: str = "check DATABASE_URL") -> Iterator[None]:
    """Around connecting to PostgreSQL (nothing more: errors of the queries that follow are
    not about reaching it): a failure becomes one line naming the database, without its
    password, and what to do."""
    try:
        yield
    except ValueError as error:  # asyncpg's word for a URL it cannot parse
        raise EntryPointError(
            f"DATABASE_URL is not a PostgreSQL URL ({without_secrets(str(error), url)}): "
            "it looks like postgresql://user:password@host:5432/database"
        ) from error
    except CONNECT_ERRORS as error:
        raise EntryPointError(
            f"cannot reach PostgreSQL at {database_label(url)}: {_reason(error, url)} "
            f"({what_to_do})"
        ) from error


def database_label(url: str) -> str:
    """The URL without its password (in the user part or the query)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = "&".join(
        f"{key}=***" if key == "password" else f"{key}={value}"
        for key, values in parse_qs(parts.query, keep_blank_values=True).items()
        for value in values
    )
    return parts._replace(netloc=netloc, query=query).geturl()


def socket_dirs(url: str) -> list[str]:
    """The directories of the Unix sockets a URL names (`?host=/dir`, as the embedded
    PostgreSQL's URLs do)."""
    hosts = parse_qs(urlsplit(url).query).get("host", [])
    return [host for value in hosts for host in value.split(",") if host.startswith("/")]


def _reason(error: BaseException, url: str) -> str:
    if isinstance(error, FileNotFoundError) and socket_dirs(url):
        return f"no server socket in {', '.join(socket_dirs(url))}"
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror  # e.g. the name of an unknown host
    return without_secrets(str(error) or type(error).__name__, url)


def without_secrets(text: str, url: str) -> str:
    """`text` with the URL's password (in the user part or the query) masked."""
    parts = urlsplit(url)
    secrets = [parts.password, *parse_qs(parts.query).get("password", [])]
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
