"""The release catalog in PostgreSQL: releases, channels, memberships and target app policies.

The errors below are refusals a person or the workflow must act on; retrying cannot help.
Database failures are left as asyncpg/OS errors so that callers may retry them.
"""


class CatalogError(Exception):
    """A request the catalog refuses; the message says what to change."""


class UnknownTargetApp(CatalogError):
    def __init__(self, target_app: str, known: list[str]) -> None:
        self.target_app = target_app
        self.known = known
        super().__init__(
            f"unknown target app {target_app!r}; known target apps: {', '.join(known) or 'none'}"
        )


class MiniProgramInAnotherWorkspace(CatalogError):
    def __init__(self, mini_program_id: str, owner: str, requested: str) -> None:
        super().__init__(
            f"mini program {mini_program_id!r} belongs to workspace {owner!r}, "
            f"not {requested!r}; release it from its own workspace"
        )


class InvalidTransition(CatalogError):
    """The workflow asked for a write that contradicts itself (a bug, not bad luck)."""
