"""MiniProgramRelease: one mini program version on its way to one target app.

The workflow is a thin shell around `domain.rules`: it asks the rules for a decision, records
the decision in the catalog (one idempotent transaction per event), and runs the long work
(build, compatibility matrix) the rules ask for. Commands arrive as signals (tctl) and as
updates of the same name (`temporal` CLI, services); both paths run the same code, one
command at a time.
"""

import asyncio
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from mpr.domain.core.commands import ParseFailure, describe
    from mpr.domain.core.models import LastRejection, Role
    from mpr.domain.core.redaction import redact
    from mpr.domain.release.commands import COMMANDS, parse_command
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
        ReleaseContext,
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
        Accepted,
        Effects,
        Rejected,
        build_failed,
        build_succeeded,
        compatibility_finished,
        decide,
        start_release,
    )
    from mpr.domain.release.stages import TERMINAL_STAGES, Stage
    from mpr.domain.release.state import (
        AUDIT_ENTRIES_KEPT,
        AuditLog,
        ReleaseState,
        ReleaseStatus,
        Work,
    )
    from workflows import search_attributes as sa
    from workflows.commands import register_commands

WORKFLOW_TYPE = "MiniProgramRelease"
STILL_STARTING = (
    "the release is still starting (loading its target app policy from the catalog); "
    "ask again in a moment"
)

