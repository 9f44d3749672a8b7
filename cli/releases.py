"""Release commands of `mpr` (start, status, watch, list, and every operator command)."""

from cli import Subcommands


def register(commands: Subcommands) -> None:
    """Filled in by the release command group."""
