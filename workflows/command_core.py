"""The command machinery every lifecycle workflow shares.

Operator commands arrive as a signal (tctl) or an update (temporal CLI, services) of the same
name; both run `CommandCore.handle`, one command at a time:

    take the payload's identity token -> verify it and load the subject's roles (one
        activity) -> parse the payload as sent by the subject -> decide (the lifecycle's rule
        table) -> record the event in the catalog (one idempotent transaction) -> commit

A refusal at any step is recorded like an accepted command and changes nothing; a refusal for
a missing or bad identity records no actor and keeps who the payload claimed to be apart.
Arguments are taken raw: the SDK drops a signal whose payload it cannot decode into a
handler's type, so decoding happens in the domain, where a bad payload (one the worker could
not decrypt included) becomes a recorded refusal.

Histories recorded before identities were verified replay through the path they took then
(`workflow.patched(VERIFIED_IDENTITY)`): the payload's `actor` and its roles.

The workflow supplies what is its own through `Process`: how to load roles, how to write an
event to its catalog, what to do once a new state is adopted, and what an accepted command
answers. The core keeps the state and, beside it, the audit ledger.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from mpr.domain.core.commands import Command, ParseFailure, Undecryptable
    from mpr.domain.core.identity import (
        IdentityCheck,
        IdentityVerdict,
        actor_refusal,
        claimed_actor,
        split_token,
    )
    from mpr.domain.core.ledger import Carried, Ledger
    from mpr.domain.core.models import LastRejection, Role
    from mpr.domain.core.redaction import redact
    from mpr.domain.core.rules import Accepted, Lifecycle, Rejected

COMMAND_REJECTED = "CommandRejected"
START_REFUSED = "InvalidStartInput"
# Commands and starts carry a verified identity from this change on (docs/changing-workflows.md).
VERIFIED_IDENTITY = "verified-identity"
# Catalog reads (identity and roles, a release's context) run as local activities from this
# change on (docs/changing-workflows.md).
LOCAL_CATALOG_READS = "local-catalog-reads"

# Catalog reads and writes wait out a database outage rather than give up: the workflow
# simply pauses.
CATALOG_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["UnknownTargetApp"],
)
CATALOG_TIMEOUT = timedelta(seconds=30)
# A local activity retries inside its workflow task, which holds back queries and new commands
# until the task ends; past a second's backoff it waits on a timer instead, with the task
# closed, so a release waiting out an outage still answers `status` and takes commands in.
CATALOG_LOCAL_RETRY_THRESHOLD = timedelta(seconds=1)

P = TypeVar("P")
T = TypeVar("T")


class CatalogRefused(ApplicationError):
    """The catalog refused a call outright (retrying would repeat the refusal); the message
    is its reason."""


async def catalog_read(activity: Callable[[Any, P], Awaitable[T]], argument: P) -> T:
    """Run a catalog read (milliseconds of database work, no writes) as a local activity: the
    worker runs it inside the workflow task, where a regular activity costs a round trip
    through the server and one more workflow task; in histories recorded before
    `LOCAL_CATALOG_READS`, as a regular activity. Either way it is retried without limit
    through a database outage, and a refusal raises CatalogRefused.

    Only reads: a local activity runs before its workflow task is committed, so if that task
    fails (a worker killed, a task timed out) its work is done again, and an update it was
    taking in is turned back to the client. A read done twice is harmless; a catalog write
    done for an update that was then turned back would be in the catalog and not in the
    release, which is why writes stay regular activities (`catalog_activity`), scheduled by
    the workflow task that accepts the command."""
    try:
        if workflow.patched(LOCAL_CATALOG_READS):
            return await workflow.execute_local_activity_method(
                activity, argument, start_to_close_timeout=CATALOG_TIMEOUT,
                retry_policy=CATALOG_RETRY,
                local_retry_threshold=CATALOG_LOCAL_RETRY_THRESHOLD)
        return await workflow.execute_activity_method(
            activity, argument, start_to_close_timeout=CATALOG_TIMEOUT,
            retry_policy=CATALOG_RETRY)
    except ActivityError as error:
        raise CatalogRefused(failure_message(error), type=_error_type(error)) from None


async def catalog_activity(activity: Callable[[Any, P], Awaitable[T]], argument: P) -> T:
    """Run a catalog call as a regular activity (every write: see catalog_read for why),
    retried without limit through a database outage; a refusal raises CatalogRefused."""
    try:
        return await workflow.execute_activity_method(
            activity, argument, start_to_close_timeout=CATALOG_TIMEOUT,
            retry_policy=CATALOG_RETRY)
    except ActivityError as error:
        raise CatalogRefused(failure_message(error), type=_error_type(error)) from None


S = TypeVar("S", bound=BaseModel)
E = TypeVar("E")
StageT = TypeVar("StageT", bound=StrEnum)
EntryT = TypeVar("EntryT", bound=BaseModel)
EntryT_co = TypeVar("EntryT_co", bound=BaseModel, covariant=True)
R = TypeVar("R", bound="CatalogOutcome")


class CatalogOutcome(Protocol):
    """What the core needs of a catalog write's result."""

    @property
    def applied(self) -> bool: ...

    def refusal(self) -> str:
        """Why the catalog refused the change, when it did not apply it."""
        ...


