"""Every transition and every refusal of the release rules, without Temporal or a database."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpr.domain.core.commands import Command, ParseFailure
from mpr.domain.core.models import Role
from mpr.domain.core.rules import Accepted, Rejected
from mpr.domain.release.models import (
    AppManifest,
    CellCheck,
    CellResult,
    CompatibilityReport,
    MatrixCell,
    PackageFacts,
    ReleaseContext,
    Reviewer,
    StartInput,
    TargetAppPolicy,
)
from mpr.domain.release.rules import (
    RELEASE,
    RULES,
    build_failed,
    build_succeeded,
    compatibility_finished,
    start_release,
)
from mpr.domain.release.stages import TERMINAL_STAGES, Stage
from mpr.domain.release.state import ReleaseState

NOW = datetime(2026, 11, 21, tzinfo=UTC)
ALIPAYCN = TargetAppPolicy(target_app="alipaycn",
                           required_reviewers=[Reviewer.PLATFORM, Reviewer.PARTNER_APP],
                           whitelist_allowed=False)
GOPAY = TargetAppPolicy(target_app="gopay", required_reviewers=[Reviewer.PARTNER_APP],
                        first_release_full_only=True, whitelist_allowed=True)
PACKAGE = PackageFacts(sha256="0" * 64, size_bytes=10, uncompressed_bytes=20, file_count=2,
                       artifact_path="/a.zip",
                       manifest=AppManifest(name="C", version="1.0.0", pages=["p"]))
EVERYONE = frozenset(Role)
decide = RELEASE.decide

VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "update_config": {"config": {"basic_info": {"description": "d"}}},
    "rebuild": {},
    "retest_compatibility": {},
    "apply_release": {},
    "approve_review": {"reviewer": "partner_app"},
    "reject_review": {"reviewer": "partner_app", "reason": "no"},
    "start_whitelist_test": {"user_ids": ["u1"]},
    "set_grayscale": {"percent": 50},
    "full_release": {},
    "cancel_grayscale": {},
    "reset_grayscale": {},
    "cancel_release": {},
}


def make(name: str, actor: str = "someone", **overrides: Any) -> Command:
    return RELEASE.parse(name, ({"actor": actor, **VALID_PAYLOADS[name], **overrides},))


def state_at(stage: Stage, policy: TargetAppPolicy = ALIPAYCN, first_release: bool = False,
             **changes: Any) -> ReleaseState:
    request = StartInput(mini_program_id="coffee", version="1.0.0", target_app=policy.target_app,
                         workspace_id="ws", requested_by="dev", source="/src",
                         config={"basic_info": {"name": "Coffee"}})
    context = ReleaseContext(policy=policy, first_release=first_release,
                             previous_stable_version=None if first_release else "0.9.0")
    state = start_release("release:coffee:1.0.0:alipaycn:production", request, context, NOW)
    percent = 5 if stage is Stage.GRAYSCALE else 0
    return state.model_copy(update={
        "stage": stage, "pending_work": None, "package": PACKAGE, "percent": percent,
        "review_round": 1, **changes,
    })


def accepted(decision: Any) -> ReleaseState:
    assert isinstance(decision, Accepted), getattr(decision, "reason", decision)
    return decision.state


def refusal(decision: Any) -> str:
    assert isinstance(decision, Rejected), f"expected a refusal, got {decision}"
    return decision.reason


# --- stage table -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("stage", list(Stage))
def test_each_command_is_allowed_exactly_in_its_stages(name: str, stage: Stage) -> None:
    command = make(name)
    state = state_at(stage, GOPAY, first_release=False)
    decision = decide(state, command, EVERYONE, NOW)
    if stage in TERMINAL_STAGES:
        assert refusal(decision) == f"the release is {stage} and accepts no more commands"
    elif stage in RULES[name].allowed_in:
        accepted(decision)
    else:
        assert f"{name} is not allowed in stage {stage}" in refusal(decision)


@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("role", list(Role))
def test_authorisation_matrix(name: str, role: Role) -> None:
    command = make(name, actor="mallory")
    stage = next(iter(sorted(RULES[name].allowed_in)))
    decision = decide(state_at(stage, GOPAY), command, frozenset({role}), NOW)
    if role in RULES[name].roles_for(command):
        assert not isinstance(decision, Rejected) or "not authorised" not in decision.reason
    else:
        assert refusal(decision).startswith(f"mallory is not authorised to {name}")


def test_no_roles_means_no_command() -> None:
    for name in RULES:
        stage = next(iter(RULES[name].allowed_in))
        assert "has no role" in refusal(decide(state_at(stage, GOPAY), make(name), frozenset(),
                                               NOW))


def roles_needed(command: Command) -> frozenset[Role]:
    return RULES[RELEASE.name_of(command)].roles_for(command)


def test_who_may_do_what_follows_the_seeds() -> None:
    build = {Role.OWNER, Role.ADMIN, Role.MASTER, Role.DEVELOPER}
    go_live = {Role.ADMIN, Role.PROGRAM_ADMIN}
    for name in ("update_config", "rebuild", "retest_compatibility", "apply_release"):
        assert roles_needed(make(name)) == build
    for name in ("start_whitelist_test", "set_grayscale", "full_release", "cancel_grayscale",
                 "reset_grayscale"):
        assert roles_needed(make(name)) == go_live
    assert roles_needed(make("approve_review", reviewer="platform")) == {Role.PLATFORM_REVIEWER}
    assert roles_needed(make("approve_review")) == {Role.PARTNER_REVIEWER}
    assert Role.DEVELOPER not in roles_needed(make("cancel_release"))


# --- the process -----------------------------------------------------------------------------

def test_build_and_test_lead_to_ready_to_apply_in_production() -> None:
    state = state_at(Stage.BUILDING, pending_work="BUILD", package=None)
    state = build_succeeded(state, PACKAGE, NOW).state
    assert (state.stage, state.pending_work, state.package) == (
        Stage.COMPATIBILITY_TESTING, "COMPATIBILITY", PACKAGE)
    report = CompatibilityReport(report_id="r", package_sha256=PACKAGE.sha256, results=[],
                                 created_at=NOW)
    decision = compatibility_finished(state, report, NOW)
    assert decision.state.stage is Stage.READY_TO_APPLY
    assert not decision.effects.promote


def test_non_production_releases_itself_after_testing() -> None:
    state = state_at(Stage.COMPATIBILITY_TESTING)
    state = state.model_copy(update={"request": state.request.model_copy(
        update={"environment": "test"})})
    report = CompatibilityReport(report_id="r", package_sha256="x", results=[], created_at=NOW)
    decision = compatibility_finished(state, report, NOW)
    assert decision.state.stage is Stage.RELEASED and decision.effects.promote


def test_build_failure_keeps_the_message() -> None:
    state = build_failed(state_at(Stage.BUILDING), "page 'x' has no file", NOW).state
    assert (state.stage, state.build_error, state.pending_work) == (
        Stage.BUILD_FAILED, "page 'x' has no file", None)


def test_rebuild_starts_over_with_a_new_source() -> None:
    state = accepted(decide(state_at(Stage.REJECTED), make("rebuild", source="/v2"), EVERYONE,
                            NOW))
    assert (state.stage, state.pending_work, state.source, state.package) == (
        Stage.BUILDING, "BUILD", "/v2", None)


def test_apply_opens_a_new_review_round_and_clears_approvals() -> None:
    state = state_at(Stage.REJECTED, review_round=1)
    decision = decide(state, make("apply_release", basic_info={"name": "Cafe"}), EVERYONE, NOW)
    assert isinstance(decision, Accepted) and decision.effects.open_review_round
    assert (decision.state.review_round, decision.state.approvals) == (2, {})
    assert decision.state.config.basic_info is not None
    assert decision.state.config.basic_info.name == "Cafe"


def test_apply_needs_basic_information() -> None:
    state = state_at(Stage.READY_TO_APPLY).model_copy(update={
        "config": state_at(Stage.READY_TO_APPLY).config.model_copy(update={"basic_info": None})})
    assert "needs basic_info" in refusal(decide(state, make("apply_release"), EVERYONE, NOW))
    assert "basic_info.name is required" in refusal(decide(
        state, make("apply_release", basic_info={"description": "x"}), EVERYONE, NOW))


def test_apply_with_failing_cells_is_accepted_with_a_note() -> None:
    failing = CellResult(cell=MatrixCell(os="ios", network="2g", device_tier="low"),
                         verdict="fail",
                         checks=[CellCheck(name="download", verdict="fail", detail="too slow")])
    report = CompatibilityReport(report_id="r", package_sha256="x", results=[failing],
                                 created_at=NOW)
    decision = decide(state_at(Stage.READY_TO_APPLY, compatibility=report),
                      make("apply_release"), EVERYONE, NOW)
    assert isinstance(decision, Accepted)
    assert decision.note == "applied with 1 failing compatibility cell(s): ios/2g/low: too slow"


def test_every_required_reviewer_must_approve() -> None:
    state = state_at(Stage.UNDER_REVIEW)
    state = accepted(decide(state, make("approve_review", reviewer="platform"), EVERYONE, NOW))
    assert state.stage is Stage.UNDER_REVIEW
    assert "already approved" in refusal(decide(state, make("approve_review",
                                                             reviewer="platform"), EVERYONE, NOW))
    state = accepted(decide(state, make("approve_review"), EVERYONE, NOW))
    assert state.stage is Stage.RELEASE_PREPARATION


def test_reviewers_the_app_does_not_require_are_refused() -> None:
    state = state_at(Stage.UNDER_REVIEW, GOPAY)
    reason = refusal(decide(state, make("approve_review", reviewer="platform"), EVERYONE, NOW))
    assert reason == "target app gopay does not take a platform review (required: partner_app)"


def test_review_rejection_is_kept() -> None:
    state = accepted(decide(state_at(Stage.UNDER_REVIEW), make("reject_review", reason="icon"),
                            EVERYONE, NOW))
    assert state.stage is Stage.REJECTED
    assert state.review_rejection is not None and state.review_rejection.reason == "icon"


@pytest.mark.parametrize("stage", [Stage.UNDER_REVIEW, Stage.RELEASE_PREPARATION,
                                   Stage.WHITELIST_TESTING, Stage.GRAYSCALE])
def test_only_basic_info_changes_from_review_on(stage: Stage) -> None:
    state = state_at(stage, GOPAY)
    command = make("update_config", config={"h5_domain_whitelist": ["h5.example.com"]})
    assert "only basic_info can be changed" in refusal(decide(state, command, EVERYONE, NOW))
    changed = accepted(decide(state, make("update_config"), EVERYONE, NOW))
    assert changed.config.basic_info is not None
    assert changed.config.basic_info.description == "d"
    assert changed.stage is stage


def test_any_config_field_changes_before_review() -> None:
    command = make("update_config", config={
        "server_domain_whitelist": ["https://API.example.com"],
        "compatibility": {"operating_systems": ["ios"]}})
    state = accepted(decide(state_at(Stage.BUILD_FAILED), command, EVERYONE, NOW))
    assert state.config.server_domain_whitelist == ["api.example.com"]
    assert state.config.compatibility is not None
    assert state.config.compatibility.operating_systems == ["ios"]
    assert "at least one config field" in refusal(decide(
        state, make("update_config", config={}), EVERYONE, NOW))


def test_grayscale_ladder_and_increase() -> None:
    state = state_at(Stage.RELEASE_PREPARATION)
    assert "not on alipaycn's grayscale ladder" in refusal(decide(
        state, make("set_grayscale", percent=3), EVERYONE, NOW))
    state = accepted(decide(state, make("set_grayscale", percent=10), EVERYONE, NOW))
    assert (state.stage, state.percent) == (Stage.GRAYSCALE, 10)
    assert "only increases: currently 10%, asked 10%" in refusal(decide(
        state, make("set_grayscale", percent=10), EVERYONE, NOW))
    state = accepted(decide(state, make("reset_grayscale"), EVERYONE, NOW))
    assert (state.stage, state.percent) == (Stage.RELEASE_PREPARATION, 0)
    decision = decide(state, make("set_grayscale", percent=100), EVERYONE, NOW)
    assert isinstance(decision, Accepted) and decision.effects.promote
    assert (decision.state.stage, decision.state.percent) == (Stage.RELEASED, 100)


def test_custom_ladder() -> None:
    policy = ALIPAYCN.model_copy(update={"grayscale_ladder": [10, 100]})
    state = state_at(Stage.RELEASE_PREPARATION, policy)
    assert "(10%, 100%)" in refusal(decide(state, make("set_grayscale", percent=5), EVERYONE,
                                           NOW))


def test_first_release_under_full_only_policy() -> None:
    state = state_at(Stage.RELEASE_PREPARATION, GOPAY, first_release=True)
    for command in (make("set_grayscale", percent=1), make("start_whitelist_test")):
        assert "can only be a full release" in refusal(decide(state, command, EVERYONE, NOW))
    decision = decide(state, make("full_release"), EVERYONE, NOW)
    assert isinstance(decision, Accepted) and decision.state.stage is Stage.RELEASED


def test_whitelist_replaces_the_list_and_writes_the_channel() -> None:
    state = state_at(Stage.RELEASE_PREPARATION, GOPAY)
    decision = decide(state, make("start_whitelist_test", user_ids=["a", "b"]), EVERYONE, NOW)
    assert isinstance(decision, Accepted) and decision.effects.write_rollout
    state = accepted(decide(decision.state, make("start_whitelist_test", user_ids=["c"]),
                            EVERYONE, NOW))
    assert (state.stage, state.whitelist) == (Stage.WHITELIST_TESTING, ["c"])
    assert state.rollout().whitelist == ["c"]


def test_whitelist_refused_where_the_app_has_none() -> None:
    reason = refusal(decide(state_at(Stage.RELEASE_PREPARATION), make("start_whitelist_test"),
                            EVERYONE, NOW))
    assert reason == "target app alipaycn does not offer whitelist tests"


def test_cancel_grayscale_ends_the_release_and_clears_the_candidate() -> None:
    decision = decide(state_at(Stage.GRAYSCALE), make("cancel_grayscale", reason="bugs"),
                      EVERYONE, NOW)
    assert isinstance(decision, Accepted) and decision.effects.write_rollout
    assert (decision.state.stage, decision.state.cancel_reason) == (Stage.CANCELED, "bugs")
    assert decision.state.rollout().candidate_version is None


def test_cancel_release_stops_pending_work() -> None:
    state = state_at(Stage.BUILDING, pending_work="BUILD")
    decision = decide(state, make("cancel_release"), EVERYONE, NOW)
    assert isinstance(decision, Accepted)
    assert decision.effects.cancel_work and not decision.effects.write_rollout
    assert decision.state.pending_work is None


# --- parsing ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "expected"), [
    ((), "takes exactly one JSON object as payload, got 0 payloads"),
    (({"actor": "a"}, {"actor": "b"}), "got 2 payloads"),
    (("text",), "payload must be a JSON object, got a string"),
    ((None,), "got null"),
    (([1],), "got an array"),

    (({"actor": "a", "percent": 5, "pct": 1},), "pct: unknown field"),
    (({"actor": "a", "percent": "lots"},), "percent: Input should be a valid integer"),
    (({"actor": "a", "percent": 0},), "percent: Input should be greater than or equal to 1"),
    (({"actor": "", "percent": 5},), "actor: String should have at least 1 character"),
])
def test_malformed_payloads_are_described(args: tuple[Any, ...], expected: str) -> None:
    with pytest.raises(ParseFailure) as failure:
        RELEASE.parse("set_grayscale", args)
    assert expected in failure.value.reason


def test_unknown_command_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ParseFailure) as failure:
        RELEASE.parse("aprove_review", ({"actor": "a"},))
    assert "unknown command 'aprove_review'; known commands: update_config" in str(failure.value)


def test_actor_is_kept_from_malformed_payloads_for_the_audit() -> None:
    with pytest.raises(ParseFailure) as failure:
        RELEASE.parse("set_grayscale", ({"actor": "ann", "percent": []},))
    assert failure.value.actor == "ann"


def test_whitelist_limits() -> None:
    with pytest.raises(ParseFailure, match="user ids must be unique"):
        RELEASE.parse("start_whitelist_test", ({"actor": "a", "user_ids": ["u", "u"]},))
    with pytest.raises(ParseFailure, match="at most 1000"):
        RELEASE.parse("start_whitelist_test",
                      ({"actor": "a", "user_ids": [f"u{i}" for i in range(1001)]},))


# --- properties over random command sequences --------------------------------------------------

ACTORS = {"dev": frozenset({Role.DEVELOPER}), "admin": frozenset({Role.ADMIN}),
          "platform": frozenset({Role.PLATFORM_REVIEWER}),
          "partner": frozenset({Role.PARTNER_REVIEWER}), "nobody": frozenset()}

commands = st.one_of(
    st.builds(lambda a: make("apply_release", actor=a), st.sampled_from(list(ACTORS))),
    st.builds(lambda a, r: make("approve_review", actor=a, reviewer=r),
              st.sampled_from(list(ACTORS)), st.sampled_from(["platform", "partner_app"])),
    st.builds(lambda a, r: make("reject_review", actor=a, reviewer=r),
              st.sampled_from(list(ACTORS)), st.sampled_from(["platform", "partner_app"])),
    st.builds(lambda a, p: make("set_grayscale", actor=a, percent=p),
              st.sampled_from(list(ACTORS)), st.integers(1, 100)),
    st.builds(lambda a: make("start_whitelist_test", actor=a), st.sampled_from(list(ACTORS))),
    st.builds(lambda a: make("full_release", actor=a), st.sampled_from(list(ACTORS))),
    st.builds(lambda a: make("reset_grayscale", actor=a), st.sampled_from(list(ACTORS))),
    st.builds(lambda a: make("cancel_grayscale", actor=a), st.sampled_from(list(ACTORS))),
    st.builds(lambda a: make("update_config", actor=a), st.sampled_from(list(ACTORS))),
)


@settings(max_examples=300, deadline=None)
@given(policy=st.sampled_from([ALIPAYCN, GOPAY]), first=st.booleans(),
       script=st.lists(commands, max_size=25))
def test_invariants_hold_for_any_command_sequence(
    policy: TargetAppPolicy, first: bool, script: list[Command]
) -> None:
    state = state_at(Stage.READY_TO_APPLY, policy, first_release=first)
    now = NOW
    for command in script:
        now += timedelta(minutes=1)
        decision = decide(state, command, ACTORS[command.actor], now)
        if isinstance(decision, Rejected):
            continue  # a refusal returns no state: the release is untouched by construction
        after = decision.state
        if after.percent < state.percent:
            assert command.__class__.__name__ == "ResetGrayscale" and after.percent == 0
        if after.stage is Stage.RELEASED:
            assert set(after.approvals) == set(policy.required_reviewers)
        if state.full_release_only:
            assert after.stage not in (Stage.WHITELIST_TESTING, Stage.GRAYSCALE)
        if not policy.whitelist_allowed:
            assert after.stage is not Stage.WHITELIST_TESTING
        if state.stage in TERMINAL_STAGES:
            raise AssertionError("a finished release accepted a command")
        state = after
