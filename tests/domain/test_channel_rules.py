"""Every transition and every refusal of the channel rules (rollback, take offline, bring back
online), without Temporal or a database."""

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpr.domain.channel.commands import MAX_REASON_LENGTH, BringOnline, Rollback, TakeOffline
from mpr.domain.channel.models import (
    RECENT_FOR_ROLLBACK,
    ChannelKey,
    ChannelView,
    InFlight,
    LastRollback,
    ReleasedVersion,
    Takedown,
    channel_id,
    parse_channel_id,
)
from mpr.domain.channel.records import RollbackChange
from mpr.domain.channel.rules import CHANNEL, RULES, ChannelEffects, lifters, takedown_kind
from mpr.domain.channel.stages import ChannelState, TakedownKind, VersionStatus
from mpr.domain.channel.state import ChannelWorkflowState
from mpr.domain.core.commands import Command, ParseFailure
from mpr.domain.core.models import Environment, Role
from mpr.domain.core.rules import Accepted, Rejected

NOW = datetime(2026, 11, 21, tzinfo=UTC)
READ_AT = NOW - timedelta(minutes=5)
KEY = ChannelKey(mini_program_id="coffee", target_app="gopay")
LABEL = "coffee/gopay/production"
VERSIONS = ("1.0.0", "1.1.0", "1.2.0")
SEVEN = ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0")
decide = CHANNEL.decide

# The seeds' table, written out here rather than read from RULES, so that the test checks it.
ADMINS = frozenset({Role.ADMIN, Role.PROGRAM_ADMIN})
REVIEWERS = frozenset({Role.PLATFORM_REVIEWER, Role.PARTNER_REVIEWER})
COMMANDS = ("rollback", "take_offline", "bring_online")
MAY_SEND = {"rollback": ADMINS, "take_offline": ADMINS | REVIEWERS,
            "bring_online": ADMINS | REVIEWERS}
NEEDS = {"rollback": "admin or program_admin",
         "take_offline": "admin or partner_reviewer or platform_reviewer or program_admin",
         "bring_online": "admin or partner_reviewer or platform_reviewer or program_admin"}
ALLOWED_IN = {"rollback": ChannelState.ONLINE, "take_offline": ChannelState.ONLINE,
              "bring_online": ChannelState.OFFLINE}
NOTHING_YET = "nothing has been released on this channel yet"
WRONG_STATE = {
    ("rollback", ChannelState.NOT_RELEASED):
        f"rollback is not allowed in state NOT_RELEASED (allowed in: ONLINE); {NOTHING_YET}",
    ("rollback", ChannelState.OFFLINE):
        "rollback is not allowed in state OFFLINE (allowed in: ONLINE); "
        "the channel is offline: bring_online first",
    ("take_offline", ChannelState.NOT_RELEASED):
        f"take_offline is not allowed in state NOT_RELEASED (allowed in: ONLINE); {NOTHING_YET}",
    ("take_offline", ChannelState.OFFLINE):
        "take_offline is not allowed in state OFFLINE (allowed in: ONLINE); "
        "the channel is offline: bring_online first",
    ("bring_online", ChannelState.NOT_RELEASED):
        "bring_online is not allowed in state NOT_RELEASED (allowed in: OFFLINE); "
        f"{NOTHING_YET}",
    ("bring_online", ChannelState.ONLINE):
        "bring_online is not allowed in state ONLINE (allowed in: OFFLINE); "
        "the channel is already online",
}
KIND_OF = {Role.ADMIN: TakedownKind.ADMIN, Role.PROGRAM_ADMIN: TakedownKind.ADMIN,
           Role.PLATFORM_REVIEWER: TakedownKind.PLATFORM,
           Role.PARTNER_REVIEWER: TakedownKind.PARTNER}
LIFTERS = {TakedownKind.ADMIN: ADMINS, TakedownKind.PLATFORM: {Role.PLATFORM_REVIEWER},
           TakedownKind.PARTNER: {Role.PARTNER_REVIEWER}}
LIFTERS_WORDED = {TakedownKind.ADMIN: "admin or program_admin",
                  TakedownKind.PLATFORM: "platform_reviewer",
                  TakedownKind.PARTNER: "partner_reviewer"}
RELEASE_STAGES = ("UNDER_REVIEW", "RELEASE_PREPARATION", "WHITELIST_TESTING", "GRAYSCALE")
ROLLING_OUT = ("WHITELIST_TESTING", "GRAYSCALE")
NOT_ROLLING_OUT = ("UNDER_REVIEW", "RELEASE_PREPARATION")

PAYLOADS: dict[str, dict[str, Any]] = {
    "rollback": {"reason": "crashes on launch"},
    "take_offline": {"reason": "fraud report"},
    "bring_online": {},
}


# --- builders --------------------------------------------------------------------------------

def rid(version: str) -> str:
    return f"release:coffee:{version}:gopay:production"


def sha(version: str) -> str:
    return hashlib.sha256(version.encode()).hexdigest()


def make(name: str, actor: str = "ann", **overrides: Any) -> Command:
    return CHANNEL.parse(name, ({"actor": actor, **PAYLOADS[name], **overrides},))