@dataclass(frozen=True)
class Change(Generic[S, E]):
    """One event to write: a command (accepted or refused) or a change made by the system."""

    event_id: str
    seq: int
    at: datetime
    command: str
    actor: str | None
    """The verified subject; None for a change by the system or a refused identity."""
    claimed_actor: str | None
    """Who a payload whose identity was refused claimed to be."""
    before: S
    after: S
    accepted: bool
    effects: E | None
    reason: str | None
    """Why it was refused, or what the operator should know of an accepted change."""
    payload: dict[str, Any] | None
    """The command's payload with personal data redacted."""


class Process(Protocol[S, E, R]):
    """What a lifecycle workflow does in its own way."""

    async def authenticate(self, state: S, check: IdentityCheck) -> IdentityVerdict:
        """Verify a command's identity and load the subject's roles where it applies."""
        ...

    async def load_roles(self, state: S, actor: str) -> frozenset[Role]:
        """The roles of a payload's `actor`: only for replaying histories recorded before
        identities were verified."""
        ...

    async def write(self, change: Change[S, E]) -> R: ...

    def settle(self, state: S, result: R, at: datetime) -> S:
        """The state to keep once the catalog answered the write of an event made `at` (it may
        report facts the state shows, such as the other versions of a mini service)."""
        ...

    def adopted(self, before: S, after: S) -> None:
        """A new state was committed (publish search attributes, count, log)."""
        ...

    async def carry_out(self, effects: E, result: R) -> None:
        """What an accepted command still needs once its new state is committed."""
        ...

    def answer(self) -> Any:
        """What an accepted update answers (the `status` view)."""
        ...


class AuditEntryOf(Protocol[EntryT_co]):
    """Builds a lifecycle's audit entry (whose stage fields have the lifecycle's own names)."""

    def __call__(
        self, *, seq: int, event_id: str, command: str, actor: str | None,
        claimed_actor: str | None, accepted: bool, reason: str | None, before: Any,
        after: Any, at: datetime,
    ) -> EntryT_co: ...


