"""The release rules: given a state and a command, accept (with the next state) or refuse.

Pure functions only. The workflow asks `decide`, then carries out the decision's effects
(catalog writes, builds, tests); nothing here touches the outside world.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mpr.domain.core.commands import Command
from mpr.domain.core.models import Role
from mpr.domain.release.commands import (
    ApplyRelease,
    ApproveReview,
    CancelGrayscale,
    CancelRelease,
    FullRelease,
    Rebuild,
    RejectReview,
    ResetGrayscale,
    RetestCompatibility,
    SetGrayscale,
    StartWhitelistTest,
    UpdateConfig,
    command_name,
)
from mpr.domain.release.models import (
    Approval,
    BasicInfo,
    BasicInfoPatch,
    CompatibilityReport,
    ConfigPatch,
    Environment,
    PackageFacts,
    ReleaseConfig,
    ReleaseContext,
    ReviewOutcome,
    StartInput,
)
from mpr.domain.release.permissions import authorisation_failure
from mpr.domain.release.stages import (
    BASIC_INFO_ONLY_STAGES,
    CHANNEL_HOLDING_STAGES,
    TERMINAL_STAGES,
    Stage,
)
from mpr.domain.release.state import ReleaseState, ReviewRejection, Work


@dataclass(frozen=True)
class Effects:
    """What the workflow must do in the outside world to carry out an accepted decision."""

    open_review_round: bool = False
    review: ReviewOutcome | None = None
    write_rollout: bool = False
    promote: bool = False
    cancel_work: bool = False


@dataclass(frozen=True)
class Accepted:
    state: ReleaseState
    effects: Effects = field(default_factory=Effects)
    note: str | None = None
    """Something the operator should know although the command was accepted."""


@dataclass(frozen=True)
class Rejected:
    reason: str


Decision = Accepted | Rejected

BEFORE_REVIEW = frozenset({Stage.BUILD_FAILED, Stage.READY_TO_APPLY, Stage.REJECTED})
GO_LIVE_STAGES = frozenset({Stage.RELEASE_PREPARATION, Stage.WHITELIST_TESTING, Stage.GRAYSCALE})

ALLOWED_STAGES: dict[type[Command], frozenset[Stage]] = {
    UpdateConfig: BEFORE_REVIEW | BASIC_INFO_ONLY_STAGES,
    Rebuild: BEFORE_REVIEW,
    RetestCompatibility: frozenset({Stage.READY_TO_APPLY, Stage.REJECTED}),
    ApplyRelease: frozenset({Stage.READY_TO_APPLY, Stage.REJECTED}),
    ApproveReview: frozenset({Stage.UNDER_REVIEW}),
    RejectReview: frozenset({Stage.UNDER_REVIEW}),
    StartWhitelistTest: frozenset({Stage.RELEASE_PREPARATION, Stage.WHITELIST_TESTING}),
    SetGrayscale: GO_LIVE_STAGES,
    FullRelease: GO_LIVE_STAGES,
    CancelGrayscale: frozenset({Stage.GRAYSCALE}),
    ResetGrayscale: frozenset({Stage.GRAYSCALE}),
    CancelRelease: frozenset(Stage) - TERMINAL_STAGES,
}


def start_release(
    release_id: str, request: StartInput, context: ReleaseContext, now: datetime
) -> ReleaseState:
    return ReleaseState(
        release_id=release_id,
        request=request,
        policy=context.policy,
        first_release=context.first_release,
        previous_stable_version=context.previous_stable_version,
        stage=Stage.BUILDING,
        pending_work=Work.BUILD,
        source=request.source,
        config=request.config,
        created_at=now,
        updated_at=now,
        stage_changed_at=now,
    )


def decide(
    state: ReleaseState, command: Command, roles: frozenset[Role], now: datetime
) -> Decision:
    name = command_name(command)
    if state.stage in TERMINAL_STAGES:
        return Rejected(f"the release is {state.stage} and accepts no more commands")
    refusal = authorisation_failure(command, roles)
    if refusal:
        return Rejected(refusal)
    allowed = ALLOWED_STAGES[type(command)]
    if state.stage not in allowed:
        listed = ", ".join(stage for stage in Stage if stage in allowed)
        return Rejected(f"{name} is not allowed in stage {state.stage} (allowed in: {listed})")
    match command:
        case UpdateConfig():
            return _update_config(state, command, now)
        case Rebuild():
            source = command.source or state.source
            return Accepted(
                _moved(state, Stage.BUILDING, now, pending_work=Work.BUILD, source=source,
                       package=None, compatibility=None, build_error=None)
            )
        case RetestCompatibility():
            return Accepted(
                _moved(state, Stage.COMPATIBILITY_TESTING, now,
                       pending_work=Work.COMPATIBILITY, compatibility=None)
            )
        case ApplyRelease():
            return _apply_release(state, command, now)
        case ApproveReview():
            return _approve(state, command, now)
        case RejectReview():
            return _reject(state, command, now)
        case StartWhitelistTest():
            return _start_whitelist_test(state, command, now)
        case SetGrayscale():
            return _set_grayscale(state, command, now)
        case FullRelease():
            return _release(state, now)
        case CancelGrayscale():
            return Accepted(
                _moved(state, Stage.CANCELED, now,
                       cancel_reason=command.reason or "grayscale canceled"),
                Effects(write_rollout=True),
            )
        case ResetGrayscale():
            return Accepted(
                _moved(state, Stage.RELEASE_PREPARATION, now, percent=0, whitelist=[]),
                Effects(write_rollout=True),
            )
        case CancelRelease():
            return Accepted(
                _moved(state, Stage.CANCELED, now, pending_work=None,
                       cancel_reason=command.reason or "release canceled"),
                Effects(
                    write_rollout=state.stage in CHANNEL_HOLDING_STAGES,
                    cancel_work=state.pending_work is not None,
                ),
            )
    raise AssertionError(f"no rule for {name}")  # pragma: no cover - every command has a case


def build_succeeded(state: ReleaseState, package: PackageFacts, now: datetime) -> ReleaseState:
    return _moved(state, Stage.COMPATIBILITY_TESTING, now, pending_work=Work.COMPATIBILITY,
                  package=package, build_error=None)


def build_failed(state: ReleaseState, error: str, now: datetime) -> ReleaseState:
    return _moved(state, Stage.BUILD_FAILED, now, pending_work=None, build_error=error)


def compatibility_finished(
    state: ReleaseState, report: CompatibilityReport, now: datetime
) -> Accepted:
    """Production releases wait for an apply; other environments release on their own (seed 001)."""
    tested = state.model_copy(update={"compatibility": report})
    if state.request.environment is Environment.PRODUCTION:
        return Accepted(_moved(tested, Stage.READY_TO_APPLY, now, pending_work=None))
    return _release(tested, now)


def apply_config_patch(config: ReleaseConfig, patch: ConfigPatch) -> ReleaseConfig:
    """Merge a patch into a configuration; raises ValueError when the result is incomplete."""
    changes: dict[str, Any] = {
        name: getattr(patch, name) for name in patch.model_fields_set if name != "basic_info"
    }
    if patch.basic_info is not None:
        changes["basic_info"] = merge_basic_info(config.basic_info, patch.basic_info)
    return config.model_copy(update=changes)


def merge_basic_info(current: BasicInfo | None, patch: BasicInfoPatch) -> BasicInfo:
    values = current.model_dump() if current else {}
    values.update(patch.model_dump(exclude_none=True))
    if "name" not in values:
        raise ValueError("basic_info.name is required when basic information is first set")
    return BasicInfo.model_validate(values)


def _update_config(state: ReleaseState, command: UpdateConfig, now: datetime) -> Decision:
    patch = command.config
    if not patch.model_fields_set:
        return Rejected("update_config needs at least one config field to change")
    if state.stage in BASIC_INFO_ONLY_STAGES and not patch.only_basic_info():
        refused = ", ".join(sorted(patch.model_fields_set - {"basic_info"}))
        return Rejected(
            f"only basic_info can be changed from UNDER_REVIEW on (stage {state.stage}); "
            f"refused: {refused}"
        )
    try:
        config = apply_config_patch(state.config, patch)
    except ValueError as error:
        return Rejected(str(error))
    return Accepted(_changed(state, now, config=config))


def _apply_release(state: ReleaseState, command: ApplyRelease, now: datetime) -> Decision:
    patch = ConfigPatch.model_validate(
        command.model_dump(
            include={"basic_info", "server_domain_whitelist", "h5_domain_whitelist"},
            exclude_unset=True,
        )
    )
    try:
        config = apply_config_patch(state.config, patch)
    except ValueError as error:
        return Rejected(str(error))
    if config.basic_info is None:
        return Rejected("apply_release needs basic_info (at least a name) in the config or payload")
    summary = state.compatibility.summary() if state.compatibility else None
    note = None
    if summary and summary.failed:
        note = (
            f"applied with {summary.failed} failing compatibility cell(s): "
            + " | ".join(summary.failing_cells)
        )
    return Accepted(
        _moved(state, Stage.UNDER_REVIEW, now, config=config,
               review_round=state.review_round + 1, approvals={}, review_rejection=None),
        Effects(open_review_round=True),
        note=note,
    )


def _approve(state: ReleaseState, command: ApproveReview, now: datetime) -> Decision:
    required = state.policy.required_reviewers
    if command.reviewer not in required:
        return Rejected(_not_required(state, command.reviewer))
    if command.reviewer in state.approvals:
        previous = state.approvals[command.reviewer]
        return Rejected(
            f"{command.reviewer} already approved review round {state.review_round} "
            f"({previous.actor})"
        )
    approvals = {
        **state.approvals,
        command.reviewer: Approval(actor=command.actor, comment=command.comment, at=now),
    }
    outcome = ReviewOutcome(round=state.review_round, reviewer=command.reviewer, approved=True,
                            actor=command.actor, comment=command.comment)
    if all(reviewer in approvals for reviewer in required):
        next_state = _moved(state, Stage.RELEASE_PREPARATION, now, approvals=approvals)
    else:
        next_state = _changed(state, now, approvals=approvals)
    return Accepted(next_state, Effects(review=outcome))


def _reject(state: ReleaseState, command: RejectReview, now: datetime) -> Decision:
    if command.reviewer not in state.policy.required_reviewers:
        return Rejected(_not_required(state, command.reviewer))
    rejection = ReviewRejection(reviewer=command.reviewer, actor=command.actor,
                                reason=command.reason, at=now)
    outcome = ReviewOutcome(round=state.review_round, reviewer=command.reviewer, approved=False,
                            actor=command.actor, comment=command.reason)
    return Accepted(
        _moved(state, Stage.REJECTED, now, review_rejection=rejection),
        Effects(review=outcome),
    )


def _start_whitelist_test(
    state: ReleaseState, command: StartWhitelistTest, now: datetime
) -> Decision:
    app = state.policy.target_app
    if not state.policy.whitelist_allowed:
        return Rejected(f"target app {app} does not offer whitelist tests")
    if state.full_release_only:
        return Rejected(_full_release_only(state))
    return Accepted(
        _moved(state, Stage.WHITELIST_TESTING, now, whitelist=list(command.user_ids)),
        Effects(write_rollout=True),
    )


def _set_grayscale(state: ReleaseState, command: SetGrayscale, now: datetime) -> Decision:
    ladder = state.policy.grayscale_ladder
    if state.full_release_only:
        return Rejected(_full_release_only(state))
    if command.percent not in ladder:
        steps = ", ".join(f"{p}%" for p in ladder)
        return Rejected(
            f"{command.percent}% is not on {state.policy.target_app}'s grayscale ladder ({steps})"
        )
    if command.percent <= state.percent:
        return Rejected(
            f"grayscale only increases: currently {state.percent}%, asked {command.percent}% "
            "(reset_grayscale starts over at 0%)"
        )
    if command.percent == 100:
        return _release(state, now)
    return Accepted(
        _moved(state, Stage.GRAYSCALE, now, percent=command.percent),
        Effects(write_rollout=True),
    )


def _release(state: ReleaseState, now: datetime) -> Accepted:
    return Accepted(
        _moved(state, Stage.RELEASED, now, percent=100, whitelist=[], pending_work=None,
               released_at=now),
        Effects(promote=True),
    )


def _not_required(state: ReleaseState, reviewer: str) -> str:
    required = ", ".join(state.policy.required_reviewers)
    return (
        f"target app {state.policy.target_app} does not take a {reviewer} review "
        f"(required: {required})"
    )


def _full_release_only(state: ReleaseState) -> str:
    return (
        f"the first release to {state.policy.target_app} can only be a full release "
        "(no whitelist test or grayscale); use full_release"
    )


def _changed(state: ReleaseState, now: datetime, **changes: Any) -> ReleaseState:
    return state.model_copy(update={**changes, "updated_at": now})


def _moved(state: ReleaseState, stage: Stage, now: datetime, **changes: Any) -> ReleaseState:
    return _changed(state, now, stage=stage, stage_changed_at=now, **changes)