def released_view(
    versions: tuple[str, ...] = VERSIONS,
    *,
    stable: str | None = None,
    history: list[str] | None = None,
    statuses: dict[str, VersionStatus] | None = None,
    gone: tuple[str, ...] = (),
    in_flight: InFlight | None = None,
    takedown: Takedown | None = None,
) -> ChannelView:
    """A channel on which `versions` were released in order, one a day: the last one (or
    `stable`) is stable and RELEASED, the others ARCHIVED unless `statuses` says otherwise;
    `history` is the stable history as versions, newest first (by default each version became
    stable once, in order); the bundles of `gone` are no longer in the artifact store."""
    stable = stable or versions[-1]
    history = history if history is not None else list(reversed(versions))
    statuses = statuses or {}
    start = NOW - timedelta(days=len(versions))
    released = [
        ReleasedVersion(
            version=version, release_id=rid(version),
            status=statuses.get(version, VersionStatus.RELEASED if version == stable
                                else VersionStatus.ARCHIVED),
            released_at=start + timedelta(days=day), released_by="ann",
            package_sha256=sha(version), bundle_present=version not in gone)
        for day, version in enumerate(versions)
    ]
    return ChannelView(workspace_id="ws", stable_version=stable, stable_release_id=rid(stable),
                       takedown=takedown, in_flight=in_flight, released=released[::-1],
                       stable_history=[rid(v) for v in history], revision=7)


def channel(view: ChannelView) -> ChannelWorkflowState:
    return ChannelWorkflowState(key=KEY, view=view, view_as_of=READ_AT)


def online(versions: tuple[str, ...] = VERSIONS, **changes: Any) -> ChannelWorkflowState:
    return channel(released_view(versions, **changes))


def takedown(kind: TakedownKind = TakedownKind.ADMIN, by: str = "olga",
             reason: str = "fraud report") -> Takedown:
    return Takedown(kind=kind, reason=reason, by=by, at=NOW - timedelta(hours=1))


def offline(kind: TakedownKind = TakedownKind.ADMIN, **changes: Any) -> ChannelWorkflowState:
    return online(takedown=takedown(kind), **changes)


def not_released(in_flight: InFlight | None = None) -> ChannelWorkflowState:
    return channel(ChannelView(workspace_id="ws", in_flight=in_flight))


def flying(stage: str, version: str = "1.3.0") -> InFlight:
    return InFlight(release_id=rid(version), version=version, stage=stage,
                    percent=10 if stage == "GRAYSCALE" else 0)


def at(state: ChannelState) -> ChannelWorkflowState:
    return {ChannelState.NOT_RELEASED: not_released(), ChannelState.ONLINE: online(),
            ChannelState.OFFLINE: offline()}[state]


def accepted(decision: Any) -> Accepted[ChannelWorkflowState, ChannelEffects]:
    assert isinstance(decision, Accepted), getattr(decision, "reason", decision)
    return decision


def refusal(decision: Any) -> str:
    assert isinstance(decision, Rejected), f"expected a refusal, got {decision}"
    return decision.reason


def statuses(state: ChannelWorkflowState) -> dict[str, VersionStatus]:
    return {v.version: v.status for v in state.view.released}


def history(state: ChannelWorkflowState) -> list[str]:
    return [state.view.version(r).version for r in state.view.stable_history]  # type: ignore[union-attr]


def roll_back(state: ChannelWorkflowState, *, roles: frozenset[Role] = frozenset({Role.ADMIN}),
              **overrides: Any) -> Accepted[ChannelWorkflowState, ChannelEffects] | Rejected:
    return decide(state, make("rollback", **overrides), roles, NOW)


# --- the builders say what the tests assume ----------------------------------------------------

def test_the_builders_make_the_channels_the_tests_assume() -> None:
    state = online()
    assert state.state is ChannelState.ONLINE
    assert (state.view.stable_version, state.view.stable_release_id) == ("1.2.0", rid("1.2.0"))
    assert [v.version for v in state.view.released] == ["1.2.0", "1.1.0", "1.0.0"]
    assert statuses(state) == {"1.2.0": VersionStatus.RELEASED,
                               "1.1.0": VersionStatus.ARCHIVED,
                               "1.0.0": VersionStatus.ARCHIVED}
    assert history(state) == ["1.2.0", "1.1.0", "1.0.0"]
    assert all(v.bundle_present for v in state.view.released)
    assert offline().state is ChannelState.OFFLINE
    assert not_released().state is ChannelState.NOT_RELEASED
    assert not_released(flying("UNDER_REVIEW")).state is ChannelState.NOT_RELEASED


# --- who may send what, in which state -----------------------------------------------------------

def test_the_table_is_the_seeds() -> None:
    assert set(RULES) == set(COMMANDS)
    for name in COMMANDS:
        assert RULES[name].roles_for(make(name)) == MAY_SEND[name]
        assert RULES[name].allowed_in == {ALLOWED_IN[name]}
    assert RULES["take_offline"].sees_roles and RULES["bring_online"].sees_roles
    assert not RULES["rollback"].sees_roles
    assert CHANNEL.finished == frozenset(), "a channel never finishes"


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("state", list(ChannelState))
@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_in_every_state_for_every_role(
    name: str, state: ChannelState, role: Role
) -> None:
    decision = decide(at(state), make(name, actor="mallory"), frozenset({role}), NOW)
    if role not in MAY_SEND[name]:
        assert refusal(decision) == (
            f"mallory is not authorised to {name} on channel {LABEL}: "
            f"needs {NEEDS[name]} (has {role.value})")
    elif state is not ALLOWED_IN[name]:
        assert refusal(decision) == WRONG_STATE[(name, state)]
    elif name == "bring_online" and role not in ADMINS:
        # at(OFFLINE) was taken offline by an admin: a reviewer cannot lift it.
        reason = refusal(decision)
        assert reason.startswith("the channel was taken offline by olga (")
        assert reason.endswith("admin takedown: fraud report): only admin or program_admin "
                               "can bring it online")
    else:
        after = accepted(decision).state
        expected = ChannelState.OFFLINE if name == "take_offline" else ChannelState.ONLINE
        assert after.state is expected


