"""Operator commands: their payloads and the lenient parsing of whatever arrived.

Signals and updates deliver raw JSON values; parsing them here (never in the SDK's decoder)
means a malformed payload becomes a recorded rejection instead of a silently dropped signal.
"""

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import Field, ValidationError, field_validator

from domain.models import (
    MAX_WHITELIST_USERS,
    BasicInfoPatch,
    ConfigPatch,
    DomainList,
    Reviewer,
    Strict,
    UserId,
)

Actor = UserId


class Command(Strict):
    actor: Actor


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


C = TypeVar("C", bound="Command")

COMMANDS: dict[str, type[Command]] = {
    "update_config": UpdateConfig,
    "rebuild": Rebuild,
    "retest_compatibility": RetestCompatibility,
    "apply_release": ApplyRelease,
    "approve_review": ApproveReview,
    "reject_review": RejectReview,
    "start_whitelist_test": StartWhitelistTest,
    "set_grayscale": SetGrayscale,
    "full_release": FullRelease,
    "cancel_grayscale": CancelGrayscale,
    "reset_grayscale": ResetGrayscale,
    "cancel_release": CancelRelease,
}

COMMAND_NAMES: dict[type[Command], str] = {cls: name for name, cls in COMMANDS.items()}


def command_name(command: Command) -> str:
    return COMMAND_NAMES[type(command)]


class ParseFailure(Exception):
    """A payload that is not a valid command; `actor` is kept when it could be read."""

    def __init__(self, reason: str, actor: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.actor = actor


def parse_command(name: str, args: tuple[Any, ...] | list[Any]) -> Command:
    """Turn the raw arguments of a signal or update into a release command."""
    return parse(name, args, COMMANDS)


def parse(
    name: str, args: tuple[Any, ...] | list[Any], commands: Mapping[str, type[C]]
) -> C:
    """Turn the raw arguments of a signal or update into one of `commands`, or raise
    ParseFailure with a reason an operator can act on."""
    if name not in commands:
        known = ", ".join(commands)
        raise ParseFailure(f"unknown command {name!r}; known commands: {known}", None)
    if len(args) != 1:
        raise ParseFailure(
            f"{name} takes exactly one JSON object as payload, got {len(args)} payloads", None
        )
    payload = args[0]
    if not isinstance(payload, dict):
        raise ParseFailure(
            f"{name} payload must be a JSON object, got {_json_type(payload)}", None
        )
    actor = payload.get("actor") if isinstance(payload.get("actor"), str) else None
    try:
        return commands[name].model_validate(payload)
    except ValidationError as error:
        raise ParseFailure(f"invalid {name} payload: {describe(error)}", actor) from None


def describe(error: ValidationError) -> str:
    """One readable line per problem: 'percent: Input should be a valid integer'."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "payload"
        if item["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown field")
        elif item["type"] == "missing":
            problems.append(f"{where}: required field missing")
        else:
            problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
