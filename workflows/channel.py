"""MiniProgramChannel: what one mini program serves on one target app and environment, after
go-live, for as long as it is served.

The channel waits for operators' commands (rollback, take_offline, bring_online) and continues
as new when Temporal suggests it, carrying a bounded state. It decides every command on the
channel as the catalog has it when the command arrives (read with the sender's identity, in
one local activity), so releases that went live meanwhile are never missed; the write applies
only to the channel revision it was decided on. A release reaching RELEASED starts the channel
or tells it to read the catalog again (`refresh`); a takedown cancels a release rolling out on
the channel by telling it so (`withdraw_by_channel`). Commands go through the shared command
core (`workflows.command_core`), which applies the rules of `mpr.domain.channel.rules`.
"""

from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.channel.catalog import ChannelCatalogActivities
    from activities.channel.notice import CHANNEL_WORKFLOW_TYPE, REFRESH_SIGNAL
    from mpr.domain.channel.models import (
        ChannelAuditEntry,
        ChannelAuthentication,
        ChannelStart,
        ChannelVersions,
        ChannelView,
    )
    from mpr.domain.channel.records import (
        ChannelEvent,
        ChannelTransition,
        ChannelTransitionResult,
    )
    from mpr.domain.channel.rules import CHANNEL, ChannelEffects
    from mpr.domain.channel.stages import ChannelState, TakedownKind
    from mpr.domain.channel.state import ChannelStatus, ChannelWorkflowState
    from mpr.domain.core.commands import Undecryptable, describe
    from mpr.domain.core.identity import IdentityCheck, IdentityVerdict, split_token
    from mpr.domain.core.models import Role
    from workflows import search_attributes as sa
    from workflows.command_core import (
        CatalogRefused,
        Change,
        CommandCore,
        catalog_activity,
        catalog_read,
    )

WORKFLOW_TYPE = CHANNEL_WORKFLOW_TYPE
# Temporal suggests continuing as new past its own limits (server settings); a channel also
# does at this history length, so that no server's settings let it grow past it.
CONTINUE_AS_NEW_AFTER_EVENTS = 10_000
WITHDRAW_SIGNAL = "withdraw_by_channel"
STILL_STARTING = "the channel is still starting (reading the catalog); ask again in a moment"