@pytest.mark.parametrize("state", list(ChannelState))
@pytest.mark.parametrize("name", COMMANDS)
def test_no_role_means_no_command(name: str, state: ChannelState) -> None:
    assert refusal(decide(at(state), make(name, actor="eve"), frozenset(), NOW)) == (
        f"eve is not authorised to {name} on channel {LABEL}: needs {NEEDS[name]} (has no role)")


@pytest.mark.parametrize("name", COMMANDS)
def test_a_refusal_lists_every_role_held_sorted(name: str) -> None:
    roles = frozenset({Role.SERVICE_ADMIN, Role.DEVELOPER, Role.OWNER})
    assert refusal(decide(at(ALLOWED_IN[name]), make(name, actor="dev"), roles, NOW)) == (
        f"dev is not authorised to {name} on channel {LABEL}: needs {NEEDS[name]} "
        "(has developer, owner, service_admin)")


@pytest.mark.parametrize("name", COMMANDS)
def test_the_refusal_names_the_channel_it_was_sent_to(name: str) -> None:
    key = ChannelKey(mini_program_id="tea-house", target_app="alipaycn",
                     environment=Environment.SANDBOX)
    state = at(ALLOWED_IN[name]).model_copy(update={"key": key})
    reason = refusal(decide(state, make(name, actor="eve"), frozenset({Role.DEVELOPER}), NOW))
    assert f"eve is not authorised to {name} on channel tea-house/alipaycn/sandbox: " in reason


@pytest.mark.parametrize("state", [ChannelState.NOT_RELEASED, ChannelState.OFFLINE])
@pytest.mark.parametrize("name", ["rollback", "take_offline"])
def test_authorisation_is_checked_before_the_state(name: str, state: ChannelState) -> None:
    reason = refusal(decide(at(state), make(name, actor="dev"), frozenset({Role.DEVELOPER}), NOW))
    assert "not authorised" in reason and "not allowed in state" not in reason


def test_a_reviewer_cannot_escalate_an_admin_takedown() -> None:
    """A platform reviewer facing a channel an admin took offline can neither take it down
    again as the platform nor lift the admin's takedown (the hint names bring_online, which
    they may not do on this takedown)."""
    platform = frozenset({Role.PLATFORM_REVIEWER})
    assert refusal(decide(offline(), make("take_offline", actor="rita"), platform, NOW)) == (
        WRONG_STATE[("take_offline", ChannelState.OFFLINE)])
    assert "only admin or program_admin can bring it online" in refusal(
        decide(offline(), make("bring_online", actor="rita"), platform, NOW))


# --- rollback -----------------------------------------------------------------------------------

@pytest.mark.parametrize("role", sorted(ADMINS))
def test_rollback_restores_the_previously_stable_version(role: Role) -> None:
    state = online()
    decision = accepted(roll_back(state, roles=frozenset({role}), actor="ann", reason="crash"))
    after = decision.state
    assert after.state is ChannelState.ONLINE
    assert (after.view.stable_version, after.view.stable_release_id) == ("1.1.0", rid("1.1.0"))
    assert statuses(after) == {"1.2.0": VersionStatus.ROLLED_BACK,
                               "1.1.0": VersionStatus.RELEASED,
                               "1.0.0": VersionStatus.ARCHIVED}
    assert after.view.stable_history == [rid("1.1.0"), rid("1.2.0"), rid("1.1.0"), rid("1.0.0")]
    assert after.last_rollback == LastRollback(from_version="1.2.0", to_version="1.1.0",
                                               by="ann", reason="crash", at=NOW)
    assert decision.effects == ChannelEffects(rollback=RollbackChange(
        from_release_id=rid("1.2.0"), from_version="1.2.0",
        to_release_id=rid("1.1.0"), to_version="1.1.0"))
    assert decision.note is None
    # Nothing else about the channel changes.
    assert (after.key, after.view_as_of) == (state.key, state.view_as_of)
    assert after.view.model_dump(exclude={"stable_version", "stable_release_id", "released",
                                          "stable_history"}) == state.view.model_dump(
        exclude={"stable_version", "stable_release_id", "released", "stable_history"})
    before = {v.release_id: v for v in state.view.released}
    for version in after.view.released:
        assert version.model_dump(exclude={"status"}) == before[version.release_id].model_dump(
            exclude={"status"})


def test_repeated_rollbacks_walk_back_through_the_stable_history() -> None:
    state = online(("1.0.0", "1.1.0", "1.2.0", "1.3.0"))
    walked = []
    for expected_from, expected_to in (("1.3.0", "1.2.0"), ("1.2.0", "1.1.0"),
                                       ("1.1.0", "1.0.0")):
        decision = accepted(roll_back(state))
        assert decision.effects.rollback is not None
        assert (decision.effects.rollback.from_version,
                decision.effects.rollback.to_version) == (expected_from, expected_to)
        assert decision.effects.rollback.from_release_id == rid(expected_from)
        assert decision.effects.rollback.to_release_id == rid(expected_to)
        state = decision.state
        walked.append(state.view.stable_version)
    assert walked == ["1.2.0", "1.1.0", "1.0.0"]
    assert statuses(state) == {"1.3.0": VersionStatus.ROLLED_BACK,
                               "1.2.0": VersionStatus.ROLLED_BACK,
                               "1.1.0": VersionStatus.ROLLED_BACK,
                               "1.0.0": VersionStatus.RELEASED}
    assert history(state) == ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.2.0", "1.1.0", "1.0.0"]
    assert state.last_rollback is not None
    assert (state.last_rollback.from_version, state.last_rollback.to_version) == ("1.1.0",
                                                                                 "1.0.0")


