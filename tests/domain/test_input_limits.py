"""Every size an operator or a service controls is bounded, and the refusal says which bound.

One row per bounded input: the largest accepted value is accepted, one more is refused with a
reason naming the field. (Source archives are bounded by the build's limits, tested in
tests/activities/test_build.py; a Temporal payload is also capped at 2 MB by the server.)
"""

from typing import Any

import pytest
from pydantic import ValidationError

from mpr.domain.core.commands import ParseFailure, parse
from mpr.domain.core.models import MAX_USER_ID_LENGTH
from mpr.domain.mini_service.models import (
    MAX_IMAGES,
    MAX_LANGUAGE_CODE_LENGTH,
    MAX_LANGUAGES,
    MAX_PROGRAMS_PER_SECTION,
    MAX_TESTERS,
    ServiceStart,
)
from mpr.domain.mini_service.rules import MINI_SERVICE
from mpr.domain.release.models import MAX_DOMAINS, MAX_WHITELIST_USERS, StartInput
from mpr.domain.release.rules import RELEASE

START = {
    "mini_program_id": "coffee-shop", "version": "1.0.0", "target_app": "gopay",
    "workspace_id": "ws-1", "requested_by": "alice", "source": "/srv/coffee-shop",
}


def text(length: int) -> str:
    return "x" * length


def domains(count: int) -> list[str]:
    return [f"api{i}.example.com" for i in range(count)]


def languages(count: int) -> dict[str, str]:
    codes = [f"en-x{i:03d}" for i in range(count)]
    return {code: "Coffee" for code in codes}


def language_code(length: int) -> str:
    """A well-formed code (en-xxxxxxxx-...) of exactly `length` characters."""
    code = "en"
    while len(code) + 9 <= length:
        code += "-abcdefgh"
    rest = length - len(code) - 1
    return code + ("-" + "a" * rest if rest >= 2 else "")


Build = Any  # (size) -> (command name, payload)
RELEASE_COMMANDS: list[tuple[str, int, Build, str]] = [
    ("actor", MAX_USER_ID_LENGTH,
     lambda n: ("retest_compatibility", {"actor": text(n)}), "actor"),
    ("rebuild source", 4096,
     lambda n: ("rebuild", {"actor": "a", "source": "/" + text(n - 1)}), "source"),
    ("app name", 64,
     lambda n: ("update_config", {"actor": "a", "config": {"basic_info": {"name": text(n)}}}),
     "name"),
    ("app description", 1000,
     lambda n: ("update_config",
                {"actor": "a", "config": {"basic_info": {"description": text(n)}}}),
     "description"),
    ("app icon", 2048,
     lambda n: ("update_config", {"actor": "a", "config": {"basic_info": {"icon": text(n)}}}),
     "icon"),
    ("server domain whitelist", MAX_DOMAINS,
     lambda n: ("update_config",
                {"actor": "a", "config": {"server_domain_whitelist": domains(n)}}),
     "server_domain_whitelist"),
    ("h5 domain whitelist", MAX_DOMAINS,
     lambda n: ("apply_release", {"actor": "a", "h5_domain_whitelist": domains(n)}),
     "h5_domain_whitelist"),
    ("review comment", 2000,
     lambda n: ("approve_review", {"actor": "a", "reviewer": "platform", "comment": text(n)}),
     "comment"),
    ("rejection reason", 2000,
     lambda n: ("reject_review", {"actor": "a", "reviewer": "platform", "reason": text(n)}),
     "reason"),
    ("whitelist size", MAX_WHITELIST_USERS,
     lambda n: ("start_whitelist_test", {"actor": "a", "user_ids": [f"u{i}" for i in range(n)]}),
     "user_ids"),
    ("whitelist user id", MAX_USER_ID_LENGTH,
     lambda n: ("start_whitelist_test", {"actor": "a", "user_ids": [text(n)]}), "user_ids"),
    ("grayscale cancel reason", 2000,
     lambda n: ("cancel_grayscale", {"actor": "a", "reason": text(n)}), "reason"),
    ("release cancel reason", 2000,
     lambda n: ("cancel_release", {"actor": "a", "reason": text(n)}), "reason"),
]

