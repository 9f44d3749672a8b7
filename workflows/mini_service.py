"""MiniServiceRelease: one version of a super app's mini service page (seed 004).

A DRAFT is edited (for months, perhaps: the workflow continues as new, carrying its state),
pilot-tested, rolled out in grayscale and released; releasing it archives the version released
before, whose workflow is told so and ends. Commands are signals and updates of the same name,
applied one at a time through `domain.mini_service.rules`; every event is one idempotent
catalog transaction.
"""

import asyncio
from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from mpr.domain.core.commands import ParseFailure, describe, parse
    from mpr.domain.core.models import LastRejection, Role
    from mpr.domain.core.redaction import redact
    from mpr.domain.mini_service.commands import SERVICE_COMMANDS
    from mpr.domain.mini_service.models import (
        FINAL_STATUSES,
        MiniServiceContent,
        MiniServiceState,
        MiniServiceStatus,
        Preview,
        ServiceAuditEntry,
        ServiceContext,
        ServiceEvent,
        ServiceHistory,
        ServiceRolesRequest,
        ServiceRow,
        ServiceStart,
        ServiceStatus,
        ServiceTransition,
        ServiceTransitionResult,
        ServiceVersionRef,
        mini_service_id,
        preview,
    )
    from mpr.domain.mini_service.rules import archived, decide, start_service
    from mpr.domain.release.rules import Rejected
    from mpr.domain.release.state import AUDIT_ENTRIES_KEPT
    from workflows import search_attributes as sa
    from workflows.commands import register_commands
    from workflows.release import CATALOG_RETRY, CATALOG_TIMEOUT, failure_message

WORKFLOW_TYPE = "MiniServiceRelease"
ARCHIVED_SIGNAL = "mark_archived"
STILL_STARTING = "the mini service version is still starting; ask again in a moment"


