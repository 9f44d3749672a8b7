"""MiniServiceRelease: one version of a super app's mini service page (seed 004).

A DRAFT is edited (for months, perhaps: the workflow continues as new, carrying its state),
pilot-tested, rolled out in grayscale and released; releasing it archives the version released
before, whose workflow is told so and ends. Commands go through the shared command core
(`workflows.command_core`), which applies the rules of `mpr.domain.mini_service.rules`.
"""

from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.mini_service.catalog import MiniServiceCatalogActivities
    from mpr.domain.core.commands import Undecryptable, describe
    from mpr.domain.core.identity import IdentityCheck, IdentityVerdict, split_token
    from mpr.domain.core.models import Role
    from mpr.domain.core.rules import Accepted
    from mpr.domain.mini_service.models import (
        MiniServiceContent,
        Preview,
        ServiceAuditEntry,
        ServiceAuthentication,
        ServiceRolesRequest,
        ServiceStart,
        ServiceVersionRef,
        mini_service_id,
        preview,
    )
    from mpr.domain.mini_service.records import (
        ServiceEvent,
        ServiceRow,
        ServiceTransition,
        ServiceTransitionResult,
    )
    from mpr.domain.mini_service.rules import (
        MINI_SERVICE,
        ServiceEffects,
        archived,
        start_service,
    )
    from mpr.domain.mini_service.stages import FINAL_STATUSES, ServiceStatus
    from mpr.domain.mini_service.state import MiniServiceState, MiniServiceStatus, ServiceHistory
    from workflows import search_attributes as sa
    from workflows.command_core import (
        VERIFIED_IDENTITY,
        CatalogRefused,
        Change,
        CommandCore,
        catalog_activity,
        catalog_read,
    )

WORKFLOW_TYPE = "MiniServiceRelease"
ARCHIVED_SIGNAL = "mark_archived"
STILL_STARTING = "the mini service version is still starting; ask again in a moment"


