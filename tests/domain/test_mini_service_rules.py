"""Every rule and refusal of the mini service (seed 004), without Temporal or a database."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpr.domain.core.commands import Command, ParseFailure, parse
from mpr.domain.core.models import Role
from mpr.domain.core.rules import Accepted, Rejected
from mpr.domain.mini_service.models import MiniServiceContent, ServiceStart, Title, preview
from mpr.domain.mini_service.rules import MINI_SERVICE, RULES, archived, start_service
from mpr.domain.mini_service.stages import FINAL_STATUSES, ServiceStatus
from mpr.domain.mini_service.state import MiniServiceState

NOW = datetime(2026, 11, 21, tzinfo=UTC)
ADMIN = frozenset({Role.SERVICE_ADMIN})
OPERATOR = frozenset({Role.SERVICE_OPERATOR})
EDITS = frozenset({"edit_title", "add_section", "edit_section", "move_section", "delete_section",
                   "add_mini_program", "remove_mini_program", "move_mini_program"})
decide = MINI_SERVICE.decide
PAYLOADS: dict[str, dict[str, Any]] = {
    "edit_title": {"title": {"default_language": "en", "texts": {"en": "Services"}}},
    "add_section": {"title": {"en": "Food"}},
    "edit_section": {"section_id": "section-1", "title": {"en": "Meals"}},
    "move_section": {"section_id": "section-1", "position": 0},
    "delete_section": {"section_id": "section-1"},
    "add_mini_program": {"section_id": "section-1", "mini_program_id": "tea-house"},
    "remove_mini_program": {"section_id": "section-1", "mini_program_id": "coffee-shop"},
    "move_mini_program": {"section_id": "section-1", "mini_program_id": "coffee-shop",
                          "position": 0},
    "test": {"testers": ["qa@example.com"]},
    "retest": {"testers": ["qa@example.com"]},
    "revert": {},
    "release": {"percent": 50},
    "delete": {},
}


def make(name: str, actor: str = "ada", **overrides: Any) -> Command:
    return parse(name, ({"actor": actor, **PAYLOADS[name], **overrides},), MINI_SERVICE.commands)


def draft_with_section() -> MiniServiceState:
    state = start_service(ServiceStart(super_app="gopay", version_no=3, created_by="olly"),
                          [1, 5, 20, 50, 100], NOW)
    decision = decide(state, make("add_section", mini_program_ids=["coffee-shop"]), ADMIN, NOW)
    assert isinstance(decision, Accepted)
    return decision.state


def at(status: ServiceStatus, percent: int = 0) -> MiniServiceState:
    return draft_with_section().model_copy(update={"status": status, "percent": percent})


def accepted(decision: Any) -> MiniServiceState:
    assert isinstance(decision, Accepted), getattr(decision, "reason", decision)
    return decision.state


def refusal(decision: Any) -> str:
    assert isinstance(decision, Rejected), decision
    return decision.reason


@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("status", list(ServiceStatus))
def test_each_command_in_each_status(name: str, status: ServiceStatus) -> None:
    decision = decide(at(status, percent=5 if status is ServiceStatus.RELEASING else 0),
                      make(name), ADMIN, NOW)
    if status in FINAL_STATUSES:
        assert "accepts no more commands" in refusal(decision)
    elif status in RULES[name].allowed_in:
        accepted(decision)
    elif name in EDITS:
        assert refusal(decision).startswith(
            f"{name} is not allowed in status {status} (allowed in: DRAFT); "
            "only a DRAFT can be edited: ")
    else:
        assert f"{name} is not allowed in status {status}" in refusal(decision)


@pytest.mark.parametrize("name", list(RULES))
def test_operators_do_everything_but_release(name: str) -> None:
    status = next(iter(sorted(RULES[name].allowed_in)))
    state = at(status, percent=5 if status is ServiceStatus.RELEASING else 0)
    operator = decide(state, make(name, actor="olly"), OPERATOR, NOW)
    if name == "release":
        assert "needs service_admin" in refusal(operator)
    else:
        accepted(operator)
    assert "is not authorised" in refusal(decide(state, make(name, actor="eve"), frozenset(),
                                                 NOW))
    other_roles = frozenset({Role.ADMIN, Role.OWNER, Role.PARTNER_REVIEWER})
    assert "is not authorised" in refusal(decide(state, make(name), other_roles, NOW))


def test_new_versions_have_the_four_default_sections() -> None:
    content = MiniServiceContent.new()
    assert [s.kind for s in content.sections] == ["carousel", "banner", "favorite",
                                                  "recently_used"]


def test_lifecycle_and_release_ladder() -> None:
    state = accepted(decide(at(ServiceStatus.DRAFT), make("test"), ADMIN, NOW))
    assert (state.status, state.testers) == (ServiceStatus.TESTING, ["qa@example.com"])
    state = accepted(decide(state, make("retest", testers=["B@Example.com"]), ADMIN, NOW))
    assert state.testers == ["b@example.com"]
    assert "not on gopay's grayscale ladder" in refusal(decide(
        state, make("release", percent=10), ADMIN, NOW))
    state = accepted(decide(state, make("release", percent=20), ADMIN, NOW))
    assert (state.status, state.percent) == (ServiceStatus.RELEASING, 20)
    assert "only increases" in refusal(decide(state, make("release", percent=5), ADMIN, NOW))
    reverted = accepted(decide(state, make("revert"), ADMIN, NOW))
    assert (reverted.status, reverted.percent, reverted.testers) == (ServiceStatus.DRAFT, 0, [])
    decision = decide(state, make("release", percent=100), ADMIN, NOW)
    assert isinstance(decision, Accepted) and decision.effects.promote
    assert (decision.state.status, decision.state.released_at) == (ServiceStatus.RELEASED, NOW)
    assert "duplicate it" in refusal(decide(decision.state, make("add_section"), ADMIN, NOW))
    assert archived(decision.state, NOW).status is ServiceStatus.ARCHIVED


def test_sections_and_programs() -> None:
    state = draft_with_section()
    assert "already in section-1" in refusal(decide(
        state, make("add_mini_program", mini_program_id="coffee-shop"), ADMIN, NOW))
    assert "past the end" in refusal(decide(state, make("move_section", position=9), ADMIN, NOW))
    assert "does not list mini programs" in refusal(decide(
        state, make("add_mini_program", section_id="favorite"), ADMIN, NOW))
    assert "only the carousel and the banner" in refusal(decide(
        state, make("edit_section", title=None, images=["https://x.example.com/a.png"]),
        ADMIN, NOW))
    assert "super app's own" in refusal(decide(
        state, make("edit_section", section_id="banner"), ADMIN, NOW))
    assert "no section 'nope'" in refusal(decide(
        state, make("delete_section", section_id="nope"), ADMIN, NOW))
    removed = accepted(decide(state, make("remove_mini_program"), ADMIN, NOW))
    assert "cannot be brought back" in refusal(decide(
        removed, make("add_mini_program", mini_program_id="coffee-shop"), ADMIN, NOW))
    deleted = accepted(decide(state, make("delete_section"), ADMIN, NOW))
    assert "was deleted" in refusal(decide(deleted, make("edit_section"), ADMIN, NOW))
    again = accepted(decide(deleted, make("add_section"), ADMIN, NOW))
    assert again.content.sections[-1].section_id == "section-2"


@pytest.mark.parametrize(("payload", "expected"), [
    ({"title": {"default_language": "fr", "texts": {"en": "x"}}}, "has no text"),
    ({"title": {"default_language": "en", "texts": {"EN!": "x"}}}, "not a language code"),
    ({"title": {"default_language": "en", "texts": {}}}, "at least 1 item"),
])
def test_title_validation(payload: dict[str, Any], expected: str) -> None:
    with pytest.raises(ParseFailure, match=expected):
        parse("edit_title", ({"actor": "a", **payload},), MINI_SERVICE.commands)


def test_testers_must_be_distinct_emails() -> None:
    for testers, problem in ((["x"], "not an email"), (["a@b.co", "a@b.co"], "unique"),
                             ([], "at least 1 item")):
        with pytest.raises(ParseFailure, match=problem):
            parse("test", ({"actor": "a", "testers": testers},), MINI_SERVICE.commands)


def test_preview_falls_back_per_field() -> None:
    state = draft_with_section()
    content = state.content.model_copy(update={
        "title": Title(default_language="en", texts={"en": "Services", "id": "Layanan"})})
    page = preview(content, "id")
    assert page.title == "Layanan"
    assert page.sections[-1].title == "Food", "section without an id text falls back to en"
    assert preview(content, "th").title == "Services"


service_commands = st.one_of(
    st.builds(lambda p: make("release", percent=p), st.integers(1, 100)),
    st.sampled_from([make(n) for n in RULES if n != "release"]),
    st.builds(lambda n: make(n, actor="olly"), st.sampled_from(list(RULES))),
)


@settings(max_examples=200, deadline=None)
@given(script=st.lists(service_commands, max_size=30))
def test_invariants_for_any_command_sequence(script: list[Command]) -> None:
    state = draft_with_section()
    now = NOW
    for command in script:
        now += timedelta(minutes=1)
        roles = ADMIN if command.actor == "ada" else OPERATOR
        decision = decide(state, command, roles, now)
        if isinstance(decision, Rejected):
            continue
        after = decision.state
        assert state.status not in FINAL_STATUSES
        if after.percent < state.percent:
            assert after.status is ServiceStatus.DRAFT and after.percent == 0
        if after.content != state.content:
            assert state.status is ServiceStatus.DRAFT, "only drafts change content"
        if after.status is ServiceStatus.RELEASED:
            assert state.status in (ServiceStatus.TESTING, ServiceStatus.RELEASING)
        state = after
