"""What every command group of `mpr` shares to answer: the handler and subcommand types, the
--json flag, printing, tables and times, and CliError, the failure printed as one line."""

import argparse
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

from mpr.domain.core.models import LastRejection
from mpr.infra.exit_codes import FAILURE

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


def when(at: datetime | None) -> str:
    """A moment as the text output shows it: UTC, to the second; "-" for none."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "-"


def sender(actor: str | None, claimed: str | None = None, *, nobody: str = "the system") -> str:
    """Who made an event, as the audit log says: the verified actor; for a command whose
    identity was refused, nobody verified (and whom the payload claimed, which is only that)."""
    if actor:
        return actor
    if claimed:
        return f"an unverified sender (claiming {claimed})"
    return nobody


def refusal_line(rejection: LastRejection | None) -> str:
    if rejection is None:
        return "-"
    who = sender(rejection.actor, rejection.claimed_actor, nobody="an unverified sender")
    return f"{rejection.command} by {who} at {when(rejection.at)}: {rejection.reason}"

