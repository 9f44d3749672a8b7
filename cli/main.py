"""The `mpr` entry point: the top-level parser, and the one place errors become exit codes."""

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

import asyncpg
from pydantic import ValidationError

from catalog import CatalogError
from cli import FAILURE, USAGE, CliError, Subcommands, admin, history, releases

# Each group adds its subcommands; a new group (e.g. release commands) is one more entry.
COMMAND_GROUPS: tuple[Callable[[Subcommands], None], ...] = (
    releases.register,
    history.register,
    admin.register,
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
        asyncio.run(args.handler(args))
    except CliError as error:
        return _fail(str(error), error.exit_code)
    except ValidationError as error:
        return _fail(f"invalid input: {_describe(error)}", USAGE)
    except CatalogError as error:
        return _fail(str(error), FAILURE)
    except asyncpg.UndefinedTableError as error:
        return _fail(f"the catalog database is not migrated ({error}): run `mpr migrate`", FAILURE)
    except asyncpg.PostgresError as error:
        return _fail(f"the catalog database refused the request: {error}", FAILURE)
    return 0


def _fail(message: str, exit_code: int) -> int:
    print(f"mpr: {message}", file=sys.stderr)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
