"""The channel rules: roll back, take offline, bring back online (after go-live).

    NOT_RELEASED --(a release reaches RELEASED)--> ONLINE --take_offline--> OFFLINE
                                                    |  ^                      |
                                            rollback+  +------bring_online----+
                                                    (or, after an admin's takedown,
                                                     a new release reaching RELEASED)

A rollback makes the version that was stable before the current one stable again, with no new
review, and marks the current one ROLLED_BACK; repeated rollbacks walk further back through
the stable history, skipping ROLLED_BACK versions. `to_version` names a target among the last
five versions released on the channel instead (a ROLLED_BACK one too). A takedown is an
admin's, a platform reviewer's or a partner reviewer's, by the role it is sent in (a sender
holding a reviewer role takes down as that reviewer); a reviewer's takedown is lifted only by
a reviewer of the same kind. `RULES` is the whole table; `CHANNEL.decide` never changes the
state it is given.
"""

from dataclasses import dataclass
from datetime import datetime

from mpr.domain.channel.commands import BringOnline, Rollback, TakeOffline
from mpr.domain.channel.models import (
    RECENT_FOR_ROLLBACK,
    ChannelView,
    InFlight,
    LastRollback,
    ReleasedVersion,
    Takedown,
)
from mpr.domain.channel.records import RollbackChange
from mpr.domain.channel.stages import ChannelState, TakedownKind, VersionStatus
from mpr.domain.channel.state import ChannelWorkflowState
from mpr.domain.core.models import Role
from mpr.domain.core.rules import Accepted, Lifecycle, Rejected, Rule


@dataclass(frozen=True)
class ChannelEffects:
    rollback: RollbackChange | None = None
    takedown: Takedown | None = None
    online: bool = False
    """The takedown is lifted."""
    withdraw: InFlight | None = None
    """A release rolling out on the channel, cancelled by the takedown."""


Decision = Accepted[ChannelWorkflowState, ChannelEffects] | Rejected

# Seed 001: the workspace admin and the mini program's admin take a version live.
ADMINS = frozenset({Role.ADMIN, Role.PROGRAM_ADMIN})
TAKEDOWN_KINDS = {Role.PLATFORM_REVIEWER: TakedownKind.PLATFORM,
                  Role.PARTNER_REVIEWER: TakedownKind.PARTNER}
REVIEWERS = frozenset(TAKEDOWN_KINDS)
ONLINE = frozenset({ChannelState.ONLINE})
OFFLINE = frozenset({ChannelState.OFFLINE})
HINTS = {
    ChannelState.NOT_RELEASED: "nothing has been released on this channel yet",
    ChannelState.OFFLINE: "the channel is offline: bring_online first",
}


def _rollback(state: ChannelWorkflowState, command: Rollback, now: datetime) -> Decision:
    view = state.view
    in_flight = view.in_flight
    if in_flight is not None and in_flight.rolling_out:
        return Rejected(
            f"release {in_flight.release_id} (version {in_flight.version}) is in "
            f"{in_flight.stage} on this channel: cancel its grayscale first "
            "(cancel_grayscale, or cancel_release)")
    current = _stable(view)
    target = (_named_target(view, current, command.to_version) if command.to_version
              else _previous_stable(view, current))
    if isinstance(target, Rejected):
        return target
    if not target.bundle_present:
        package = f" (package {target.package_sha256})" if target.package_sha256 else ""
        return Rejected(f"the bundle of version {target.version}{package} is no longer in the "
                        "artifact store; it cannot be served again")
    change = RollbackChange(from_release_id=current.release_id, from_version=current.version,
                            to_release_id=target.release_id, to_version=target.version)
    restored = view.model_copy(update={
        "stable_version": target.version, "stable_release_id": target.release_id,
        "released": [_with_status(v, change) for v in view.released],
        "stable_history": [target.release_id, *view.stable_history],
    })
    last = LastRollback(from_version=current.version, to_version=target.version,
                        by=command.by, reason=command.reason, at=now)
    return Accepted(state.model_copy(update={"view": restored, "last_rollback": last}),
                    ChannelEffects(rollback=change))


def _stable(view: ChannelView) -> ReleasedVersion:
    assert view.stable_release_id is not None, "an ONLINE channel has a stable version"
    found = view.version(view.stable_release_id)
    assert found is not None, "a view holds its stable version"
    return found


