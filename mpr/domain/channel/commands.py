"""The channel's commands: each payload, strictly validated and bounded."""

from typing import Annotated

from pydantic import Field

from mpr.domain.core.commands import Command

MAX_REASON_LENGTH = 500

Reason = Annotated[str, Field(min_length=1, max_length=MAX_REASON_LENGTH)]
Version = Annotated[str, Field(min_length=1, max_length=64)]


class Rollback(Command):
    reason: Reason
    to_version: Version | None = None
    """One of the last five versions released on the channel; the previous stable one when
    left out."""


class TakeOffline(Command):
    reason: Reason


class BringOnline(Command):
    reason: Reason | None = None
