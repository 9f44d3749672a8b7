"""MiniProgramRelease: one mini program version on its way to one target app.

The release builds its package, tests it across the compatibility matrix, and then waits for
operators' commands (review, whitelist test, grayscale, full release) until it is RELEASED or
CANCELED. Commands go through the shared command core (`workflows.command_core`), which
applies the rules of `mpr.domain.release.rules`; this module says what the release builds and
waits for, and which activities it runs.
"""

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.channel.notice import ChannelNotices
    from activities.release.build import BuildActivities
    from activities.release.catalog import CatalogActivities
    from activities.release.compatibility import CompatibilityActivities
    from mpr.domain.channel.models import ChannelKey, ChannelNotice
    from mpr.domain.core.commands import Undecryptable, describe
    from mpr.domain.core.identity import IdentityCheck, IdentityVerdict, split_token
    from mpr.domain.core.models import Role
    from mpr.domain.core.rules import Accepted
    from mpr.domain.release.models import (
        ActorRolesRequest,
        AuditEntry,
        BuildRequest,
        CellCheck,
        CellResult,
        CellTestRequest,
        CompatibilityMatrix,
        CompatibilityReport,
        MatrixCell,
        PackageFacts,
        ReleaseAuthentication,
        ReleaseContextRequest,
        StartInput,
    )
    from mpr.domain.release.records import (
        CatalogTransition,
        ReleaseEvent,
        ReviewRound,
        TransitionResult,
    )
    from mpr.domain.release.release_id import release_id
    from mpr.domain.release.rules import (
        RELEASE,
        ROLLING_OUT_STAGES,
        Effects,
        build_failed,
        build_succeeded,
        canceled_by_channel,
        compatibility_finished,
        start_release,
        workflow_canceled,
    )
    from mpr.domain.release.stages import TERMINAL_STAGES, Stage
    from mpr.domain.release.state import AuditLog, ReleaseState, ReleaseStatus, Work
    from workflows import search_attributes as sa
    from workflows.command_core import (
        CATALOG_RETRY,
        CATALOG_TIMEOUT,
        VERIFIED_IDENTITY,
        CatalogRefused,
        Change,
        CommandCore,
        catalog_activity,
        catalog_read,
        failure_message,
    )

WORKFLOW_TYPE = "MiniProgramRelease"
WITHDRAW_SIGNAL = "withdraw_by_channel"
# A release reaching RELEASED starts its channel's workflow, or tells it (docs/channels.md).
CHANNEL_NOTICE = "channel-notice"
# A release built without basic_info takes its name (and description) from app.json.
PREFILL_BASIC_INFO = "prefill-basic-info"
STILL_STARTING = (
    "the release is still starting (loading its target app policy from the catalog); "
    "ask again in a moment"
)

# Builds and cells heartbeat every 2 s from the event loop while their work runs in a thread.
# The heartbeat timeout is how long a build or cell lost with a crashed worker stays lost
# before it is retried elsewhere; the start-to-close timeout only bounds work that hangs while
# its heartbeat goes on (tests/faults kill workers mid-build and mid-cell).
BUILD_TIMEOUT = timedelta(minutes=30)
BUILD_HEARTBEAT = timedelta(seconds=10)
BUILD_RETRY = RetryPolicy(maximum_attempts=5, non_retryable_error_types=["InvalidPackage"])
# A cell reads the bundle's index and judges it: well under a second even for 20,000 files.
CELL_TIMEOUT = timedelta(minutes=1)
CELL_HEARTBEAT = timedelta(seconds=10)
CELL_RETRY = RetryPolicy(maximum_attempts=5, non_retryable_error_types=["ArtifactMissing"])