@workflow.defn(name=WORKFLOW_TYPE)
class MiniServiceRelease:
    def __init__(self) -> None:
        self._state: MiniServiceState | None = None
        self._lock = asyncio.Lock()
        register_commands(
            SERVICE_COMMANDS, self._execute, lambda: self.state.status_view(),
            lambda name: {"command": name, "status": self.state.status},
        )
        self._commands = workflow.metric_meter().create_counter(
            "mpr_mini_service_commands", "Commands received by mini services, by name and outcome"
        )

    @workflow.run
    async def run(self, request: Any, carried: MiniServiceState | None = None) -> MiniServiceStatus:
        self._state = carried or await self._begin(request)
        self._publish_search_attributes()
        while self.state.status not in FINAL_STATUSES:
            await workflow.wait_condition(
                lambda: self.state.status in FINAL_STATUSES
                or workflow.info().is_continue_as_new_suggested()
            )
            if self.state.status not in FINAL_STATUSES:
                # Let in-flight commands finish so none is lost between runs.
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(args=[request, self.state])
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state.status_view()

    @property
    def state(self) -> MiniServiceState:
        if self._state is None:
            raise ApplicationError(STILL_STARTING)
        return self._state

    # --- queries ------------------------------------------------------------------------

    @workflow.query
    def status(self) -> MiniServiceStatus:
        return self.state.status_view()

    @workflow.query
    def content(self) -> MiniServiceContent:
        return self.state.content

    @workflow.query(name="preview")
    def preview_page(self, request: Any = None) -> Preview:
        """`{"language": "id"}` (or just `"id"`); the default language when absent."""
        language = request.get("language") if isinstance(request, dict) else request
        if not isinstance(language, str) or not language:
            language = self.state.content.title.default_language
        return preview(self.state.content, language)

    @workflow.query
    def history(self) -> ServiceHistory:
        return ServiceHistory(as_of=self.state.history_as_of, versions=self.state.history)

    # --- start --------------------------------------------------------------------------

    async def _begin(self, raw: Any) -> MiniServiceState:
        try:
            request = ServiceStart.model_validate(raw)
        except ValidationError as error:
            raise ApplicationError(f"invalid start input: {describe(error)}",
                                   type="InvalidStartInput") from None
        expected = mini_service_id(request.super_app, request.version_no)
        if workflow.info().workflow_id != expected:
            raise ApplicationError(
                f"workflow id must be {expected!r} for this input, "
                f"got {workflow.info().workflow_id!r}", type="InvalidStartInput")
        try:
            context = await workflow.execute_activity(
                "load_service_context", request.super_app, result_type=ServiceContext,
                start_to_close_timeout=CATALOG_TIMEOUT, retry_policy=CATALOG_RETRY)
        except ActivityError as error:
            raise ApplicationError(failure_message(error), type="InvalidStartInput") from None
        state = start_service(request, context.grayscale_ladder, workflow.now())
        self._state = state
        await self._record("create", request.created_by, state, state, accepted=True)
        return self.state

    # --- commands -----------------------------------------------------------------------

    @workflow.signal(dynamic=True)
    async def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """A mistyped signal name is recorded as a refused command instead of vanishing."""
        await self._execute(name, ())

    @workflow.signal(name=ARCHIVED_SIGNAL)
    async def mark_archived(self, *args: Any) -> None:
        """A newer version was released. The catalog, not the sender, is believed."""
        await workflow.wait_condition(lambda: self._state is not None)
        async with self._lock:
            state = self.state
            if state.status is not ServiceStatus.RELEASED:
                return
            confirmed = await workflow.execute_activity(
                "is_service_archived",
                ServiceVersionRef(super_app=state.super_app, version_no=state.version_no),
                result_type=bool, start_to_close_timeout=CATALOG_TIMEOUT,
                retry_policy=CATALOG_RETRY)
            if confirmed:
                after = archived(state, workflow.now())
                await self._record("archive", None, state, after, accepted=True)
                self._commit(after)

    async def _execute(self, name: str, args: tuple[Any, ...]) -> LastRejection | None:
        await workflow.wait_condition(lambda: self._state is not None)
        async with self._lock:
            try:
                refusal = await self._apply_command(name, args)
            except ActivityError as error:
                reason = f"the catalog could not take {name}: {failure_message(error)}"
                refusal = self._remember_refusal(name, None, reason)
        self._commands.add(1, {"command": name if name in SERVICE_COMMANDS else "unknown",
                               "outcome": "accepted" if refusal is None else "refused"})
        return refusal

    async def _apply_command(self, name: str, args: tuple[Any, ...]) -> LastRejection | None:
        before = self.state
        payload = args[0] if len(args) == 1 and isinstance(args[0], dict) else None
        try:
            command = parse(name, args, SERVICE_COMMANDS)
        except ParseFailure as failure:
            return await self._refuse(name, failure.actor, failure.reason, payload)
        roles = await workflow.execute_activity(
            "load_service_roles",
            ServiceRolesRequest(super_app=before.super_app, actor=command.actor),
            result_type=list[Role], start_to_close_timeout=CATALOG_TIMEOUT,
            retry_policy=CATALOG_RETRY)
        decision = decide(before, command, frozenset(roles), workflow.now())
        if isinstance(decision, Rejected):
            return await self._refuse(name, command.actor, decision.reason, payload)
        result = await self._record(name, command.actor, before, decision.state, accepted=True,
                                    promote=decision.promote, payload=payload)
        if not result.applied:
            return self._remember_refusal(name, command.actor,
                                          result.reason or "the catalog refused the change")
        self._commit(decision.state)
        if result.archived_version is not None:
            await self._tell_archived(result.archived_version)
        return None

    async def _tell_archived(self, version_no: int) -> None:
        previous = workflow.get_external_workflow_handle(
            mini_service_id(self.state.super_app, version_no))
        try:
            await previous.signal(ARCHIVED_SIGNAL, {"actor": "catalog"})
        except FailureError:
            # Its workflow may be gone (e.g. terminated by hand); the catalog already says
            # ARCHIVED, which is what users are served from.
            workflow.logger.warning("could not tell version it was archived",
                                    extra={"version_no": version_no})

    async def _refuse(self, name: str, actor: str | None, reason: str,
                      payload: dict[str, Any] | None) -> LastRejection:
        state = self.state
        await self._record(name, actor, state, state, accepted=False, reason=reason,
                           payload=payload)
        return self._remember_refusal(name, actor, reason)

    def _remember_refusal(self, name: str, actor: str | None, reason: str) -> LastRejection:
        rejection = LastRejection(command=name, actor=actor, reason=reason, at=workflow.now())
        self._state = self.state.model_copy(update={"last_rejection": rejection})
        return rejection

    # --- recording ----------------------------------------------------------------------

    async def _record(
        self,
        name: str,
        actor: str | None,
        before: MiniServiceState,
        after: MiniServiceState,
        *,
        accepted: bool,
        reason: str | None = None,
        promote: bool = False,
        payload: dict[str, Any] | None = None,
    ) -> ServiceTransitionResult:
        now = workflow.now()
        event = ServiceEvent(
            event_id=str(workflow.uuid4()), super_app=after.super_app,
            version_no=after.version_no, seq=before.audit_count + 1, command=name, actor=actor,
            accepted=accepted, reason=reason, status_before=before.status,
            status_after=after.status, payload=redact(payload), at=now)
        row = ServiceRow(
            super_app=after.super_app, version_no=after.version_no, status=after.status,
            percent=after.percent, content=after.content, testers=after.testers,
            created_by=after.created_by, duplicated_from=after.duplicated_from, at=now)
        result: ServiceTransitionResult = await workflow.execute_activity(
            "record_service_transition",
            ServiceTransition(event=event, row=row if accepted else None, promote=promote),
            result_type=ServiceTransitionResult, start_to_close_timeout=CATALOG_TIMEOUT,
            retry_policy=CATALOG_RETRY)
        applied = accepted and result.applied
        entry = ServiceAuditEntry(
            seq=event.seq, event_id=event.event_id, command=name, actor=actor, accepted=applied,
            reason=reason if result.applied else result.reason, status_before=before.status,
            status_after=after.status if applied else before.status, at=now)
        current = self.state
        self._state = current.model_copy(update={
            "audit": [*current.audit, entry][-AUDIT_ENTRIES_KEPT:],
            "audit_count": event.seq,
            "history": result.history or current.history,
            "history_as_of": now if result.history else current.history_as_of,
        })
        return result

    def _commit(self, state: MiniServiceState) -> None:
        """Adopt a new state, keeping what was recorded while it was decided."""
        current = self.state
        self._state = state.model_copy(update={
            field: getattr(current, field)
            for field in ("audit", "audit_count", "last_rejection", "history", "history_as_of")
        })
        if state.status != current.status or state.percent != current.percent:
            workflow.logger.info("mini service moved", extra={
                "status": state.status, "percent": state.percent,
                "previous_status": current.status})
            self._publish_search_attributes()

    def _publish_search_attributes(self) -> None:
        workflow.upsert_search_attributes([
            sa.TARGET_APP.value_set(self.state.super_app),
            sa.MINI_SERVICE_STATUS.value_set(self.state.status.value),
            sa.GRAYSCALE_PERCENT.value_set(self.state.percent),
        ])