@workflow.defn(name=WORKFLOW_TYPE)
class MiniServiceRelease:
    def __init__(self) -> None:
        self._core: CommandCore[
            MiniServiceState, ServiceEffects, ServiceStatus, ServiceAuditEntry,
            ServiceTransitionResult,
        ] = CommandCore(MINI_SERVICE, self, audit_entry=audit_entry,
                        metric="mpr_mini_service_commands", still_starting=STILL_STARTING)

    @workflow.run
    async def run(self, request: Any, carried: Any = None) -> MiniServiceStatus:
        if carried is not None:
            self._core.resume(carried, MiniServiceState, ServiceAuditEntry)
        else:
            await self._begin(request)
        self._publish_search_attributes()
        while self.state.status not in FINAL_STATUSES:
            await workflow.wait_condition(
                lambda: self.state.status in FINAL_STATUSES
                or workflow.info().is_continue_as_new_suggested()
            )
            if self.state.status not in FINAL_STATUSES:
                # The next run takes the carried state; its start input keeps no token.
                await self._core.continue_as_new(
                    split_token(request)[0] if isinstance(request, dict) else request)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.answer()

    @property
    def state(self) -> MiniServiceState:
        return self._core.state

    # --- queries ------------------------------------------------------------------------

    @workflow.query
    def status(self) -> MiniServiceStatus:
        return self.answer()

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

    # --- the process --------------------------------------------------------------------

    async def _begin(self, raw: Any) -> None:
        verified = workflow.patched(VERIFIED_IDENTITY)
        sent, token = split_token(raw) if isinstance(raw, dict) else (raw, None)
        if isinstance(sent, Undecryptable):
            raise ApplicationError(sent.reason("the start input"), type="InvalidStartInput")
        try:
            request = ServiceStart.model_validate(sent if verified else raw)
        except ValidationError as error:
            raise ApplicationError(f"invalid start input: {describe(error)}",
                                   type="InvalidStartInput") from None
        if not verified and request.created_by is None:
            raise ApplicationError("invalid start input: created_by: required field missing",
                                   type="InvalidStartInput")
        expected = mini_service_id(request.super_app, request.version_no)
        if workflow.info().workflow_id != expected:
            raise ApplicationError(
                f"workflow id must be {expected!r} for this input, "
                f"got {workflow.info().workflow_id!r}", type="InvalidStartInput")
        if verified:
            subject = await self._core.verified_starter(
                token, request.created_by,
                lambda check: self._authenticate(request.super_app, check))
            request = request.model_copy(update={"created_by": subject})
        try:
            context = await catalog_read(
                MiniServiceCatalogActivities.load_service_context, request.super_app)
        except CatalogRefused as refused:
            raise ApplicationError(refused.message, type="InvalidStartInput") from None
        self._core.begin(start_service(request, context.grayscale_ladder, workflow.now()))
        await self._core.record_start("create", request.creator, self.state)

    @workflow.signal(name=ARCHIVED_SIGNAL)
    async def mark_archived(self, *args: Any) -> None:
        """A newer version was released. The catalog, not the sender, is believed: this
        message between workflows carries no user's identity."""
        await workflow.wait_condition(lambda: self._core.started)
        await self._core.change_by_system("archive", self._archived_if_confirmed)

    async def _archived_if_confirmed(
        self, state: MiniServiceState
    ) -> Accepted[MiniServiceState, ServiceEffects] | None:
        if state.status is not ServiceStatus.RELEASED:
            return None
        confirmed = await catalog_read(
            MiniServiceCatalogActivities.is_service_archived,
            ServiceVersionRef(super_app=state.super_app, version_no=state.version_no))
        return Accepted(archived(state, workflow.now()), ServiceEffects()) if confirmed else None

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

    # --- what the command core asks of a mini service version ---------------------------

    async def authenticate(
        self, state: MiniServiceState, check: IdentityCheck
    ) -> IdentityVerdict:
        return await self._authenticate(state.super_app, check)

    async def _authenticate(self, super_app: str, check: IdentityCheck) -> IdentityVerdict:
        return await catalog_read(
            MiniServiceCatalogActivities.authenticate_service_actor,
            ServiceAuthentication(identity_token=check.identity_token,
                                  claimed_actor=check.claimed_actor,
                                  received_at=check.received_at, super_app=super_app))

    async def load_roles(self, state: MiniServiceState, actor: str) -> frozenset[Role]:
        roles = await catalog_activity(
            MiniServiceCatalogActivities.load_service_roles,
            ServiceRolesRequest(super_app=state.super_app, actor=actor))
        return frozenset(roles)

    async def write(
        self, change: Change[MiniServiceState, ServiceEffects]
    ) -> ServiceTransitionResult:
        before, after = change.before, change.after
        event = ServiceEvent(
            event_id=change.event_id, super_app=after.super_app, version_no=after.version_no,
            seq=change.seq, command=change.command, actor=change.actor,
            claimed_actor=change.claimed_actor,
            accepted=change.accepted, reason=change.reason,
            status_before=before.status, status_after=after.status, payload=change.payload,
            at=change.at)
        row = ServiceRow(
            super_app=after.super_app, version_no=after.version_no, status=after.status,
            percent=after.percent, content=after.content, testers=after.testers,
            created_by=after.created_by, duplicated_from=after.duplicated_from, at=change.at)
        promote = change.effects.promote if change.effects else False
        return await catalog_activity(
            MiniServiceCatalogActivities.record_service_transition,
            ServiceTransition(event=event, row=row if change.accepted else None,
                              promote=promote))

    def settle(
        self, state: MiniServiceState, result: ServiceTransitionResult, at: datetime
    ) -> MiniServiceState:
        """Every write answers with the super app's versions: keep them for `history`."""
        if not result.history:
            return state
        return state.model_copy(update={"history": result.history, "history_as_of": at})

    def adopted(self, before: MiniServiceState, after: MiniServiceState) -> None:
        if after.status != before.status or after.percent != before.percent:
            workflow.logger.info("mini service moved", extra={
                "status": after.status, "percent": after.percent,
                "previous_status": before.status})
            self._publish_search_attributes()

    async def carry_out(self, effects: ServiceEffects, result: ServiceTransitionResult) -> None:
        if result.archived_version is not None:
            await self._tell_archived(result.archived_version)

    def answer(self) -> MiniServiceStatus:
        return self.state.status_view(self._core.ledger)

    def _publish_search_attributes(self) -> None:
        workflow.upsert_search_attributes([
            sa.TARGET_APP.value_set(self.state.super_app),
            sa.MINI_SERVICE_STATUS.value_set(self.state.status.value),
            sa.GRAYSCALE_PERCENT.value_set(self.state.percent),
        ])


def audit_entry(*, before: ServiceStatus, after: ServiceStatus, **fields: Any) -> ServiceAuditEntry:
    return ServiceAuditEntry(status_before=before, status_after=after, **fields)
