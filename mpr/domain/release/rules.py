"""The release rules: given a state and a command, accept (with the next state) or refuse.

Pure functions only. The workflow asks `RELEASE.decide`, then carries out the decision's
effects (catalog writes, builds, tests); nothing here touches the outside world.

The stages, and the commands (c) or finished work (w) that move a release between them:

    BUILDING --w: build succeeded--> COMPATIBILITY_TESTING --w: tested--> READY_TO_APPLY
       |  ^                                   (other environments: straight to RELEASED)
       |  +--c: rebuild-- BUILD_FAILED <--w: build failed--+
       |                                                        READY_TO_APPLY / REJECTED
       |                                       --c: apply_release--> UNDER_REVIEW
    UNDER_REVIEW --c: approve_review (every required reviewer)--> RELEASE_PREPARATION
    UNDER_REVIEW --c: reject_review--> REJECTED --c: apply_release / rebuild / retest-->
    RELEASE_PREPARATION --c: start_whitelist_test--> WHITELIST_TESTING
    RELEASE_PREPARATION / WHITELIST_TESTING --c: set_grayscale N%--> GRAYSCALE (N < 100)
    GRAYSCALE --c: set_grayscale (higher)--> GRAYSCALE;  --c: reset_grayscale--> RELEASE_PREPARATION
    RELEASE_PREPARATION / WHITELIST_TESTING / GRAYSCALE --c: full_release, set_grayscale 100-->
        RELEASED (the previous stable version is archived)
    GRAYSCALE --c: cancel_grayscale--> CANCELED;   any unfinished stage --c: cancel_release-->
        CANCELED

RELEASED and CANCELED are final. `RULES` below is the whole table of who may send what where.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from mpr.domain.core.commands import describe
from mpr.domain.core.models import Role
from mpr.domain.core.rules import Accepted, Lifecycle, Rejected, Rule
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
)
from mpr.domain.release.models import (
    AppManifest,
    Approval,
    BasicInfo,
    BasicInfoPatch,
    CompatibilityReport,
    ConfigPatch,
    Environment,
    PackageFacts,
    ReleaseConfig,
    ReleaseContext,
    Reviewer,
    ReviewOutcome,
    StartInput,
)
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
    package: PackageFacts | None = None
    """A build finished: record the package."""
    report: CompatibilityReport | None = None
    """Compatibility testing finished: record the report."""


Decision = Accepted[ReleaseState, Effects] | Rejected


def accepted(
    state: ReleaseState, effects: Effects | None = None, note: str | None = None
) -> Accepted[ReleaseState, Effects]:
    return Accepted(state, effects or Effects(), note)


BEFORE_REVIEW = frozenset({Stage.BUILD_FAILED, Stage.READY_TO_APPLY, Stage.REJECTED})
GO_LIVE_STAGES = frozenset({Stage.RELEASE_PREPARATION, Stage.WHITELIST_TESTING, Stage.GRAYSCALE})
# Where a release serves its candidate on its channel: a takedown of the channel cancels it.
ROLLING_OUT_STAGES = frozenset({Stage.WHITELIST_TESTING, Stage.GRAYSCALE})
UNFINISHED = frozenset(Stage) - TERMINAL_STAGES

# Seed 000: "the owner, masters, and developers have permission to proceed with the release".
BUILD_AND_APPLY = frozenset({Role.OWNER, Role.ADMIN, Role.MASTER, Role.DEVELOPER})
# Seed 001: "Workspace admin ... or Admin for the mini program you want to release".
GO_LIVE = frozenset({Role.ADMIN, Role.PROGRAM_ADMIN})
# Withdrawing a release is for those who lead it, not for every developer.
CANCEL = frozenset({Role.OWNER, Role.ADMIN, Role.MASTER, Role.PROGRAM_ADMIN})
REVIEWER_ROLE = {
    Reviewer.PLATFORM: Role.PLATFORM_REVIEWER,
    Reviewer.PARTNER_APP: Role.PARTNER_REVIEWER,
}


def reviewer_of(command: ApproveReview | RejectReview) -> frozenset[Role]:
    """A review is sent for one organisation, by that organisation's reviewers."""
    return frozenset({REVIEWER_ROLE[command.reviewer]})


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


def _rebuild(state: ReleaseState, command: Rebuild, now: datetime) -> Decision:
    return accepted(
        _moved(state, Stage.BUILDING, now, pending_work=Work.BUILD,
               source=command.source or state.source, package=None, compatibility=None,
               build_error=None)
    )