# Catalog writes wait out a database outage rather than give up: the release simply pauses.
CATALOG_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["UnknownTargetApp"],
)
CATALOG_TIMEOUT = timedelta(seconds=30)
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
        self._state: ReleaseState | None = None
        # Commands and stage changes made by finished work apply one at a time.
        self._lock = asyncio.Lock()
        self._work: asyncio.Task[None] | None = None
        meter = workflow.metric_meter()
        self._commands = meter.create_counter(
            "mpr_release_commands", "Commands received by releases, by name and outcome"
        )
        self._stages = meter.create_counter(
            "mpr_release_stage_reached", "Times a release entered a stage"
        )
        register_commands(
            COMMANDS, self._execute, lambda: self.state.status(),
            lambda name: {"command": name, "stage": self.state.stage},
        )

    @workflow.run
    async def run(self, request: Any, carried: ReleaseState | None = None) -> ReleaseStatus:
        """`request` is taken as raw JSON so that a malformed start input fails the workflow
        with a readable error instead of failing workflow tasks forever."""
        if carried is not None:
            self._state = carried
        else:
            self._state = await self._begin(request)
        self._publish_search_attributes()
        try:
            await self._drive()
        except asyncio.CancelledError:
            # `temporal workflow cancel` on a release means the same as cancel_release.
            await self._cancel_on_request()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state.status()

    @property
    def state(self) -> ReleaseState:
        if self._state is None:
            raise ApplicationError(STILL_STARTING)
        return self._state

    # --- queries ------------------------------------------------------------------------

    @workflow.query
    def status(self) -> ReleaseStatus:
        return self.state.status()

    @workflow.query
    def compatibility_report(self) -> CompatibilityReport | None:
        return self.state.compatibility

    @workflow.query
    def audit_log(self) -> AuditLog:
        return AuditLog(total=self.state.audit_count, entries=self.state.audit)

    # --- the process --------------------------------------------------------------------

    async def _begin(self, raw: Any) -> ReleaseState:
        try:
            request = StartInput.model_validate(raw)
        except ValidationError as error:
            raise ApplicationError(
                f"invalid start input: {describe(error)}", type="InvalidStartInput"
            ) from None
        expected = release_id(
            request.mini_program_id, request.version, request.target_app, request.environment
        )
        if workflow.info().workflow_id != expected:
            raise ApplicationError(
                f"workflow id must be {expected!r} for this input, "
                f"got {workflow.info().workflow_id!r}",
                type="InvalidStartInput",
            )
        try:
            context = await workflow.execute_activity(
                "load_release_context",
                ReleaseContextRequest(release_id=expected, request=request),
                result_type=ReleaseContext,
                start_to_close_timeout=CATALOG_TIMEOUT,
                retry_policy=CATALOG_RETRY,
            )
        except ActivityError as error:
            raise ApplicationError(failure_message(error), type="InvalidStartInput") from None
        state = start_release(expected, request, context, workflow.now())
        await self._record("start_release", request.requested_by, state, state, accepted=True)
        return self.state

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
                await self._continue_as_new()

    async def _continue_as_new(self) -> None:
        # Let in-flight commands finish so none is lost between runs.
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.logger.info("continuing as new", extra={"stage": self.state.stage})
        workflow.continue_as_new(
            args=[self.state.request.model_dump(mode="json"), self.state]
        )

    async def _perform(self, work: Work) -> None:
        if work is Work.BUILD:
            await self._build()
        else:
            await self._test_compatibility()

    async def _build(self) -> None:
        state = self.state
        try:
            package = await workflow.execute_activity(
                "build_package",
                BuildRequest(
                    release_id=state.release_id,
                    mini_program_id=state.request.mini_program_id,
                    version=state.request.version,
                    source=state.source,
                ),
                result_type=PackageFacts,
                start_to_close_timeout=BUILD_TIMEOUT,
                heartbeat_timeout=BUILD_HEARTBEAT,
                retry_policy=BUILD_RETRY,
            )
        except ActivityError as error:
            message = failure_message(error)
            await self._system_change(
                "build_failed", Stage.BUILDING,
                lambda s: Accepted(build_failed(s, message, workflow.now()), note=message),
            )
            return
        await self._system_change(
            "build_succeeded", Stage.BUILDING,
            lambda s: Accepted(build_succeeded(s, package, workflow.now())),
            package=package,
        )

    async def _test_compatibility(self) -> None:
        state = self.state
        package = state.package
        assert package is not None, "compatibility testing needs a built package"
        matrix = state.config.compatibility or CompatibilityMatrix()
        results = await asyncio.gather(*(run_cell(package, cell) for cell in matrix.cells()))
        report = CompatibilityReport(
            report_id=str(workflow.uuid4()),
            package_sha256=package.sha256,
            results=list(results),
            created_at=workflow.now(),
        )
        summary = report.summary()
        note = (f"{summary.cells} cells: {summary.passed} passed, {summary.warned} warned, "
                f"{summary.failed} failed")
        await self._system_change(
            "compatibility_tested", Stage.COMPATIBILITY_TESTING,
            lambda s: compatibility_finished(s, report, workflow.now()),
            report=report, note=note,
        )

    async def _cancel_on_request(self) -> None:
        async with self._lock:
            state = self.state
            if state.stage in TERMINAL_STAGES:
                return
            canceled = state.model_copy(update={
                "stage": Stage.CANCELED, "pending_work": None, "updated_at": workflow.now(),
                "stage_changed_at": workflow.now(),
                "cancel_reason": "workflow cancellation requested",
            })
            await self._record(
                "cancel_release", None, state, canceled, accepted=True,
                effects=Effects(write_rollout=True),
            )
            self._commit(canceled)

    # --- commands -----------------------------------------------------------------------

    @workflow.signal(dynamic=True)
    async def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """A mistyped signal name is recorded as a refused command instead of vanishing."""
        await self._execute(name, ())

    async def _execute(self, name: str, args: tuple[Any, ...]) -> LastRejection | None:
        """Run one command; returns the refusal, or None when it was accepted."""
        await workflow.wait_condition(lambda: self._state is not None)
        async with self._lock:
            try:
                refusal = await self._apply_command(name, args)
            except ActivityError as error:
                # The catalog refused outright (it retries outages by itself): the command
                # cannot be carried out, and the release stays as it was.
                reason = f"the catalog could not take {name}: {failure_message(error)}"
                workflow.logger.error("command failed in the catalog",
                                      extra={"command": name, "reason": reason})
                refusal = self._remember_refusal(name, None, reason)
        self._commands.add(1, {"command": name if name in COMMANDS else "unknown",
                               "outcome": "accepted" if refusal is None else "refused"})
        return refusal

    async def _apply_command(self, name: str, args: tuple[Any, ...]) -> LastRejection | None:
        before = self.state
        payload = args[0] if len(args) == 1 and isinstance(args[0], dict) else None
        try:
            command = parse_command(name, args)
        except ParseFailure as failure:
            return await self._refuse(name, failure.actor, failure.reason, payload)
        roles = await self._roles(command.actor)
        decision = decide(before, command, roles, workflow.now())
        if isinstance(decision, Rejected):
            return await self._refuse(name, command.actor, decision.reason, payload)
        result = await self._record(
            name, command.actor, before, decision.state, accepted=True,
            effects=decision.effects, note=decision.note, payload=payload,
        )
        if not result.applied:
            # The catalog refused the move (another release holds the channel) and has
            # recorded the refusal itself.
            return self._remember_refusal(name, command.actor, refusal_reason(result))
        self._commit(decision.state)
        if decision.effects.cancel_work and self._work is not None:
            self._work.cancel()
        return None

    async def _roles(self, actor: str) -> frozenset[Role]:
        request = self.state.request
        roles = await workflow.execute_activity(
            "load_actor_roles",
            ActorRolesRequest(workspace_id=request.workspace_id,
                              mini_program_id=request.mini_program_id,
                              target_app=request.target_app, actor=actor),
            result_type=list[Role],
            start_to_close_timeout=CATALOG_TIMEOUT,
            retry_policy=CATALOG_RETRY,
        )
        return frozenset(roles)

    async def _refuse(
        self, name: str, actor: str | None, reason: str, payload: dict[str, Any] | None
    ) -> LastRejection:
        state = self.state
        await self._record(name, actor, state, state, accepted=False, reason=reason,
                           payload=payload)
        workflow.logger.info("command refused", extra={"command": name, "reason": reason})
        return self._remember_refusal(name, actor, reason)

    def _remember_refusal(self, name: str, actor: str | None, reason: str) -> LastRejection:
        rejection = LastRejection(command=name, actor=actor, reason=reason, at=workflow.now())
        self._state = self.state.model_copy(update={"last_rejection": rejection})
        return rejection

    async def _system_change(
        self,
        name: str,
        expected_stage: Stage,
        change: Callable[[ReleaseState], Accepted],
        *,
        package: PackageFacts | None = None,
        report: CompatibilityReport | None = None,
        note: str | None = None,
    ) -> None:
        """Apply a stage change caused by finished work, unless a command moved on meanwhile."""
        async with self._lock:
            before = self.state
            if before.stage is not expected_stage:
                return
            decision = change(before)
            await self._record(name, None, before, decision.state, accepted=True,
                               effects=decision.effects, package=package, report=report,
                               note=note or decision.note)
            self._commit(decision.state)

    # --- recording ----------------------------------------------------------------------

    async def _record(
        self,
        name: str,
        actor: str | None,
        before: ReleaseState,
        after: ReleaseState,
        *,
        accepted: bool,
        effects: Effects | None = None,
        reason: str | None = None,
        note: str | None = None,
        payload: dict[str, Any] | None = None,
        package: PackageFacts | None = None,
        report: CompatibilityReport | None = None,
    ) -> TransitionResult:
        """Write one event and everything it changes to the catalog, then to the audit trail."""
        effects = effects or Effects()
        now = workflow.now()
        event = ReleaseEvent(
            event_id=str(workflow.uuid4()),
            release_id=after.release_id,
            seq=before.audit_count + 1,
            command=name,
            actor=actor,
            accepted=accepted,
            reason=reason or note,
            stage_before=before.stage,
            stage_after=after.stage,
            payload=redact(payload),
            at=now,
        )
        transition = CatalogTransition(
            event=event,
            release=after.catalog_row() if accepted else None,
            open_reviews=(
                ReviewRound(round=after.review_round, organisations=after.policy.required_reviewers)
                if effects.open_review_round else None
            ),
            review=effects.review,
            rollout=after.rollout() if effects.write_rollout or effects.promote else None,
            promote=effects.promote,
            package=package,
            compatibility_report=report,
        )
        result: TransitionResult = await workflow.execute_activity(
            "record_transition",
            transition,
            result_type=TransitionResult,
            start_to_close_timeout=CATALOG_TIMEOUT,
            retry_policy=CATALOG_RETRY,
        )
        entry = AuditEntry(
            seq=event.seq, event_id=event.event_id, command=name, actor=actor,
            accepted=accepted and result.applied,
            reason=refusal_reason(result) if not result.applied else event.reason,
            stage_before=before.stage,
            stage_after=after.stage if result.applied and accepted else before.stage,
            at=now,
        )
        current = self._state or after
        self._state = current.model_copy(update={
            "audit": [*current.audit, entry][-AUDIT_ENTRIES_KEPT:],
            "audit_count": event.seq,
        })
        return result

    def _commit(self, state: ReleaseState) -> None:
        """Adopt a new state, keeping the audit trail written while it was decided."""
        current = self.state
        moved = state.stage != current.stage or state.percent != current.percent
        self._state = state.model_copy(update={
            "audit": current.audit,
            "audit_count": current.audit_count,
            "last_rejection": current.last_rejection,
        })
        if state.stage != current.stage:
            self._stages.add(1, {"stage": state.stage.value,
                                 "target_app": state.request.target_app})
        if moved:
            workflow.logger.info(
                "release moved",
                extra={"stage": state.stage, "percent": state.percent,
                       "previous_stage": current.stage},
            )
            self._publish_search_attributes()

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


def refusal_reason(result: TransitionResult) -> str:
    return result.reason or f"the catalog refused the change (held by {result.blocked_by})"


async def run_cell(package: PackageFacts, cell: MatrixCell) -> CellResult:
    """One cell of the compatibility matrix, as an activity of its own."""
    try:
        result: CellResult = await workflow.execute_activity(
            "test_compatibility_cell",
            CellTestRequest(package=package, cell=cell),
            result_type=CellResult,
            start_to_close_timeout=CELL_TIMEOUT,
            heartbeat_timeout=CELL_HEARTBEAT,
            retry_policy=CELL_RETRY,
        )
        return result
    except ActivityError as error:
        # A cell that cannot run is a failing cell: the operator sees it and may retest.
        check = CellCheck(name="run", verdict="fail",
                          detail=f"could not be tested: {failure_message(error)}")
        return CellResult(cell=cell, verdict="fail", checks=[check])


def failure_message(error: ActivityError) -> str:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or error)
