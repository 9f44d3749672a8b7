"""Who may do what (seeds 000 and 001), from the roles the catalog grants an actor."""

from mpr.domain.core.commands import Command
from mpr.domain.core.models import Role
from mpr.domain.release.commands import (
    ApplyRelease,
    ApproveReview,
    CancelGrayscale,
    CancelRelease,
    FullRelease,
    Rebuild,
    RejectReview,
    ResetGrayscale,
    RetestCompatibility,
    SetGrayscale,
    StartWhitelistTest,
    UpdateConfig,
    command_name,
)
from mpr.domain.release.models import Reviewer

# Seed 000: "the owner, masters, and developers have permission to proceed with the release".
BUILD_AND_APPLY = frozenset({Role.OWNER, Role.ADMIN, Role.MASTER, Role.DEVELOPER})
# Seed 001: "Workspace admin ... or Admin for the mini program you want to release".
GO_LIVE = frozenset({Role.ADMIN, Role.PROGRAM_ADMIN})
# Withdrawing a release is for those who lead it, not for every developer.
CANCEL = frozenset({Role.OWNER, Role.ADMIN, Role.MASTER, Role.PROGRAM_ADMIN})
REVIEWER_ROLE = {
    Reviewer.PLATFORM: Role.PLATFORM_REVIEWER,
    Reviewer.PARTNER_APP: Role.PARTNER_REVIEWER,
}

ROLES_BY_COMMAND: dict[type[Command], frozenset[Role]] = {
    UpdateConfig: BUILD_AND_APPLY,
    Rebuild: BUILD_AND_APPLY,
    RetestCompatibility: BUILD_AND_APPLY,
    ApplyRelease: BUILD_AND_APPLY,
    StartWhitelistTest: GO_LIVE,
    SetGrayscale: GO_LIVE,
    FullRelease: GO_LIVE,
    CancelGrayscale: GO_LIVE,
    ResetGrayscale: GO_LIVE,
    CancelRelease: CANCEL,
}


def allowed_roles(command: Command) -> frozenset[Role]:
    if isinstance(command, ApproveReview | RejectReview):
        return frozenset({REVIEWER_ROLE[command.reviewer]})
    return ROLES_BY_COMMAND[type(command)]


def authorisation_failure(command: Command, roles: frozenset[Role]) -> str | None:
    """The reason the actor may not run the command, or None when they may."""
    needed = allowed_roles(command)
    if roles & needed:
        return None
    have = ", ".join(sorted(roles)) or "no role"
    need = " or ".join(sorted(needed))
    return (
        f"{command.actor} is not authorised to {command_name(command)}: "
        f"needs {need} (has {have})"
    )
