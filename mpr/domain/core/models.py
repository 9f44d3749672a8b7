"""Models every lifecycle shares: strict inputs, identifiers, roles and the last refusal."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

# Identifiers end up in workflow ids separated by ':' and in file names: keep them plain.
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_USER_ID_LENGTH = 128

UserId = Annotated[str, Field(min_length=1, max_length=MAX_USER_ID_LENGTH)]


class Strict(BaseModel):
    """Base for inputs: unknown fields are an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Role(StrEnum):
    """The roles the catalog grants an actor, in a workspace, mini program or super app."""

    OWNER = "owner"
    ADMIN = "admin"
    MASTER = "master"
    DEVELOPER = "developer"
    PROGRAM_ADMIN = "program_admin"
    PLATFORM_REVIEWER = "platform_reviewer"
    PARTNER_REVIEWER = "partner_reviewer"
    # The super app's own operators, who edit and release its mini service page (seed 004).
    SERVICE_OPERATOR = "service_operator"
    SERVICE_ADMIN = "service_admin"


class Environment(StrEnum):
    """Where a mini program version is served: a channel is (program, target app, environment)."""

    PRODUCTION = "production"
    DEVELOPMENT = "development"
    TEST = "test"
    SANDBOX = "sandbox"


# Who a payload claimed to be, recorded beside an empty actor when its identity was refused:
# the audit log never blames the person a forger named. Left out of what is written when
# unset, so what runs carried before (and workers of the previous version) read it unchanged.
CLAIMED_ACTOR: Any = Field(default=None, exclude_if=lambda value: value is None)


class LastRejection(BaseModel):
    """The most recent refused command, shown by every lifecycle's `status` query."""

    model_config = ConfigDict(frozen=True)

    command: str
    actor: str | None
    claimed_actor: str | None = CLAIMED_ACTOR
    reason: str
    at: datetime