class CommandCore(Generic[S, E, StageT, EntryT, R]):
    def __init__(
        self,
        lifecycle: Lifecycle[S, E, StageT],
        process: Process[S, E, R],
        *,
        audit_entry: AuditEntryOf[EntryT],
        metric: str,
        still_starting: str,
    ) -> None:
        self._lifecycle = lifecycle
        self._process = process
        self._audit_entry = audit_entry
        self._still_starting = still_starting
        self._state: S | None = None
        self._ledger: Ledger[EntryT] = Ledger()
        # Commands and changes made by finished work apply one at a time.
        self._lock = asyncio.Lock()
        self._commands = workflow.metric_meter().create_counter(
            metric, "Commands received, by name and outcome"
        )
        for name in lifecycle.rules:
            workflow.set_signal_handler(name, self._signal_handler(name))
            workflow.set_update_handler(name, self._update_handler(name))
        workflow.set_dynamic_signal_handler(self._unknown_signal)

    # --- state --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._state is not None

    @property
    def state(self) -> S:
        if self._state is None:
            raise ApplicationError(self._still_starting)
        return self._state

    @property
    def ledger(self) -> Ledger[EntryT]:
        if self._state is None:
            raise ApplicationError(self._still_starting)
        return self._ledger

    def begin(self, state: S) -> None:
        """Adopt the first state of a new workflow: commands may run from now on."""
        self._state = state

    async def verified_starter(
        self,
        token: Any,
        claimed: str | None,
        verify: Callable[[IdentityCheck], Awaitable[IdentityVerdict]],
    ) -> str:
        """Who starts the workflow: the verified subject of the start input's token, holding
        one of the lifecycle's start roles. Otherwise the start fails with the reason and
        writes nothing."""
        verdict = await verify(IdentityCheck(identity_token=token, claimed_actor=claimed,
                                             received_at=workflow.now()))
        refusal = actor_refusal(verdict, claimed)
        if refusal is None and verdict.subject is not None:
            rejected = self._lifecycle.may_start(verdict.subject, frozenset(verdict.roles))
            refusal = rejected.reason if rejected else None
        if refusal is not None or verdict.subject is None:
            workflow.logger.warning("start refused", extra={"reason": refusal})
            raise ApplicationError(f"start refused: {refusal}", type=START_REFUSED)
        return verdict.subject

    async def record_start(self, name: str, actor: str, state: S) -> R:
        """Record the event that started the workflow."""
        result, _ = await self._write(name, actor, state, state, accepted=True, effects=None,
                                      reason=None, payload=None)
        return result

    def resume(self, carried: Any, state_type: type[S], entry_type: type[EntryT]) -> None:
        """Adopt the state and ledger the previous run handed over through continue-as-new.

        Only a run that continued as new takes them: a start that brings a state of its own
        (copied from a history and edited, say) would begin past the build and the review.
        """
        if workflow.info().continued_run_id is None:
            raise ApplicationError(
                "invalid start input: a carried state is taken only by a run that continued "
                "as new; start with the request alone", type="InvalidStartInput")
        if isinstance(carried, Undecryptable):
            # Not a refusal: the state is the workflow's own. The task fails, loudly, until
            # the key is back in MPR_PAYLOAD_KEYS (docs/security.md).
            raise RuntimeError(carried.reason("the carried state") + ": restore its key")
        try:
            handed = Carried.read(carried, state_type, entry_type)
        except ValueError as error:
            raise ApplicationError(f"invalid carried state: {error}",
                                   type="InvalidStartInput") from None
        self._state = handed.state
        self._ledger = handed.ledger

    def observe(self, seen: S) -> None:
        """Adopt what the workflow read again from its catalog while taking a command in (its
        `authenticate`): facts, not a decision, so nothing is recorded."""
        self._commit(seen)

    async def refresh(self, read: Callable[[S], Awaitable[S]]) -> None:
        """Read the catalog again between commands, one at a time with them (a message from
        another workflow said it changed): facts, not a decision, so nothing is recorded."""
        async with self._lock:
            self._commit(await read(self.state))

    def _commit(self, after: S) -> None:
        before = self.state
        self._state = after
        self._process.adopted(before, after)

    async def continue_as_new(self, request: Any) -> None:
        # Let in-flight commands finish so none is lost between runs.
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.logger.info("continuing as new",
                             extra={"stage": self._lifecycle.stage_of(self.state)})
        workflow.continue_as_new(
            args=[request, Carried(state=self.state, ledger=self._ledger).payload()])

    # --- commands -----------------------------------------------------------------------

    async def handle(self, name: str, args: Sequence[Any]) -> LastRejection | None:
        """Run one command; returns the refusal, or None when it was accepted."""
        # Its token is judged at the time the workflow took the command in: not later, once
        # the commands before it (waiting out a database outage, say) have let it through.
        received_at = workflow.now()
        await workflow.wait_condition(lambda: self.started)
        async with self._lock:
            try:
                refusal = await self._apply(name, tuple(args), received_at)
            except CatalogRefused as refused:
                # The catalog refused outright (it retries outages by itself): the command
                # cannot be carried out, and the workflow stays as it was.
                reason = f"the catalog could not take {name}: {refused.message}"
                workflow.logger.error("command failed in the catalog",
                                      extra={"command": name, "reason": reason})
                refusal = self._remember_refusal(name, None, reason)
        self._commands.add(1, {
            "command": name if name in self._lifecycle.rules else "unknown",
            "outcome": "accepted" if refusal is None else "refused",
        })
        return refusal

    async def _apply(
        self, name: str, args: tuple[Any, ...], received_at: datetime
    ) -> LastRejection | None:
        if not workflow.patched(VERIFIED_IDENTITY):
            return await self._apply_as_claimed(name, args)
        try:
            sent = self._lifecycle.payload_of(name, args)
        except ParseFailure as failure:
            return await self._refuse(name, None, failure.reason, None)
        payload, token = split_token(sent)
        claimed = claimed_actor(payload)
        verdict = await self._process.authenticate(
            self.state, IdentityCheck(identity_token=token, claimed_actor=claimed,
                                      received_at=received_at))
        refusal = actor_refusal(verdict, claimed)
        if refusal is not None or verdict.subject is None:
            return await self._refuse(name, None, refusal or "", payload, claimed=claimed)
        subject = verdict.subject
        try:
            command = self._lifecycle.parse(name, ({**payload, "actor": subject},))
        except ParseFailure as failure:
            return await self._refuse(name, subject, failure.reason, payload)
        return await self._decide(name, command, frozenset(verdict.roles), payload)

    async def _apply_as_claimed(self, name: str, args: tuple[Any, ...]) -> LastRejection | None:
        """How commands were taken before identities were verified (replay only)."""
        payload = args[0] if len(args) == 1 and isinstance(args[0], dict) else None
        try:
            command = self._lifecycle.parse(name, args)
        except ParseFailure as failure:
            return await self._refuse(name, failure.actor, failure.reason, payload)
        if command.actor is None:  # required then
            return await self._refuse(name, None, f"invalid {name} payload: actor: required "
                                      "field missing", payload)
        roles = await self._process.load_roles(self.state, command.actor)
        return await self._decide(name, command, roles, payload)

    async def _decide(
        self, name: str, command: Command, roles: frozenset[Role],
        payload: dict[str, Any] | None,
    ) -> LastRejection | None:
        before = self.state
        decision = self._lifecycle.decide(before, command, roles, workflow.now())
        if isinstance(decision, Rejected):
            return await self._refuse(name, command.actor, decision.reason, payload)
        result, at = await self._record(name, command.actor, decision, payload=payload)
        if not result.applied:
            # The catalog refused the move (e.g. another version holds the channel) and has
            # recorded the refusal itself.
            return self._remember_refusal(name, command.actor, result.refusal())
        self._commit(self._process.settle(decision.state, result, at))
        await self._process.carry_out(decision.effects, result)
        return None

    async def change_by_system(
        self, name: str, change: Callable[[S], Awaitable[Accepted[S, E] | None]]
    ) -> R | None:
        """Apply a change caused by finished work or another workflow, unless `change` finds
        there is nothing to do (None): a command may have moved on meanwhile."""
        async with self._lock:
            decision = await change(self.state)
            if decision is None:
                return None
            result, at = await self._record(name, None, decision)
            self._commit(self._process.settle(decision.state, result, at))
            return result

    async def _refuse(
        self, name: str, actor: str | None, reason: str, payload: dict[str, Any] | None,
        *, claimed: str | None = None,
    ) -> LastRejection:
        state = self.state
        await self._write(name, actor, state, state, accepted=False, effects=None,
                          reason=reason, payload=payload, claimed=claimed)
        workflow.logger.info("command refused", extra={"command": name, "reason": reason})
        return self._remember_refusal(name, actor, reason, claimed=claimed)

    def _remember_refusal(
        self, name: str, actor: str | None, reason: str, *, claimed: str | None = None
    ) -> LastRejection:
        rejection = LastRejection(command=name, actor=actor, claimed_actor=claimed,
                                  reason=reason, at=workflow.now())
        self._ledger = self._ledger.refused(rejection)
        return rejection

    # --- recording ----------------------------------------------------------------------

    async def _record(
        self,
        name: str,
        actor: str | None,
        decision: Accepted[S, E],
        *,
        payload: dict[str, Any] | None = None,
    ) -> tuple[R, datetime]:
        """Write an accepted change to the catalog and the ledger (not yet committed); the
        catalog's answer, and the time of the event."""
        return await self._write(name, actor, self.state, decision.state, accepted=True,
                                 effects=decision.effects, reason=decision.note,
                                 payload=payload)

    async def _write(
        self,
        name: str,
        actor: str | None,
        before: S,
        after: S,
        *,
        accepted: bool,
        effects: E | None,
        reason: str | None,
        payload: dict[str, Any] | None,
        claimed: str | None = None,
    ) -> tuple[R, datetime]:
        change = Change(
            event_id=str(workflow.uuid4()), seq=self._ledger.next_seq, at=workflow.now(),
            command=name, actor=actor, claimed_actor=claimed, before=before, after=after,
            accepted=accepted, effects=effects, reason=reason, payload=redact(payload),
        )
        result = await self._process.write(change)
        if self._state is not None:
            self._state = self._process.settle(self._state, result, change.at)
        applied = accepted and result.applied
        stage_of = self._lifecycle.stage_of
        entry = self._audit_entry(
            seq=change.seq, event_id=change.event_id, command=name, actor=actor,
            claimed_actor=claimed, accepted=applied,
            reason=reason if result.applied else result.refusal(),
            before=stage_of(before), after=stage_of(after) if applied else stage_of(before),
            at=change.at,
        )
        self._ledger = self._ledger.recorded(entry, change.seq)
        return result, change.at

    # --- handlers -----------------------------------------------------------------------

    def _signal_handler(self, name: str) -> Callable[..., Awaitable[None]]:
        async def on_signal(*args: Any) -> None:
            await self.handle(name, args)

        return on_signal

    def _update_handler(self, name: str) -> Callable[..., Awaitable[Any]]:
        """The update answers with the status view, or fails with the refusal's reason (type
        CommandRejected), so callers learn synchronously."""

        async def on_update(*args: Any) -> Any:
            refusal = await self.handle(name, args)
            if refusal is not None:
                details = {"command": name,
                           self._lifecycle.stage_word: self._lifecycle.stage_of(self.state)}
                raise ApplicationError(refusal.reason, details, type=COMMAND_REJECTED,
                                       non_retryable=True)
            return self._process.answer()

        return on_update

    async def _unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """A mistyped signal name is recorded as a refused command instead of vanishing."""
        await self.handle(name, ())


def _error_type(error: ActivityError) -> str | None:
    return error.cause.type if isinstance(error.cause, ApplicationError) else None


def failure_message(error: ActivityError) -> str:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or error)
