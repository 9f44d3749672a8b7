"""`mpr history` and `mpr replay`: reading and replaying release histories."""

from cli import Subcommands


def register(commands: Subcommands) -> None:
    """Filled in by the history command group."""
