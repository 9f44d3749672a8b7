"""Commands of every lifecycle: the base payload and the lenient parsing of whatever arrived.

Signals and updates deliver raw JSON values; parsing them here (never in the SDK's decoder)
means a malformed payload becomes a recorded rejection instead of a silently dropped signal.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from mpr.domain.core.models import Strict, UserId

Actor = UserId


class Command(Strict):
    actor: Actor | None = None
    """Who sends it: may be left out, since the verified identity speaks (core.identity);
    when given it must name the verified subject. The workflow decides a command only once
    it carries that subject here."""

    @property
    def by(self) -> str:
        if self.actor is None:
            raise ValueError("a command is decided only once its actor is verified")
        return self.actor


C = TypeVar("C", bound="Command")


class ParseFailure(Exception):
    """A payload that is not a valid command; `actor` is kept when it could be read."""

    def __init__(self, reason: str, actor: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.actor = actor


@dataclass(frozen=True)
class Undecryptable:
    """What the worker's payload converter gives for a payload it could not decrypt (its key
    is unknown, or it was altered), so that such a command is refused and recorded rather than
    dropped (mpr.infra.codec)."""

    key_id: str | None

    def reason(self, what: str = "the payload") -> str:
        key = f" (key id {self.key_id!r})" if self.key_id else " (it names no key id)"
        return f"{what} could not be decrypted{key}"


def payload_of(
    name: str, args: tuple[Any, ...] | list[Any], commands: Mapping[str, Any]
) -> dict[str, Any]:
    """The one JSON object a command carries; ParseFailure when there is not exactly one."""
    if name not in commands:
        known = ", ".join(commands)
        raise ParseFailure(f"unknown command {name!r}; known commands: {known}", None)
    if len(args) != 1:
        raise ParseFailure(
            f"{name} takes exactly one JSON object as payload, got {len(args)} payloads", None
        )
    payload = args[0]
    if isinstance(payload, Undecryptable):
        raise ParseFailure(payload.reason(), None)
    if not isinstance(payload, dict):
        raise ParseFailure(
            f"{name} payload must be a JSON object, got {_json_type(payload)}", None
        )
    return payload


def parse(
    name: str, args: tuple[Any, ...] | list[Any], commands: Mapping[str, type[C]]
) -> C:
    """Turn the raw arguments of a signal or update into one of `commands`, or raise
    ParseFailure with a reason an operator can act on."""
    payload = payload_of(name, args, commands)
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