def _named_target(
    view: ChannelView, current: ReleasedVersion, version: str
) -> ReleasedVersion | Rejected:
    recent = view.released[:RECENT_FOR_ROLLBACK]
    named = next((v for v in view.released if v.version == version), None)
    if named is None:
        return Rejected(f"version {version} was never released on this channel "
                        f"(released: {_listed(recent)})")
    if named.release_id == current.release_id:
        return Rejected(f"version {version} is already the stable version")
    if named not in recent:
        return Rejected(f"version {version} is not among the last {RECENT_FOR_ROLLBACK} "
                        f"versions released on this channel ({_listed(recent)})")
    return named


def _previous_stable(view: ChannelView, current: ReleasedVersion) -> ReleasedVersion | Rejected:
    earlier = [v for v in (view.version(r) for r in view.stable_history)
               if v is not None and v.release_id != current.release_id]
    if not earlier:
        return Rejected(f"version {current.version} is the first version released on this "
                        "channel: there is nothing to roll back to")
    target = next((v for v in earlier if v.status is not VersionStatus.ROLLED_BACK), None)
    if target is None:
        return Rejected(f"every version stable before {current.version} was rolled back; "
                        "name one with to_version to restore it")
    return target


def _listed(versions: list[ReleasedVersion]) -> str:
    return ", ".join(v.version for v in versions) or "none"


def _with_status(version: ReleasedVersion, change: RollbackChange) -> ReleasedVersion:
    if version.release_id == change.from_release_id:
        return version.model_copy(update={"status": VersionStatus.ROLLED_BACK})
    if version.release_id == change.to_release_id:
        return version.model_copy(update={"status": VersionStatus.RELEASED})
    return version


def takedown_kind(roles: frozenset[Role]) -> TakedownKind:
    """As which kind of actor a takedown is sent: a reviewer role wins over an admin's, so that
    a reviewer who is also an admin cannot have their takedown lifted by any admin; the
    platform's over a partner app's, the platform reviewing for every target app."""
    for role, kind in TAKEDOWN_KINDS.items():
        if role in roles:
            return kind
    return TakedownKind.ADMIN


def lifters(kind: TakedownKind) -> frozenset[Role]:
    """Who may bring a channel back online after a takedown of this kind."""
    if kind is TakedownKind.ADMIN:
        return ADMINS
    return frozenset(role for role, held in TAKEDOWN_KINDS.items() if held is kind)


def _take_offline(
    state: ChannelWorkflowState, command: TakeOffline, now: datetime, roles: frozenset[Role]
) -> Decision:
    view = state.view
    takedown = Takedown(kind=takedown_kind(roles), reason=command.reason, by=command.by, at=now)
    in_flight = view.in_flight
    withdraw = in_flight if in_flight is not None and in_flight.rolling_out else None
    offline = view.model_copy(update={"takedown": takedown})
    return Accepted(state.model_copy(update={"view": offline}),
                    ChannelEffects(takedown=takedown, withdraw=withdraw))


def _bring_online(
    state: ChannelWorkflowState, command: BringOnline, now: datetime, roles: frozenset[Role]
) -> Decision:
    takedown = state.view.takedown
    assert takedown is not None, "an OFFLINE channel holds a takedown"
    needed = lifters(takedown.kind)
    if not roles & needed:
        return Rejected(
            f"the channel was taken offline by {takedown.by} ({takedown.kind} takedown: "
            f"{takedown.reason}): only {' or '.join(sorted(needed))} can bring it online")
    online = state.view.model_copy(update={"takedown": None})
    return Accepted(state.model_copy(update={"view": online}), ChannelEffects(online=True))


RULES: dict[str, Rule[ChannelWorkflowState, ChannelEffects, ChannelState]] = {
    "rollback": Rule(Rollback, ONLINE, ADMINS, _rollback, hints=HINTS),
    "take_offline": Rule(TakeOffline, ONLINE, ADMINS | REVIEWERS, _take_offline, hints=HINTS,
                         sees_roles=True),
    "bring_online": Rule(BringOnline, OFFLINE, ADMINS | REVIEWERS, _bring_online,
                         hints={ChannelState.ONLINE: "the channel is already online",
                                ChannelState.NOT_RELEASED: HINTS[ChannelState.NOT_RELEASED]},
                         sees_roles=True),
}

CHANNEL: Lifecycle[ChannelWorkflowState, ChannelEffects, ChannelState] = Lifecycle(
    rules=RULES,
    stages=ChannelState,
    # A channel never finishes: it continues as new for as long as the program is served.
    finished=frozenset(),
    stage_of=lambda state: state.state,
    subject=lambda state: f"channel {state.key.label}",
    scope=lambda state: f" on channel {state.key.label}",
    stage_word="state",
    starts="a channel",
)