SERVICE_COMMAND_LIMITS: list[tuple[str, int, Build, str]] = [
    ("testers", MAX_TESTERS,
     lambda n: ("test", {"actor": "a", "testers": [f"t{i}@example.com" for i in range(n)]}),
     "testers"),
    ("tester address local part", 64,
     lambda n: ("retest", {"actor": "a", "testers": [f"{text(n)}@example.com"]}), "testers"),
    ("section title languages", MAX_LANGUAGES,
     lambda n: ("add_section", {"actor": "a", "title": languages(n)}), "title"),
    ("section title text", 100,
     lambda n: ("add_section", {"actor": "a", "title": {"en": text(n)}}), "title"),
    ("language code", MAX_LANGUAGE_CODE_LENGTH,
     lambda n: ("add_section", {"actor": "a", "title": {language_code(n): "Coffee"}}), "title"),
    ("mini programs in a section", MAX_PROGRAMS_PER_SECTION,
     lambda n: ("add_section", {"actor": "a", "title": {"en": "Food"},
                                "mini_program_ids": [f"p{i}" for i in range(n)]}),
     "mini_program_ids"),
    ("section images", MAX_IMAGES,
     lambda n: ("edit_section", {"actor": "a", "section_id": "s1",
                                 "images": [f"https://cdn.example.com/{i}.png" for i in range(n)]}),
     "images"),
    ("title default language", MAX_LANGUAGE_CODE_LENGTH,
     lambda n: ("edit_title", {"actor": "a", "title": {
         "default_language": language_code(n), "texts": {language_code(n): "Coffee"}}}),
     "title"),
]


def refusal(name: str, payload: dict[str, Any], commands: Any) -> str | None:
    try:
        parse(name, [payload], commands)
    except ParseFailure as failure:
        return failure.reason
    return None


@pytest.mark.parametrize(("label", "limit", "build", "field"), RELEASE_COMMANDS,
                         ids=[row[0] for row in RELEASE_COMMANDS])
def test_release_command_limits(label: str, limit: int, build: Build, field: str) -> None:
    name, at_limit = build(limit)
    assert refusal(name, at_limit, RELEASE.commands) is None
    name, over = build(limit + 1)
    reason = refusal(name, over, RELEASE.commands)
    assert reason is not None and reason.startswith(f"invalid {name} payload: ")
    assert field in reason


@pytest.mark.parametrize(("label", "limit", "build", "field"), SERVICE_COMMAND_LIMITS,
                         ids=[row[0] for row in SERVICE_COMMAND_LIMITS])
def test_mini_service_command_limits(label: str, limit: int, build: Build, field: str) -> None:
    name, at_limit = build(limit)
    assert refusal(name, at_limit, MINI_SERVICE.commands) is None
    name, over = build(limit + 1)
    reason = refusal(name, over, MINI_SERVICE.commands)
    assert reason is not None and reason.startswith(f"invalid {name} payload: ")
    assert field in reason


@pytest.mark.parametrize(("field", "limit"), [
    ("mini_program_id", 64), ("target_app", 64), ("workspace_id", 64),
    ("requested_by", MAX_USER_ID_LENGTH), ("source", 4096),
])
def test_start_input_limits(field: str, limit: int) -> None:
    StartInput.model_validate({**START, field: "a" * limit})
    with pytest.raises(ValidationError) as refused:
        StartInput.model_validate({**START, field: "a" * (limit + 1)})
    assert refused.value.errors()[0]["loc"] == (field,)


def test_service_start_limits() -> None:
    start = {"super_app": "gopay", "version_no": 1}
    ServiceStart.model_validate({**start, "created_by": "a" * 128})
    with pytest.raises(ValidationError):
        ServiceStart.model_validate({**start, "created_by": "a" * 129})


def test_a_malformed_command_is_refused_not_parsed_partially() -> None:
    assert RELEASE.parse("retest_compatibility", [{"actor": "a"}]).actor == "a"
    with pytest.raises(ParseFailure, match="actor"):
        RELEASE.parse("retest_compatibility", [{"actor": "a" * 10_000}])