def test_rolling_back_past_the_first_version_asks_for_a_named_one() -> None:
    """Walked back to the first version, every version stable before it (in time) was rolled
    back: the refusal asks for to_version, and naming a rolled-back one restores it."""
    state = online()
    state = accepted(roll_back(state)).state
    state = accepted(roll_back(state)).state
    assert state.view.stable_version == "1.0.0"
    assert refusal(roll_back(state)) == (
        "every version stable before 1.0.0 was rolled back; name one with to_version to "
        "restore it")
    restored = accepted(roll_back(state, to_version="1.2.0")).state
    assert restored.view.stable_version == "1.2.0"
    assert statuses(restored) == {"1.2.0": VersionStatus.RELEASED,
                                  "1.1.0": VersionStatus.ROLLED_BACK,
                                  "1.0.0": VersionStatus.ROLLED_BACK}


def test_a_rollback_skips_rolled_back_versions() -> None:
    state = online(statuses={"1.1.0": VersionStatus.ROLLED_BACK},
                   history=["1.2.0", "1.1.0", "1.0.0"])
    decision = accepted(roll_back(state))
    assert decision.state.view.stable_version == "1.0.0"
    assert statuses(decision.state)["1.1.0"] is VersionStatus.ROLLED_BACK


def test_the_first_version_has_nothing_to_roll_back_to() -> None:
    assert refusal(roll_back(online(("1.0.0",)))) == (
        "version 1.0.0 is the first version released on this channel: there is nothing to "
        "roll back to")


def test_every_earlier_version_rolled_back_asks_for_to_version() -> None:
    state = online(statuses={"1.0.0": VersionStatus.ROLLED_BACK,
                             "1.1.0": VersionStatus.ROLLED_BACK})
    assert refusal(roll_back(state)) == (
        "every version stable before 1.2.0 was rolled back; name one with to_version to "
        "restore it")
    assert accepted(roll_back(state, to_version="1.0.0")).state.view.stable_version == "1.0.0"


def test_the_default_target_follows_the_stable_history_not_the_release_order() -> None:
    """A stable history without 1.1.0 (say it never became stable): the version stable before
    1.2.0 is 1.0.0, although 1.1.0 was released after it."""
    state = online(history=["1.2.0", "1.0.0"])
    assert accepted(roll_back(state)).state.view.stable_version == "1.0.0"


def test_the_default_target_may_be_older_than_the_last_five() -> None:
    rolled = {v: VersionStatus.ROLLED_BACK for v in SEVEN[1:6]}
    state = online(SEVEN, statuses=rolled)
    decision = accepted(roll_back(state))
    assert decision.state.view.stable_version == "1.0.0"


@pytest.mark.parametrize("role", sorted(ADMINS))
def test_to_version_names_one_of_the_last_five(role: Role) -> None:
    state = online(SEVEN)
    decision = accepted(roll_back(state, roles=frozenset({role}), to_version="1.2.0"))
    assert decision.state.view.stable_version == "1.2.0"
    assert decision.state.view.stable_history[0] == rid("1.2.0")
    assert decision.effects.rollback == RollbackChange(
        from_release_id=rid("1.6.0"), from_version="1.6.0",
        to_release_id=rid("1.2.0"), to_version="1.2.0")
    assert statuses(decision.state)["1.6.0"] is VersionStatus.ROLLED_BACK
    assert statuses(decision.state)["1.2.0"] is VersionStatus.RELEASED
    assert [s for v, s in statuses(decision.state).items() if v not in ("1.6.0", "1.2.0")] == [
        VersionStatus.ARCHIVED] * 5


@pytest.mark.parametrize("version", ["1.1.0", "1.0.0"])
def test_to_version_older_than_the_last_five_is_refused(version: str) -> None:
    assert RECENT_FOR_ROLLBACK == 5
    assert refusal(roll_back(online(SEVEN), to_version=version)) == (
        f"version {version} is not among the last 5 versions released on this channel "
        "(1.6.0, 1.5.0, 1.4.0, 1.3.0, 1.2.0)")


@pytest.mark.parametrize(("versions", "listed"), [
    (VERSIONS, "1.2.0, 1.1.0, 1.0.0"),
    (SEVEN, "1.6.0, 1.5.0, 1.4.0, 1.3.0, 1.2.0"),
])
def test_to_version_never_released_here_lists_the_recent_ones(
    versions: tuple[str, ...], listed: str
) -> None:
    assert refusal(roll_back(online(versions), to_version="9.9.9")) == (
        f"version 9.9.9 was never released on this channel (released: {listed})")


def test_to_version_in_flight_is_not_released_here() -> None:
    state = online(in_flight=flying("UNDER_REVIEW", "1.3.0"))
    assert "version 1.3.0 was never released on this channel" in refusal(
        roll_back(state, to_version="1.3.0"))


def test_to_version_naming_the_stable_version_is_refused() -> None:
    assert refusal(roll_back(online(), to_version="1.2.0")) == (
        "version 1.2.0 is already the stable version")