@workflow.defn(name=WORKFLOW_TYPE)
class MiniProgramRelease:
    def __init__(self) -> None:
        self._core: CommandCore[ReleaseState, Effects, Stage, AuditEntry, TransitionResult] = (
            CommandCore(RELEASE, self, audit_entry=audit_entry, metric="mpr_release_commands",
                        still_starting=STILL_STARTING)
        )
        self._work: asyncio.Task[None] | None = None
        self._stages = workflow.metric_meter().create_counter(
            "mpr_release_stage_reached", "Times a release entered a stage"
        )

    @workflow.run
    async def run(self, request: Any, carried: Any = None) -> ReleaseStatus:
        """`request` is taken as raw JSON so that a malformed start input fails the workflow
        with a readable error instead of failing workflow tasks forever; `carried` is what the
        previous run handed over through continue-as-new."""
        if carried is not None:
            self._core.resume(carried, ReleaseState, AuditEntry)
        else:
            await self._begin(request)
        self._publish_search_attributes()
        try:
            await self._drive()
        except asyncio.CancelledError:
            # `temporal workflow cancel` on a release means the same as cancel_release.
            await self._core.change_by_system("cancel_release", self._canceled)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.answer()

    @property
    def state(self) -> ReleaseState:
        return self._core.state

    # --- queries ------------------------------------------------------------------------

    @workflow.query
    def status(self) -> ReleaseStatus:
        return self.answer()

    @workflow.query
    def compatibility_report(self) -> CompatibilityReport | None:
        return self.state.compatibility

    @workflow.query
    def audit_log(self) -> AuditLog:
        ledger = self._core.ledger
        return AuditLog(total=ledger.count, entries=ledger.entries)

    # --- the process --------------------------------------------------------------------

    async def _begin(self, raw: Any) -> None:
        verified = workflow.patched(VERIFIED_IDENTITY)
        sent, token = split_token(raw) if isinstance(raw, dict) else (raw, None)
        if isinstance(sent, Undecryptable):
            raise ApplicationError(sent.reason("the start input"), type="InvalidStartInput")
        try:
            request = StartInput.model_validate(sent if verified else raw)
        except ValidationError as error:
            raise ApplicationError(
                f"invalid start input: {describe(error)}", type="InvalidStartInput"
            ) from None
        if not verified and request.requested_by is None:
            raise ApplicationError("invalid start input: requested_by: required field missing",
                                   type="InvalidStartInput")
        expected = release_id(
            request.mini_program_id, request.version, request.target_app, request.environment
        )
        if workflow.info().workflow_id != expected:
            raise ApplicationError(
                f"workflow id must be {expected!r} for this input, "
                f"got {workflow.info().workflow_id!r}",
                type="InvalidStartInput",
            )
        if verified:
            subject = await self._core.verified_starter(
                token, request.requested_by, lambda check: self._authenticate(request, check))
            request = request.model_copy(update={"requested_by": subject})
        try:
            context = await catalog_read(
                CatalogActivities.load_release_context,
                ReleaseContextRequest(release_id=expected, request=request))
        except CatalogRefused as refused:
            raise ApplicationError(refused.message, type="InvalidStartInput") from None
        state = start_release(expected, request, context, workflow.now())
        await self._core.record_start("start_release", request.requester, state)
        self._core.begin(state)

    async def _drive(self) -> None:
        while self.state.stage not in TERMINAL_STAGES:
            await workflow.wait_condition(
                lambda: self.state.stage in TERMINAL_STAGES
                or self.state.pending_work is not None
                or workflow.info().is_continue_as_new_suggested()
            )
            if self.state.pending_work is not None:
                work = self.state.pending_work
                self._work = asyncio.create_task(self._perform(work))
                try:
                    await self._work
                except asyncio.CancelledError:
                    if self.state.stage is not Stage.CANCELED:
                        raise  # the workflow itself is being cancelled
                finally:
                    self._work = None
            elif self.state.stage not in TERMINAL_STAGES:
                await self._core.continue_as_new(self.state.request.model_dump(mode="json"))

    async def _perform(self, work: Work) -> None:
        if work is Work.BUILD:
            await self._build()
        else:
            await self._test_compatibility()

    async def _build(self) -> None:
        state = self.state
        try:
            package = await workflow.execute_activity_method(
                BuildActivities.build_package,
                BuildRequest(
                    release_id=state.release_id,
                    mini_program_id=state.request.mini_program_id,
                    version=state.request.version,
                    source=state.source,
                ),
                start_to_close_timeout=BUILD_TIMEOUT,
                heartbeat_timeout=BUILD_HEARTBEAT,
                retry_policy=BUILD_RETRY,
            )
        except ActivityError as error:
            message = failure_message(error)
            await self._finished_work("build_failed", Stage.BUILDING,
                                      lambda s: build_failed(s, message, workflow.now()))
            return
        prefill = workflow.patched(PREFILL_BASIC_INFO)
        await self._finished_work("build_succeeded", Stage.BUILDING,
                                  lambda s: build_succeeded(s, package, workflow.now(),
                                                            prefill_basic_info=prefill))

    async def _test_compatibility(self) -> None:
        package = self.state.package
        assert package is not None, "compatibility testing needs a built package"
        matrix = self.state.config.compatibility or CompatibilityMatrix()
        results = await asyncio.gather(*(run_cell(package, cell) for cell in matrix.cells()))
        report = CompatibilityReport(
            report_id=str(workflow.uuid4()),
            package_sha256=package.sha256,
            results=list(results),
            created_at=workflow.now(),
        )
        await self._finished_work("compatibility_tested", Stage.COMPATIBILITY_TESTING,
                                  lambda s: compatibility_finished(s, report, workflow.now()))

    async def _finished_work(
        self, name: str, stage: Stage,
        outcome: Callable[[ReleaseState], Accepted[ReleaseState, Effects]],
    ) -> None:
        """Apply the stage change finished work causes, unless a command moved on meanwhile."""

        async def change(state: ReleaseState) -> Accepted[ReleaseState, Effects] | None:
            return outcome(state) if state.stage is stage else None

        await self._core.change_by_system(name, change)

    @workflow.signal(name=WITHDRAW_SIGNAL)
    async def withdraw_by_channel(self, *args: Any) -> None:
        """The channel was taken offline while this release rolled out on it. The catalog,
        not the sender, is believed: this message between workflows carries no identity."""
        await workflow.wait_condition(lambda: self._core.started)
        await self._core.change_by_system("withdrawn_by_channel", self._withdrawn_if_offline)

    async def _withdrawn_if_offline(
        self, state: ReleaseState
    ) -> Accepted[ReleaseState, Effects] | None:
        if state.stage not in ROLLING_OUT_STAGES:
            return None
        reason = await catalog_read(CatalogActivities.channel_takedown, state.channel)
        return canceled_by_channel(state, reason, workflow.now()) if reason else None

    async def _canceled(self, state: ReleaseState) -> Accepted[ReleaseState, Effects] | None:
        return workflow_canceled(state, workflow.now())

    # --- what the command core asks of a release ----------------------------------------

    async def authenticate(self, state: ReleaseState, check: IdentityCheck) -> IdentityVerdict:
        return await self._authenticate(state.request, check)

    async def _authenticate(self, request: StartInput, check: IdentityCheck) -> IdentityVerdict:
        return await catalog_read(
            CatalogActivities.authenticate_release_actor,
            ReleaseAuthentication(
                identity_token=check.identity_token, claimed_actor=check.claimed_actor,
                received_at=check.received_at, workspace_id=request.workspace_id,
                mini_program_id=request.mini_program_id, target_app=request.target_app))

    async def load_roles(self, state: ReleaseState, actor: str) -> frozenset[Role]:
        request = state.request
        roles = await catalog_activity(
            CatalogActivities.load_actor_roles,
            ActorRolesRequest(workspace_id=request.workspace_id,
                              mini_program_id=request.mini_program_id,
                              target_app=request.target_app, actor=actor))
        return frozenset(roles)

    async def write(self, change: Change[ReleaseState, Effects]) -> TransitionResult:
        """Write one event and everything it changes to the catalog, in one transaction."""
        effects = change.effects or Effects()
        after = change.after
        event = ReleaseEvent(
            event_id=change.event_id, release_id=after.release_id, seq=change.seq,
            command=change.command, actor=change.actor, claimed_actor=change.claimed_actor,
            accepted=change.accepted,
            reason=change.reason, stage_before=change.before.stage, stage_after=after.stage,
            payload=change.payload, at=change.at,
        )
        transition = CatalogTransition(
            event=event,
            release=after.catalog_row() if change.accepted else None,
            open_reviews=(
                ReviewRound(round=after.review_round, organisations=after.policy.required_reviewers)
                if effects.open_review_round else None
            ),
            review=effects.review,
            rollout=after.rollout() if effects.write_rollout or effects.promote else None,
            promote=effects.promote,
            package=effects.package,
            compatibility_report=effects.report,
        )
        return await catalog_activity(CatalogActivities.record_transition, transition)

    def settle(
        self, state: ReleaseState, result: TransitionResult, at: datetime
    ) -> ReleaseState:
        return state

    def adopted(self, before: ReleaseState, after: ReleaseState) -> None:
        if after.stage != before.stage:
            self._stages.add(1, {"stage": after.stage.value,
                                 "target_app": after.request.target_app})
        if after.stage != before.stage or after.percent != before.percent:
            workflow.logger.info(
                "release moved",
                extra={"stage": after.stage, "percent": after.percent,
                       "previous_stage": before.stage},
            )
            self._publish_search_attributes()

    async def carry_out(self, effects: Effects, result: TransitionResult) -> None:
        if effects.cancel_work and self._work is not None:
            self._work.cancel()
        if effects.promote and workflow.patched(CHANNEL_NOTICE):
            await self._notify_channel()

    async def _notify_channel(self) -> None:
        """Start the channel's workflow (rollback, takedown) or tell it a version went live."""
        channel = self.state.channel
        await workflow.execute_activity_method(
            ChannelNotices.notify_channel,
            ChannelNotice(key=ChannelKey(**channel.model_dump()),
                          task_queue=workflow.info().task_queue,
                          release_id=self.state.release_id),
            start_to_close_timeout=CATALOG_TIMEOUT, retry_policy=CATALOG_RETRY)

    def answer(self) -> ReleaseStatus:
        return self.state.status(self._core.ledger)

    def _publish_search_attributes(self) -> None:
        state = self.state
        request = state.request
        workflow.upsert_search_attributes([
            sa.MINI_PROGRAM_ID.value_set(request.mini_program_id),
            sa.MINI_PROGRAM_VERSION.value_set(request.version),
            sa.TARGET_APP.value_set(request.target_app),
            sa.RELEASE_ENVIRONMENT.value_set(request.environment.value),
            sa.RELEASE_STAGE.value_set(state.stage.value),
            sa.GRAYSCALE_PERCENT.value_set(state.percent),
            sa.RELEASE_STAGE_CHANGED_AT.value_set(state.stage_changed_at),
        ])


def audit_entry(*, before: Stage, after: Stage, **fields: Any) -> AuditEntry:
    return AuditEntry(stage_before=before, stage_after=after, **fields)


async def run_cell(package: PackageFacts, cell: MatrixCell) -> CellResult:
    """One cell of the compatibility matrix, as an activity of its own."""
    try:
        return await workflow.execute_activity_method(
            CompatibilityActivities.test_compatibility_cell,
            CellTestRequest(package=package, cell=cell),
            start_to_close_timeout=CELL_TIMEOUT,
            heartbeat_timeout=CELL_HEARTBEAT,
            retry_policy=CELL_RETRY,
        )
    except ActivityError as error:
        # A cell that cannot run is a failing cell: the operator sees it and may retest.
        check = CellCheck(name="run", verdict="fail",
                          detail=f"could not be tested: {failure_message(error)}")
        return CellResult(cell=cell, verdict="fail", checks=[check])
