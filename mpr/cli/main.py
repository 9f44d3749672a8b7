"""The `mpr` entry point: the top-level parser, and the one place errors become exit codes.

Exit codes are those of `mpr.infra.exit_codes`.
Every error is one line on stderr, `mpr: ...`, never a traceback.
"""

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn

import asyncpg
from pydantic import ValidationError
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError, RPCStatusCode

from mpr.catalog import CatalogError
from mpr.cli import admin, channels, codec, history, identity, qr, releases, services
from mpr.cli.output import CliError, Subcommands
from mpr.infra.codec import PayloadKeyError
from mpr.infra.entrypoint import expected_failure, run_and_exit
from mpr.infra.exit_codes import FAILURE, INTERRUPTED, NOT_FOUND, OK, REFUSED, TIMED_OUT, USAGE
from mpr.infra.temporal import TemporalSettingsError
from starters.errors import ClientError, WorkflowFinished, WorkflowNotFound, WorkflowRefused
from starters.releases import StageTimeout

CANCELLATION_GRACE_SECONDS = 0.1

# Each group adds its subcommands; a new group is one more entry.
COMMAND_GROUPS: tuple[Callable[[Subcommands], None], ...] = (
    releases.register,
    history.register,
    admin.register,
    services.register,
    channels.register,
    codec.register,
    identity.register,
    qr.register,
)

# By the neutral errors (starters.errors), so that releases and mini services answer alike.
CLIENT_ERROR_CODES: tuple[tuple[type[ClientError], int], ...] = (
    (WorkflowRefused, REFUSED),
    (WorkflowFinished, REFUSED),
    (WorkflowNotFound, NOT_FOUND),
    (StageTimeout, TIMED_OUT),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpr", description="Release mini programs to target apps, durably."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMAND_GROUPS:
        register(commands)
    return parser


def _describe(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'input'}: {problem['msg']}"
        for problem in error.errors()
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed usage or help already
        return exit_.code if isinstance(exit_.code, int) else USAGE
    try:
        _run(args.handler(args))
    except KeyboardInterrupt:
        return INTERRUPTED
    except CliError as error:
        return _fail(str(error), error.exit_code)
    except ValidationError as error:
        return _fail(f"invalid input: {_describe(error)}", USAGE)
    except ClientError as error:
        return _fail(str(error), _client_error_code(error))
    except ConnectionError as error:  # infra.temporal.connect: the message names the address
        return _fail(str(error), FAILURE)
    except PayloadKeyError as error:  # MPR_PAYLOAD_KEYS malformed, unset, or lacking a key
        return _fail(str(error), FAILURE)
    except TemporalSettingsError as error:  # e.g. a TLS file named but not there
        return _fail(str(error), FAILURE)
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:  # the server's message names the id
            return _fail(error.message, NOT_FOUND)
        return _fail(f"Temporal refused the request ({error.status.name}): {error.message}",
                     FAILURE)
    except TemporalError as error:  # a query or update that failed inside the workflow
        cause = f": {error.__cause__}" if error.__cause__ else ""
        return _fail(f"Temporal: {error}{cause}", FAILURE)
    except CatalogError as error:
        return _fail(str(error), FAILURE)
    except asyncpg.UndefinedTableError as error:
        return _fail(f"the catalog database is not migrated ({error}): run `mpr migrate`", FAILURE)
    except asyncpg.PostgresError as error:
        return _fail(f"the catalog database refused the request: {error}", FAILURE)
    except Exception as error:  # what every entry point expects (a setting unusable, say)
        failure = expected_failure(error)
        if failure is None:
            raise  # a bug: its traceback
        return _fail(str(failure), failure.exit_code)
    return OK


def _run(command: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner() as runner:
        try:
            runner.run(command)
        except BaseException:
            # An interrupted or failed command may have cancelled Temporal calls in flight (the
            # long poll of `mpr watch` or `--wait`). Temporal's Rust core completes their
            # cancellation on this loop: closing it at once can deadlock the interpreter's exit.
            runner.run(asyncio.sleep(CANCELLATION_GRACE_SECONDS))
            raise


def _client_error_code(error: ClientError) -> int:
    return next((code for kind, code in CLIENT_ERROR_CODES if isinstance(error, kind)), FAILURE)


def _fail(message: str, exit_code: int) -> int:
    print(f"mpr: {' '.join(message.splitlines())}", file=sys.stderr)
    return exit_code


def entry() -> NoReturn:
    """The `mpr` console script."""
    run_and_exit(main)


if __name__ == "__main__":
    entry()