def _retest(state: ReleaseState, command: RetestCompatibility, now: datetime) -> Decision:
    return accepted(
        _moved(state, Stage.COMPATIBILITY_TESTING, now, pending_work=Work.COMPATIBILITY,
               compatibility=None)
    )


def _full_release(state: ReleaseState, command: FullRelease, now: datetime) -> Decision:
    return _release(state, now)


def _cancel_grayscale(state: ReleaseState, command: CancelGrayscale, now: datetime) -> Decision:
    return accepted(
        _moved(state, Stage.CANCELED, now, cancel_reason=command.reason or "grayscale canceled"),
        Effects(write_rollout=True),
    )


def _reset_grayscale(state: ReleaseState, command: ResetGrayscale, now: datetime) -> Decision:
    return accepted(
        _moved(state, Stage.RELEASE_PREPARATION, now, percent=0, whitelist=[]),
        Effects(write_rollout=True),
    )


def _cancel_release(state: ReleaseState, command: CancelRelease, now: datetime) -> Decision:
    return accepted(
        _moved(state, Stage.CANCELED, now, pending_work=None,
               cancel_reason=command.reason or "release canceled"),
        Effects(write_rollout=state.stage in CHANNEL_HOLDING_STAGES,
                cancel_work=state.pending_work is not None),
    )


def build_succeeded(
    state: ReleaseState, package: PackageFacts, now: datetime, *, prefill_basic_info: bool = False
) -> Accepted[ReleaseState, Effects]:
    """The package is built: test it next.

    With `prefill_basic_info` (the workflow's `prefill-basic-info` patch; off for releases
    recorded before it), a release whose config has no basic_info takes it from the package's
    app.json: its name, and its description where it has one (seed 000, "Check the basic
    information"). Only an absent basic_info is filled: one given at the start, by
    update_config or apply_release, or prefilled by an earlier build, is never replaced, so a
    rebuild does not follow a new app.json (change it with update_config). A name that does
    not fit basic_info leaves it absent, and apply_release refuses as before.
    """
    config, note = state.config, None
    if prefill_basic_info and config.basic_info is None:
        try:
            basic_info = basic_info_from_manifest(package.manifest)
        except ValidationError as error:
            note = f"basic_info not prefilled: app.json does not fit it ({describe(error)})"
        else:
            config = config.model_copy(update={"basic_info": basic_info})
            taken = "name and description" if package.manifest.description else "name"
            note = f"basic_info prefilled from app.json ({taken})"
    return accepted(
        _moved(state, Stage.COMPATIBILITY_TESTING, now, pending_work=Work.COMPATIBILITY,
               package=package, build_error=None, config=config),
        Effects(package=package),
        note,
    )


def basic_info_from_manifest(manifest: AppManifest) -> BasicInfo:
    """basic_info as app.json names the program; ValidationError when it does not fit."""
    values = {"name": manifest.name}
    if manifest.description:
        values["description"] = manifest.description
    return BasicInfo.model_validate(values)


def build_failed(state: ReleaseState, error: str, now: datetime) -> Accepted[ReleaseState, Effects]:
    return accepted(_moved(state, Stage.BUILD_FAILED, now, pending_work=None, build_error=error),
                    note=error)


def compatibility_finished(
    state: ReleaseState, report: CompatibilityReport, now: datetime
) -> Accepted[ReleaseState, Effects]:
    """Production releases wait for an apply; other environments release on their own (seed 001)."""
    summary = report.summary()
    note = (f"{summary.cells} cells: {summary.passed} passed, {summary.warned} warned, "
            f"{summary.failed} failed")
    tested = state.model_copy(update={"compatibility": report})
    if state.request.environment is Environment.PRODUCTION:
        return accepted(_moved(tested, Stage.READY_TO_APPLY, now, pending_work=None),
                        Effects(report=report), note)
    released = _release(tested, now)
    return accepted(released.state, Effects(promote=True, report=report), note)


def workflow_canceled(state: ReleaseState, now: datetime) -> Accepted[ReleaseState, Effects] | None:
    """`temporal workflow cancel` means the same as cancel_release, sent by the system."""
    if state.stage in TERMINAL_STAGES:
        return None
    return accepted(
        _moved(state, Stage.CANCELED, now, pending_work=None,
               cancel_reason="workflow cancellation requested"),
        Effects(write_rollout=True),
    )


