"""Operator commands on a release: their payloads."""

from pydantic import Field, field_validator

from mpr.domain.core.commands import Command
from mpr.domain.core.models import UserId
from mpr.domain.release.models import (
    MAX_WHITELIST_USERS,
    BasicInfoPatch,
    ConfigPatch,
    DomainList,
    Reviewer,
)


class UpdateConfig(Command):
    config: ConfigPatch


class Rebuild(Command):
    source: str | None = Field(default=None, min_length=1, max_length=4096)


class RetestCompatibility(Command):
    pass


class ApplyRelease(Command):
    basic_info: BasicInfoPatch | None = None
    server_domain_whitelist: DomainList | None = None
    h5_domain_whitelist: DomainList | None = None


class ApproveReview(Command):
    reviewer: Reviewer
    comment: str = Field(default="", max_length=2000)


class RejectReview(Command):
    reviewer: Reviewer
    reason: str = Field(min_length=1, max_length=2000)


class StartWhitelistTest(Command):
    user_ids: list[UserId] = Field(min_length=1, max_length=MAX_WHITELIST_USERS)

    @field_validator("user_ids")
    @classmethod
    def _unique(cls, user_ids: list[str]) -> list[str]:
        if len(set(user_ids)) != len(user_ids):
            raise ValueError("user ids must be unique")
        return user_ids


class SetGrayscale(Command):
    percent: int = Field(ge=1, le=100)


class FullRelease(Command):
    pass


class CancelGrayscale(Command):
    reason: str | None = Field(default=None, max_length=2000)


class ResetGrayscale(Command):
    pass


class CancelRelease(Command):
    reason: str | None = Field(default=None, max_length=2000)