@workflow.defn(name=WORKFLOW_TYPE)
class MiniProgramChannel:
    # A class attribute so that a test can shorten it (tests/workflows/short_channel.py).
    continue_as_new_after_events = CONTINUE_AS_NEW_AFTER_EVENTS

    def __init__(self) -> None:
        self._core: CommandCore[
            ChannelWorkflowState, ChannelEffects, ChannelState, ChannelAuditEntry,
            ChannelTransitionResult,
        ] = CommandCore(CHANNEL, self, audit_entry=audit_entry, metric="mpr_channel_commands",
                        still_starting=STILL_STARTING)
        self._published: tuple[ChannelState, str | None] | None = None

    @workflow.run
    async def run(self, request: Any, carried: Any = None) -> None:
        if carried is not None:
            self._core.resume(carried, ChannelWorkflowState, ChannelAuditEntry)
        else:
            await self._begin(request)
        self._publish_search_attributes()
        # A channel is served for as long as its program is: it never finishes by itself.
        await workflow.wait_condition(self._time_to_continue)
        await self._core.continue_as_new(
            split_token(request)[0] if isinstance(request, dict) else request)

    @property
    def state(self) -> ChannelWorkflowState:
        return self._core.state

    def _time_to_continue(self) -> bool:
        info = workflow.info()
        return (info.is_continue_as_new_suggested()
                or info.get_current_history_length() >= self.continue_as_new_after_events)

    # --- queries ------------------------------------------------------------------------

    @workflow.query
    def status(self) -> ChannelStatus:
        return self.answer()

    @workflow.query
    def versions(self) -> ChannelVersions:
        return self.state.versions()

    # --- the process --------------------------------------------------------------------

    async def _begin(self, raw: Any) -> None:
        sent = split_token(raw)[0] if isinstance(raw, dict) else raw
        if isinstance(sent, Undecryptable):
            raise ApplicationError(sent.reason("the start input"), type="InvalidStartInput")
        try:
            request = ChannelStart.model_validate(sent)
        except ValidationError as error:
            raise ApplicationError(f"invalid start input: {describe(error)}",
                                   type="InvalidStartInput") from None
        key = request.key
        if workflow.info().workflow_id != key.workflow_id:
            raise ApplicationError(
                f"workflow id must be {key.workflow_id!r} for this input, "
                f"got {workflow.info().workflow_id!r}", type="InvalidStartInput")
        try:
            view = await catalog_read(ChannelCatalogActivities.load_channel, key)
        except CatalogRefused as refused:
            raise ApplicationError(refused.message, type="InvalidStartInput") from None
        if view is None:
            raise ApplicationError(
                f"mini program {key.mini_program_id} is not in the catalog: a channel opens "
                "once one of its releases has started", type="InvalidStartInput")
        self._core.begin(ChannelWorkflowState(key=key, view=view, view_as_of=workflow.now()))

    @workflow.signal(name=REFRESH_SIGNAL)
    async def refresh(self, *args: Any) -> None:
        """A release of the channel reached RELEASED: read the catalog again. The catalog,
        not the sender, is believed: this message between workflows carries no identity."""
        await workflow.wait_condition(lambda: self._core.started)
        released = args[0].get("release_id") if args and isinstance(args[0], dict) else None
        if released is not None and released == self.state.view.stable_release_id:
            # The view already serves it: a channel the notice started has just read it.
            return
        await self._core.refresh(self._reread)

    async def _reread(self, state: ChannelWorkflowState) -> ChannelWorkflowState:
        view = await catalog_read(ChannelCatalogActivities.load_channel, state.key)
        return state if view is None else state.seen(view, workflow.now())

    async def _withdraw(self, release_id: str, reason: str) -> None:
        release = workflow.get_external_workflow_handle(release_id)
        try:
            await release.signal(WITHDRAW_SIGNAL, {"reason": reason})
        except FailureError:
            # Its workflow may be gone (terminated by hand, say); the channel is offline, so
            # nothing is served whatever the release's row says.
            workflow.logger.warning("could not tell the release to withdraw",
                                    extra={"release_id": release_id})

    # --- what the command core asks of a channel ----------------------------------------

    async def authenticate(
        self, state: ChannelWorkflowState, check: IdentityCheck
    ) -> IdentityVerdict:
        verdict = await catalog_read(
            ChannelCatalogActivities.authenticate_channel_actor,
            ChannelAuthentication(identity_token=check.identity_token,
                                  claimed_actor=check.claimed_actor,
                                  received_at=check.received_at, key=state.key))
        if verdict.view is not None:
            self._core.observe(state.seen(verdict.view, workflow.now()))
        return verdict

    async def load_roles(self, state: ChannelWorkflowState, actor: str) -> frozenset[Role]:
        # Only histories recorded before identities were verified take this path, and the
        # channel came after that: none of its histories can.
        raise ApplicationError("a channel verifies every sender's identity")

    async def write(
        self, change: Change[ChannelWorkflowState, ChannelEffects]
    ) -> ChannelTransitionResult:
        before, after, effects = change.before, change.after, change.effects
        event = ChannelEvent(
            event_id=change.event_id, key=after.key, seq=change.seq, command=change.command,
            actor=change.actor, claimed_actor=change.claimed_actor,
            actor_kind=_actor_kind(before.view, effects), accepted=change.accepted,
            reason=change.reason, state_before=before.state, state_after=after.state,
            payload=change.payload, at=change.at)
        accepted = change.accepted and effects is not None
        return await catalog_activity(
            ChannelCatalogActivities.record_channel_transition,
            ChannelTransition(
                event=event,
                expected_revision=before.view.revision if accepted else None,
                rollback=effects.rollback if effects else None,
                takedown=effects.takedown if effects else None,
                online=effects.online if effects else False))

    def settle(
        self, state: ChannelWorkflowState, result: ChannelTransitionResult, at: datetime
    ) -> ChannelWorkflowState:
        """Every write answers with the channel as the catalog now has it."""
        return state if result.view is None else state.seen(result.view, at)

    def adopted(self, before: ChannelWorkflowState, after: ChannelWorkflowState) -> None:
        # Against what was published, not `before`: a write's answer (the catalog's view)
        # is settled into the state before the decision is adopted.
        if (after.state, after.view.stable_version) != self._published:
            workflow.logger.info("channel moved", extra={
                "state": after.state, "stable_version": after.view.stable_version,
                "previous_state": before.state})
            self._publish_search_attributes()

    async def carry_out(self, effects: ChannelEffects, result: ChannelTransitionResult) -> None:
        if effects.withdraw is not None and effects.takedown is not None:
            takedown = effects.takedown
            await self._withdraw(
                effects.withdraw.release_id,
                f"the channel was taken offline by {takedown.by} ({takedown.kind} takedown): "
                f"{takedown.reason}")

    def answer(self) -> ChannelStatus:
        return self.state.status_view(self._core.ledger)

    def _publish_search_attributes(self) -> None:
        key, view = self.state.key, self.state.view
        self._published = (view.state, view.stable_version)
        workflow.upsert_search_attributes([
            sa.MINI_PROGRAM_ID.value_set(key.mini_program_id),
            sa.TARGET_APP.value_set(key.target_app),
            sa.RELEASE_ENVIRONMENT.value_set(key.environment.value),
            sa.CHANNEL_STATE.value_set(view.state.value),
            sa.STABLE_VERSION.value_set(view.stable_version)
            if view.stable_version else sa.STABLE_VERSION.value_unset(),
        ])


def _actor_kind(view: ChannelView, effects: ChannelEffects | None) -> TakedownKind | None:
    """As which kind of actor a takedown was sent, or a takedown lifted."""
    if effects is None:
        return None
    if effects.takedown is not None:
        return effects.takedown.kind
    if effects.online and view.takedown is not None:
        return view.takedown.kind
    return None


def audit_entry(*, before: ChannelState, after: ChannelState, **fields: Any) -> ChannelAuditEntry:
    return ChannelAuditEntry(state_before=before, state_after=after, **fields)