def test_to_version_may_name_a_rolled_back_version() -> None:
    state = accepted(roll_back(online())).state
    assert statuses(state)["1.2.0"] is VersionStatus.ROLLED_BACK
    decision = accepted(roll_back(state, to_version="1.2.0", reason="fixed server side"))
    after = decision.state
    assert (after.view.stable_version, after.view.stable_release_id) == ("1.2.0", rid("1.2.0"))
    assert statuses(after) == {"1.2.0": VersionStatus.RELEASED,
                               "1.1.0": VersionStatus.ROLLED_BACK,
                               "1.0.0": VersionStatus.ARCHIVED}
    assert history(after) == ["1.2.0", "1.1.0", "1.2.0", "1.1.0", "1.0.0"]
    assert after.last_rollback == LastRollback(from_version="1.1.0", to_version="1.2.0",
                                               by="ann", reason="fixed server side", at=NOW)


@pytest.mark.parametrize("to_version", [None, "1.1.0"])
def test_a_target_whose_bundle_is_gone_is_refused(to_version: str | None) -> None:
    overrides: dict[str, Any] = {"to_version": to_version} if to_version else {}
    assert refusal(roll_back(online(gone=("1.1.0",)), **overrides)) == (
        f"the bundle of version 1.1.0 (package {sha('1.1.0')}) is no longer in the artifact "
        "store; it cannot be served again")


def test_a_gone_bundle_elsewhere_does_not_matter() -> None:
    state = online(gone=("1.0.0", "1.2.0"))
    assert accepted(roll_back(state)).state.view.stable_version == "1.1.0"


@pytest.mark.parametrize("to_version", [None, "1.0.0"])
@pytest.mark.parametrize("stage", ROLLING_OUT)
def test_a_release_rolling_out_blocks_a_rollback(stage: str, to_version: str | None) -> None:
    overrides: dict[str, Any] = {"to_version": to_version} if to_version else {}
    state = online(in_flight=flying(stage, "1.3.0"))
    assert refusal(roll_back(state, **overrides)) == (
        f"release {rid('1.3.0')} (version 1.3.0) is in {stage} on this channel: cancel its "
        "grayscale first (cancel_grayscale, or cancel_release)")


@pytest.mark.parametrize("stage", NOT_ROLLING_OUT)
def test_a_release_in_review_or_preparation_does_not_block_a_rollback(stage: str) -> None:
    state = online(in_flight=flying(stage, "1.3.0"))
    after = accepted(roll_back(state)).state
    assert after.view.stable_version == "1.1.0"
    assert after.view.in_flight == flying(stage, "1.3.0"), "the rollback leaves it alone"


def test_rollback_is_refused_to_reviewers_even_where_it_would_apply() -> None:
    for role in REVIEWERS:
        reason = refusal(roll_back(online(), roles=frozenset({role})))
        assert "needs admin or program_admin" in reason


# --- take_offline --------------------------------------------------------------------------------

@pytest.mark.parametrize(("roles", "kind"), [
    ({Role.ADMIN}, TakedownKind.ADMIN),
    ({Role.PROGRAM_ADMIN}, TakedownKind.ADMIN),
    ({Role.ADMIN, Role.PROGRAM_ADMIN}, TakedownKind.ADMIN),
    ({Role.ADMIN, Role.DEVELOPER, Role.OWNER}, TakedownKind.ADMIN),
    ({Role.PLATFORM_REVIEWER}, TakedownKind.PLATFORM),
    ({Role.PARTNER_REVIEWER}, TakedownKind.PARTNER),
    ({Role.ADMIN, Role.PLATFORM_REVIEWER}, TakedownKind.PLATFORM),
    ({Role.PROGRAM_ADMIN, Role.PLATFORM_REVIEWER}, TakedownKind.PLATFORM),
    ({Role.ADMIN, Role.PARTNER_REVIEWER}, TakedownKind.PARTNER),
    ({Role.PROGRAM_ADMIN, Role.PARTNER_REVIEWER}, TakedownKind.PARTNER),
    ({Role.DEVELOPER, Role.PARTNER_REVIEWER}, TakedownKind.PARTNER),
])
def test_the_takedown_kind_follows_the_senders_roles(
    roles: set[Role], kind: TakedownKind
) -> None:
    state = online()
    decision = accepted(decide(state, make("take_offline", actor="tom", reason="leak"),
                               frozenset(roles), NOW))
    expected = Takedown(kind=kind, reason="leak", by="tom", at=NOW)
    after = decision.state
    assert after.state is ChannelState.OFFLINE
    assert after.view.takedown == expected
    assert after.view.takedown is not None and after.view.takedown.kind is kind
    assert (after.view.stable_version, after.view.stable_release_id) == ("1.2.0", rid("1.2.0"))
    assert after.view.model_dump(exclude={"takedown"}) == state.view.model_dump(
        exclude={"takedown"})
    assert after.last_rollback is None and after.view_as_of == READ_AT
    assert decision.effects == ChannelEffects(takedown=expected)
    assert takedown_kind(frozenset(roles)) is kind


def test_a_sender_holding_both_reviewer_roles_takes_down_as_the_platform() -> None:
    """The table's order decides (platform first); the docs do not say."""
    roles = frozenset({Role.PLATFORM_REVIEWER, Role.PARTNER_REVIEWER})
    assert takedown_kind(roles) is TakedownKind.PLATFORM


@pytest.mark.parametrize("stage", RELEASE_STAGES)
def test_take_offline_withdraws_only_a_release_rolling_out(stage: str) -> None:
    in_flight = flying(stage, "1.3.0")
    decision = accepted(decide(online(in_flight=in_flight), make("take_offline"),
                               frozenset({Role.ADMIN}), NOW))
    assert decision.effects.withdraw == (in_flight if stage in ROLLING_OUT else None)
    assert decision.effects.takedown == decision.state.view.takedown
    assert decision.effects.rollback is None and not decision.effects.online


