"""What the release and mini service clients share: the connection, and talking to one
workflow by its id.

`WorkflowAccess` runs queries, updates, signals and descriptions and turns the failures a
caller can act on into typed errors (starters.errors). It knows nothing of releases or mini
services: each client gives it the message its workflow answers queries with while it starts,
and the errors to raise (factories of its own subclasses of the neutral errors, so that each
client words them, and reads what a finished one carries, its own way).
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from mpr.domain.core.commands import Command
from mpr.domain.core.identity import TOKEN_FIELD
from mpr.infra import temporal
from mpr.infra.settings import Settings
from mpr.infra.temporal import connect
from mpr.infra.tokens import TokenProvider
from starters.errors import (
    TemporalUnreachable,
    WorkflowFailed,
    WorkflowFinished,
    WorkflowNotFound,
    WorkflowRefused,
    WorkflowStarting,
)
from workflows.command_core import COMMAND_REJECTED

P = TypeVar("P")

STARTING_GRACE_SECONDS = 10.0
STARTING_POLL_SECONDS = 0.1


async def connect_client(settings: Settings) -> Client:
    """A client as `settings` say; TemporalUnreachable when the server is not up."""
    try:
        return await connect(settings)
    except temporal.TemporalUnreachable as error:
        raise TemporalUnreachable(error.address, error.reason) from None


def command_payload(commands: Mapping[str, type[Command]], name: str,
                    payload: Mapping[str, Any] | Command) -> dict[str, Any]:
    """The payload of command `name`, one of `commands`: ValueError for an unknown command,
    TypeError for a Command model of another command."""
    if name not in commands:
        raise ValueError(f"unknown command {name!r}; known commands: {', '.join(commands)}")
    if isinstance(payload, Command):
        if not isinstance(payload, commands[name]):
            raise TypeError(f"{name} takes a {commands[name].__name__}, "
                            f"not a {type(payload).__name__}")
        # Only what was set: an absent field of a config patch means "keep", not "clear".
        return payload.model_dump(mode="json", exclude_unset=True)
    return dict(payload)


class WorkflowAccess:
    def __init__(
        self,
        client: Client,
        *,
        still_starting: str,
        starting_grace: float,
        not_found: Callable[[str, str], WorkflowNotFound],
        finished: Callable[[str, WorkflowExecutionDescription], WorkflowFinished],
        failed: Callable[[str, str], WorkflowFailed],
        starting: Callable[[str], WorkflowStarting],
        refused: Callable[[str, str, str, Mapping[str, Any]], WorkflowRefused],
        token: TokenProvider,
    ) -> None:
        """`still_starting` is what the workflow's queries fail with until it has loaded its
        policy, and `starting_grace` how long queries wait that out. A server that does not
        answer is TemporalUnreachable; the other errors, by the arguments they are made with:

        - not_found(workflow_id, namespace): there is no such workflow;
        - finished(workflow_id, description): the workflow is closed;
        - failed(workflow_id, reason): the workflow failed;
        - starting(workflow_id): it is still starting once `starting_grace` has passed;
        - refused(workflow_id, command, reason, details): the workflow refused an update, with
          the details it gave ({} when none).

        `token` is called for every command and start: the identity token sent with it."""
        self._client = client
        self._token = token
        self.still_starting = still_starting
        self.starting_grace = starting_grace
        self._not_found = not_found
        self._finished = finished
        self._failed = failed
        self._starting = starting
        self._refused = refused

    @property
    def address(self) -> str:
        return self._client.service_client.config.target_host

    async def query(self, workflow_id: str, name: str, result_type: Any,
                    argument: Any = None) -> Any:
        """Run a query, waiting out the moment a new workflow spends loading its policy."""
        handle = self._client.get_workflow_handle(workflow_id)
        args = [] if argument is None else [argument]
        deadline = time.monotonic() + self.starting_grace
        while True:
            try:
                async with self.errors(workflow_id):
                    return await handle.query(name, *args, result_type=result_type)
            except WorkflowQueryFailedError as error:
                if self.still_starting not in error.message:
                    raise
            # A workflow whose start failed stays "starting" forever.
            await self.raise_if_failed(workflow_id, await self.describe(workflow_id))
            if time.monotonic() >= deadline:
                raise self._starting(workflow_id)
            await asyncio.sleep(STARTING_POLL_SECONDS)

    async def identity_token(self) -> str:
        """The caller's identity token now (TokenUnavailable when there is none)."""
        return await self._token()

    async def identified(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """`payload` with the caller's identity token."""
        return {**payload, TOKEN_FIELD: await self.identity_token()}

    async def update(self, workflow_id: str, name: str, payload: dict[str, Any],
                     result_type: Any, *, start: WithStartWorkflowOperation[Any, Any] | None = None
                     ) -> Any:
        """Run an update; a refusal (COMMAND_REJECTED) raises the `refused` error. With
        `start`, the workflow is started first if it is not running (update-with-start)."""
        handle = self._client.get_workflow_handle(workflow_id)
        sent = await self.identified(payload)
        try:
            async with self.errors(workflow_id):
                if start is not None:
                    return await self._client.execute_update_with_start_workflow(
                        name, sent, start_workflow_operation=start, result_type=result_type)
                return await handle.execute_update(name, sent, result_type=result_type)
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            if not (isinstance(cause, ApplicationError) and cause.type == COMMAND_REJECTED):
                if start is not None:  # the workflow it started may have refused its input
                    await self.raise_if_failed(workflow_id, await self.describe(workflow_id))
                raise
            details = cause.details[0] if cause.details else {}
            if not isinstance(details, dict):
                details = {}
            raise self._refused(workflow_id, name, cause.message, details) from None

    async def run_positions(
        self, workflow_id: str, run: WorkflowExecutionDescription,
        position: Callable[[HistoryEvent, P | None], P | None],
    ) -> AsyncIterator[P]:
        """What one run's history records so far, as `position` reads it from an event (given
        the position before it; None for an event that records none), once it is read; then
        each new position it records, until the run closes."""
        handle = self._client.get_workflow_handle(workflow_id, run_id=run.run_id)
        latest: P | None = None
        caught_up = False
        async with self.errors(workflow_id):
            async for event in handle.fetch_history_events(wait_new_event=True,
                                                           skip_archival=True):
                found = position(event, latest)
                latest = found or latest
                if latest is None:
                    continue
                if not caught_up and event.event_id >= run.history_length:
                    caught_up = True
                    yield latest
                elif caught_up and found is not None:
                    yield found

    async def signal(self, workflow_id: str, name: str, payload: dict[str, Any]) -> None:
        sent = await self.identified(payload)
        async with self.errors(workflow_id):
            await self._client.get_workflow_handle(workflow_id).signal(name, sent)

    async def describe(self, workflow_id: str) -> WorkflowExecutionDescription:
        async with self.errors(workflow_id):
            return await self._client.get_workflow_handle(workflow_id).describe()

    async def raise_if_failed(self, workflow_id: str,
                              description: WorkflowExecutionDescription) -> None:
        if description.status is not WorkflowExecutionStatus.FAILED:
            return
        try:
            await self._client.get_workflow_handle(workflow_id, run_id=description.run_id).result()
        except WorkflowFailureError as failure:
            cause = failure.cause
            reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise self._failed(workflow_id, reason) from None
        raise self._failed(workflow_id, "the workflow failed")

    @asynccontextmanager
    async def errors(self, workflow_id: str | None) -> AsyncIterator[None]:
        """Turn the RPC errors a caller can act on into typed errors (NOT_FOUND only when the
        call was about one workflow)."""
        try:
            yield
        except RPCError as error:
            raise await self._translated(error, workflow_id) from None

    async def _translated(self, error: RPCError, workflow_id: str | None) -> Exception:
        if error.status is RPCStatusCode.UNAVAILABLE:
            return TemporalUnreachable(self.address, error.message)
        if error.status is not RPCStatusCode.NOT_FOUND or workflow_id is None:
            return error
        # NOT_FOUND means either "no such workflow" or "it has completed": ask which.
        try:
            description = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError as again:
            if again.status is RPCStatusCode.NOT_FOUND:
                return self._not_found(workflow_id, self._client.namespace)
            return again
        if description.status is WorkflowExecutionStatus.RUNNING:
            return error
        return self._finished(workflow_id, description)