def canceled_by_channel(
    state: ReleaseState, reason: str, now: datetime
) -> Accepted[ReleaseState, Effects] | None:
    """The channel was taken offline while this release rolled out on it: the release is
    cancelled as part of the takedown (None when it is not rolling out any more)."""
    if state.stage not in ROLLING_OUT_STAGES:
        return None
    return accepted(
        _moved(state, Stage.CANCELED, now, cancel_reason=reason),
        Effects(write_rollout=True),
        note=reason,
    )


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
    return accepted(_changed(state, now, config=config))


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
    return accepted(
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
        command.reviewer: Approval(actor=command.by, comment=command.comment, at=now),
    }
    outcome = ReviewOutcome(round=state.review_round, reviewer=command.reviewer, approved=True,
                            actor=command.by, comment=command.comment)
    if all(reviewer in approvals for reviewer in required):
        next_state = _moved(state, Stage.RELEASE_PREPARATION, now, approvals=approvals)
    else:
        next_state = _changed(state, now, approvals=approvals)
    return accepted(next_state, Effects(review=outcome))


def _reject(state: ReleaseState, command: RejectReview, now: datetime) -> Decision:
    if command.reviewer not in state.policy.required_reviewers:
        return Rejected(_not_required(state, command.reviewer))
    rejection = ReviewRejection(reviewer=command.reviewer, actor=command.by,
                                reason=command.reason, at=now)
    outcome = ReviewOutcome(round=state.review_round, reviewer=command.reviewer, approved=False,
                            actor=command.by, comment=command.reason)
    return accepted(
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
    return accepted(
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
    return accepted(
        _moved(state, Stage.GRAYSCALE, now, percent=command.percent),
        Effects(write_rollout=True),
    )


def _release(state: ReleaseState, now: datetime) -> Accepted[ReleaseState, Effects]:
    return accepted(
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


RULES: dict[str, Rule[ReleaseState, Effects, Stage]] = {
    "update_config": Rule(UpdateConfig, BEFORE_REVIEW | BASIC_INFO_ONLY_STAGES, BUILD_AND_APPLY,
                          _update_config),
    "rebuild": Rule(Rebuild, BEFORE_REVIEW, BUILD_AND_APPLY, _rebuild),
    "retest_compatibility": Rule(RetestCompatibility, frozenset({Stage.READY_TO_APPLY,
                                 Stage.REJECTED}), BUILD_AND_APPLY, _retest),
    "apply_release": Rule(ApplyRelease, frozenset({Stage.READY_TO_APPLY, Stage.REJECTED}),
                          BUILD_AND_APPLY, _apply_release),
    "approve_review": Rule(ApproveReview, frozenset({Stage.UNDER_REVIEW}), reviewer_of, _approve),
    "reject_review": Rule(RejectReview, frozenset({Stage.UNDER_REVIEW}), reviewer_of, _reject),
    "start_whitelist_test": Rule(StartWhitelistTest, frozenset({Stage.RELEASE_PREPARATION,
                                 Stage.WHITELIST_TESTING}), GO_LIVE, _start_whitelist_test),
    "set_grayscale": Rule(SetGrayscale, GO_LIVE_STAGES, GO_LIVE, _set_grayscale),
    "full_release": Rule(FullRelease, GO_LIVE_STAGES, GO_LIVE, _full_release),
    "cancel_grayscale": Rule(CancelGrayscale, frozenset({Stage.GRAYSCALE}), GO_LIVE,
                             _cancel_grayscale),
    "reset_grayscale": Rule(ResetGrayscale, frozenset({Stage.GRAYSCALE}), GO_LIVE,
                            _reset_grayscale),
    "cancel_release": Rule(CancelRelease, UNFINISHED, CANCEL, _cancel_release),
}

RELEASE: Lifecycle[ReleaseState, Effects, Stage] = Lifecycle(
    rules=RULES,
    stages=Stage,
    finished=TERMINAL_STAGES,
    stage_of=lambda state: state.stage,
    subject=lambda state: "the release",
    # Seed 000: the workspace's members who develop the mini program start its releases.
    start_roles=frozenset({Role.OWNER, Role.ADMIN, Role.MASTER, Role.DEVELOPER}),
    starts="a release of this mini program",
)