def test_take_offline_with_nothing_in_flight_withdraws_nothing() -> None:
    decision = accepted(decide(online(), make("take_offline"), frozenset({Role.ADMIN}), NOW))
    assert decision.effects.withdraw is None


def test_a_rolled_back_channel_can_be_taken_offline_and_keeps_its_rollback() -> None:
    state = accepted(roll_back(online())).state
    after = accepted(decide(state, make("take_offline"), frozenset({Role.ADMIN}), NOW)).state
    assert after.view.stable_version == "1.1.0"
    assert after.last_rollback == state.last_rollback


# --- bring_online --------------------------------------------------------------------------------

@pytest.mark.parametrize("role", sorted(ADMINS | REVIEWERS))
@pytest.mark.parametrize("kind", list(TakedownKind))
def test_only_the_takedowns_own_kind_lifts_it(kind: TakedownKind, role: Role) -> None:
    state = offline(kind)
    decision = decide(state, make("bring_online", actor="bob"), frozenset({role}), NOW)
    if role in LIFTERS[kind]:
        after = accepted(decision).state
        assert after.state is ChannelState.ONLINE
        assert after.view.takedown is None
        assert (after.view.stable_version, after.view.stable_release_id) == (
            "1.2.0", rid("1.2.0"))
        assert after.view.model_dump(exclude={"takedown"}) == state.view.model_dump(
            exclude={"takedown"})
        assert accepted(decision).effects == ChannelEffects(online=True)
    else:
        reason = refusal(decision)
        assert reason.startswith("the channel was taken offline by olga (")
        assert reason.endswith(f"{kind.value} takedown: fraud report): only "
                               f"{LIFTERS_WORDED[kind]} can bring it online")
    assert lifters(kind) == LIFTERS[kind]


def test_an_admin_is_told_who_may_lift_a_platform_takedown() -> None:
    reason = refusal(decide(offline(TakedownKind.PLATFORM), make("bring_online", actor="ann"),
                            frozenset({Role.ADMIN}), NOW))
    assert reason == ("the channel was taken offline by olga (platform takedown: "
                      "fraud report): only platform_reviewer can bring it online")


def test_a_partner_takedown_is_lifted_only_by_a_partner_reviewer() -> None:
    state = offline(TakedownKind.PARTNER)
    for roles in (ADMINS, frozenset({Role.PLATFORM_REVIEWER}), ADMINS | {Role.PLATFORM_REVIEWER}):
        assert "only partner_reviewer can bring it online" in refusal(
            decide(state, make("bring_online"), roles, NOW))
    accepted(decide(state, make("bring_online"), frozenset({Role.PARTNER_REVIEWER}), NOW))


def test_an_admin_takedown_refusal_reads_an_admin_takedown() -> None:
    reason = refusal(decide(offline(TakedownKind.ADMIN), make("bring_online"),
                            frozenset({Role.PLATFORM_REVIEWER}), NOW))
    assert "taken offline by olga (admin takedown: fraud report)" in reason


def test_an_admin_who_is_also_a_reviewer_takes_down_as_the_reviewer() -> None:
    """Then no plain admin can lift it: only a reviewer of the same kind."""
    both = frozenset({Role.ADMIN, Role.PLATFORM_REVIEWER})
    down = accepted(decide(online(), make("take_offline", actor="rita"), both, NOW)).state
    assert down.view.takedown is not None
    assert down.view.takedown.kind is TakedownKind.PLATFORM
    assert "only platform_reviewer can bring it online" in refusal(
        decide(down, make("bring_online", actor="ann"), frozenset({Role.ADMIN}), NOW))
    assert accepted(decide(down, make("bring_online", actor="rita"), both, NOW)).state.state is (
        ChannelState.ONLINE)
    assert accepted(decide(down, make("bring_online", actor="pia"),
                           frozenset({Role.PLATFORM_REVIEWER}), NOW)).state.state is (
        ChannelState.ONLINE)


@pytest.mark.parametrize("extra", [{}, {"reason": "false alarm"}])
def test_bring_online_reason_is_optional(extra: dict[str, Any]) -> None:
    decision = accepted(decide(offline(), make("bring_online", **extra), frozenset({Role.ADMIN}),
                               NOW))
    assert decision.state.state is ChannelState.ONLINE
    assert decision.effects == ChannelEffects(online=True)


def test_take_offline_then_bring_online_round_trip() -> None:
    state = online(in_flight=flying("UNDER_REVIEW"))
    down = accepted(decide(state, make("take_offline"), frozenset({Role.PARTNER_REVIEWER}),
                           NOW)).state
    up = accepted(decide(down, make("bring_online"), frozenset({Role.PARTNER_REVIEWER}),
                         NOW)).state
    assert up.model_dump() == state.model_dump()


# --- decide never changes the state it is given --------------------------------------------------

