"""Commands of every lifecycle: the base payload and the lenient parsing of whatever arrived.

Signals and updates deliver raw JSON values; parsing them here (never in the SDK's decoder)
means a malformed payload becomes a recorded rejection instead of a silently dropped signal.
"""

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from mpr.domain.core.models import Strict, UserId

Actor = UserId


class Command(Strict):
    actor: Actor


C = TypeVar("C", bound="Command")


class ParseFailure(Exception):
    """A payload that is not a valid command; `actor` is kept when it could be read."""

    def __init__(self, reason: str, actor: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.actor = actor


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