UNCHANGED_CASES = [
    pytest.param(online, "rollback", {}, ADMINS, id="rollback-default"),
    pytest.param(lambda: online(SEVEN), "rollback", {"to_version": "1.2.0"}, ADMINS,
                 id="rollback-named"),
    pytest.param(lambda: online(in_flight=flying("RELEASE_PREPARATION")), "rollback", {},
                 frozenset({Role.PROGRAM_ADMIN}), id="rollback-with-preparation"),
    pytest.param(lambda: accepted(roll_back(online())).state, "rollback",
                 {"to_version": "1.2.0"}, ADMINS, id="rollback-to-rolled-back"),
    pytest.param(online, "take_offline", {}, frozenset({Role.ADMIN}), id="take-offline-admin"),
    pytest.param(lambda: online(in_flight=flying("GRAYSCALE")), "take_offline", {},
                 frozenset({Role.PLATFORM_REVIEWER}), id="take-offline-withdraw"),
    pytest.param(online, "take_offline", {}, frozenset({Role.PARTNER_REVIEWER}),
                 id="take-offline-partner"),
    pytest.param(offline, "bring_online", {}, frozenset({Role.PROGRAM_ADMIN}),
                 id="bring-online-admin"),
    pytest.param(lambda: offline(TakedownKind.PLATFORM), "bring_online", {"reason": "ok"},
                 frozenset({Role.PLATFORM_REVIEWER}), id="bring-online-platform"),
    pytest.param(lambda: offline(TakedownKind.PARTNER), "bring_online", {},
                 frozenset({Role.PARTNER_REVIEWER}), id="bring-online-partner"),
]


@pytest.mark.parametrize(("build", "name", "extra", "roles"), UNCHANGED_CASES)
def test_decide_never_changes_the_state_it_is_given(
    build: Any, name: str, extra: dict[str, Any], roles: frozenset[Role]
) -> None:
    state = build()
    before = state.model_dump()
    decision = accepted(decide(state, make(name, **extra), roles, NOW))
    assert state.model_dump() == before
    assert decision.state.model_dump() != before
    assert decision.state is not state and decision.state.view is not state.view


def test_a_refusal_changes_nothing_either() -> None:
    state = online(in_flight=flying("GRAYSCALE"))
    before = state.model_dump()
    refusal(roll_back(state))
    refusal(decide(state, make("bring_online"), frozenset({Role.ADMIN}), NOW))
    assert state.model_dump() == before


# --- commands are strict ---------------------------------------------------------------------

@pytest.mark.parametrize("name", COMMANDS)
def test_unknown_fields_are_refused(name: str) -> None:
    with pytest.raises(ParseFailure) as failure:
        CHANNEL.parse(name, ({"actor": "ann", **PAYLOADS[name], "force": True},))
    assert failure.value.reason == f"invalid {name} payload: force: unknown field"
    assert failure.value.actor == "ann", "kept for the audit"


@pytest.mark.parametrize("name", ["rollback", "take_offline"])
def test_reason_is_required(name: str) -> None:
    with pytest.raises(ParseFailure) as failure:
        CHANNEL.parse(name, ({"actor": "ann"},))
    assert failure.value.reason == f"invalid {name} payload: reason: required field missing"


@pytest.mark.parametrize("name", COMMANDS)
def test_reason_is_bounded(name: str) -> None:
    assert MAX_REASON_LENGTH == 500
    command = CHANNEL.parse(name, ({"actor": "ann", "reason": "x" * 500},))
    assert command.model_dump()["reason"] == "x" * 500
    for too_long_or_empty, problem in (("x" * 501, "at most 500 characters"),
                                       ("", "at least 1 character")):
        with pytest.raises(ParseFailure, match=f"reason: String should have {problem}"):
            CHANNEL.parse(name, ({"actor": "ann", "reason": too_long_or_empty},))


@pytest.mark.parametrize("reason", [None, 7, ["x"]])
@pytest.mark.parametrize("name", ["rollback", "take_offline"])
def test_reason_must_be_a_string(name: str, reason: Any) -> None:
    with pytest.raises(ParseFailure, match="reason: Input should be a valid string"):
        CHANNEL.parse(name, ({"actor": "ann", "reason": reason},))


def test_bring_online_reason_is_optional_when_parsed() -> None:
    assert CHANNEL.parse("bring_online", ({"actor": "ann"},)) == BringOnline(actor="ann")
    assert CHANNEL.parse("bring_online", ({"actor": "ann", "reason": None},)) == BringOnline(
        actor="ann")


def test_payload_models() -> None:
    assert CHANNEL.commands == {"rollback": Rollback, "take_offline": TakeOffline,
                                "bring_online": BringOnline}
    assert make("rollback") == Rollback(actor="ann", reason="crashes on launch")
    assert make("take_offline") == TakeOffline(actor="ann", reason="fraud report")
    for name in COMMANDS:
        assert CHANNEL.name_of(make(name)) == name


@pytest.mark.parametrize(("to_version", "problem"), [
    ("", "to_version: String should have at least 1 character"),
    ("1" * 65, "to_version: String should have at most 64 characters"),
    (1, "to_version: Input should be a valid string"),
])
def test_to_version_is_bounded(to_version: Any, problem: str) -> None:
    with pytest.raises(ParseFailure, match=problem):
        CHANNEL.parse("rollback", ({"actor": "a", "reason": "r", "to_version": to_version},))
    assert CHANNEL.parse("rollback", ({"actor": "a", "reason": "r", "to_version": "1" * 64},))


@pytest.mark.parametrize(("args", "expected"), [
    ((), "rollback takes exactly one JSON object as payload, got 0 payloads"),
    (({"reason": "a"}, {"reason": "b"}), "got 2 payloads"),
    (("roll back",), "rollback payload must be a JSON object, got a string"),
    ((None,), "got null"),
    (({"actor": "", "reason": "r"},), "actor: String should have at least 1 character"),
    (({"actor": "a" * 129, "reason": "r"},), "actor: String should have at most 128 characters"),
])
def test_malformed_payloads_are_described(args: tuple[Any, ...], expected: str) -> None:
    with pytest.raises(ParseFailure) as failure:
        CHANNEL.parse("rollback", args)
    assert expected in failure.value.reason


def test_unknown_command_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ParseFailure) as failure:
        CHANNEL.parse("roll_back", ({"actor": "a", "reason": "r"},))
    assert failure.value.reason == (
        "unknown command 'roll_back'; known commands: rollback, take_offline, bring_online")


def test_commands_are_frozen() -> None:
    command = make("rollback")
    with pytest.raises(ValueError):
        command.actor = "mallory"  # type: ignore[misc]


# --- models ----------------------------------------------------------------------------------

@pytest.mark.parametrize("environment", list(Environment))
def test_channel_id_round_trip(environment: Environment) -> None:
    value = channel_id("coffee", "gopay", environment.value)
    assert value == f"channel:coffee:gopay:{environment.value}"
    key = parse_channel_id(value)
    assert key == ChannelKey(mini_program_id="coffee", target_app="gopay",
                             environment=environment)
    assert key.workflow_id == value
    assert key.label == f"coffee/gopay/{environment.value}"


def test_the_default_environment_is_production() -> None:
    assert KEY.workflow_id == "channel:coffee:gopay:production"
    assert parse_channel_id(KEY.workflow_id) == KEY


@pytest.mark.parametrize("value", [
    "",
    "channel",
    "channel:coffee:gopay",
    "channel:coffee:gopay:production:extra",
    "release:coffee:gopay:production",
    "Channel:coffee:gopay:production",
    "channel:coffee:gopay:moon",
    "channel:coffee:gopay:PRODUCTION",
    "channel::gopay:production",
    "channel:coffee::production",
    "channel:cof fee:gopay:production",
    "channel:-coffee:gopay:production",
    f"channel:{'c' * 65}:gopay:production",
])
def test_a_bad_channel_id_raises_value_error(value: str) -> None:
    with pytest.raises(ValueError):
        parse_channel_id(value)


def test_channel_id_refuses_an_unknown_environment() -> None:
    with pytest.raises(ValueError):
        channel_id("coffee", "gopay", "moon")


def test_channel_view_state_and_lookup() -> None:
    view = released_view()
    assert view.state is ChannelState.ONLINE
    assert view.version(rid("1.1.0")) is not None
    assert view.version(rid("1.1.0")).version == "1.1.0"  # type: ignore[union-attr]
    assert view.version(rid("9.9.9")) is None
    assert released_view(takedown=takedown()).state is ChannelState.OFFLINE
    assert ChannelView(workspace_id="ws").state is ChannelState.NOT_RELEASED
    assert ChannelView(workspace_id="ws", takedown=takedown()).state is (
        ChannelState.NOT_RELEASED), "no stable version: nothing to take offline"


@pytest.mark.parametrize("stage", RELEASE_STAGES)
def test_in_flight_rolling_out(stage: str) -> None:
    assert flying(stage).rolling_out is (stage in ROLLING_OUT)


# --- properties over random command sequences ----------------------------------------------------

ACTORS = {"ann": frozenset({Role.ADMIN}), "pam": frozenset({Role.PROGRAM_ADMIN}),
          "rita": frozenset({Role.PLATFORM_REVIEWER}),
          "pat": frozenset({Role.PARTNER_REVIEWER}),
          "both": frozenset({Role.ADMIN, Role.PARTNER_REVIEWER}),
          "dev": frozenset({Role.DEVELOPER}), "nobody": frozenset()}

channel_commands = st.one_of(
    st.builds(lambda a: make("rollback", actor=a), st.sampled_from(list(ACTORS))),
    st.builds(lambda a, v: make("rollback", actor=a, to_version=v),
              st.sampled_from(list(ACTORS)), st.sampled_from([*SEVEN, "9.9.9"])),
    st.builds(lambda a: make("take_offline", actor=a), st.sampled_from(list(ACTORS))),
    st.builds(lambda a: make("bring_online", actor=a), st.sampled_from(list(ACTORS))),
)


@settings(max_examples=200, deadline=None)
@given(gone=st.sets(st.sampled_from(SEVEN[:-1])), script=st.lists(channel_commands, max_size=25))
def test_invariants_hold_for_any_command_sequence(gone: set[str], script: list[Command]) -> None:
    state = online(SEVEN, gone=tuple(gone))
    now = NOW
    for command in script:
        now += timedelta(minutes=1)
        roles = ACTORS[command.by]
        before = state.model_dump()
        decision = decide(state, command, roles, now)
        assert state.model_dump() == before
        if isinstance(decision, Rejected):
            continue
        after = decision.state
        view = after.view
        stable = view.version(view.stable_release_id or "")
        assert stable is not None and stable.version == view.stable_version
        assert stable.bundle_present or stable.release_id == rid("1.6.0")
        assert [v.version for v in view.released
                if v.status is VersionStatus.RELEASED] == [view.stable_version]
        assert view.stable_history[0] == view.stable_release_id
        assert (after.state is ChannelState.OFFLINE) == (view.takedown is not None)
        assert after.state is not ChannelState.NOT_RELEASED
        assert roles & MAY_SEND[CHANNEL.name_of(command)]
        if isinstance(command, Rollback):
            assert state.state is ChannelState.ONLINE and after.state is ChannelState.ONLINE
            assert decision.effects.rollback is not None
            assert decision.effects.rollback.to_version == view.stable_version
            assert after.last_rollback is not None and after.last_rollback.at == now
        if isinstance(command, BringOnline):
            assert state.view.takedown is not None
            assert roles & LIFTERS[state.view.takedown.kind]
        state = after
