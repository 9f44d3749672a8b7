"""The channel client library: what a service imports to act on a live mini program.

    from starters.channels import ChannelClient, ChannelCommandRefused
    from mpr.domain.channel.models import ChannelKey

    channels = await ChannelClient.connect()
    key = ChannelKey(mini_program_id="coffee-shop", target_app="gopay")
    status = await channels.command(key, "rollback", {"reason": "checkout crashes"})
    status.stable_version                     # the version served again
    await channels.command(key, "take_offline", {"reason": "fraud report"})

Every command carries the caller's identity token (mpr.infra.tokens, or `token=`), whose
subject is the actor. Commands go as update-with-start: a channel whose workflow is not running
yet (a mini program that went live before channels existed) is started from the catalog by the
same call, so the emergency brake works on every live program. Queries (`status`, `versions`)
need the workflow; `list` reads the visibility store.

Failures are `starters.errors.ClientError`s, each channel error a subclass of the neutral one
(ChannelNotFound of WorkflowNotFound, ChannelCommandRefused of WorkflowRefused, ...).
"""

import re
from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowExecutionDescription
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.converter import decode_typed_search_attributes

from mpr.domain.channel.models import ChannelKey, ChannelStart, ChannelVersions
from mpr.domain.channel.rules import CHANNEL
from mpr.domain.channel.stages import ChannelState
from mpr.domain.channel.state import ChannelStatus
from mpr.domain.core.commands import Command
from mpr.domain.core.models import IDENTIFIER
from mpr.infra.settings import DEFAULT_TASK_QUEUE, Settings
from mpr.infra.tokens import TokenProvider, token_provider
from starters.errors import (
    ClientError,
    WorkflowFailed,
    WorkflowFinished,
    WorkflowNotFound,
    WorkflowRefused,
    WorkflowStarting,
)
from starters.workflow_access import (
    STARTING_GRACE_SECONDS,
    WorkflowAccess,
    command_payload,
    connect_client,
)
from workflows import search_attributes as sa
from workflows.channel import STILL_STARTING, WORKFLOW_TYPE


class ChannelClientError(ClientError):
    """Base of the failures only the channel client reports."""


class ChannelNotFound(ChannelClientError, WorkflowNotFound):
    def __init__(self, workflow_id: str, namespace: str = "default") -> None:
        super().__init__(
            f"no channel workflow {workflow_id} in namespace {namespace}: it starts when a "
            "version is released on the channel, or with the first command sent to it",
            workflow_id)


class ChannelFinished(ChannelClientError, WorkflowFinished):
    def __init__(self, workflow_id: str, description: WorkflowExecutionDescription) -> None:
        status = description.status.name if description.status else "closed"
        super().__init__(f"channel workflow {workflow_id} is {status}: send a command to "
                         "start it again from the catalog", workflow_id)


class ChannelFailed(ChannelClientError, WorkflowFailed):
    """The channel could not start: in practice the mini program is not in the catalog."""

    def __init__(self, workflow_id: str, reason: str) -> None:
        super().__init__(f"channel {workflow_id} failed: {reason}", workflow_id, reason)


class ChannelStarting(ChannelClientError, WorkflowStarting):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"channel {workflow_id}: {STILL_STARTING}", workflow_id)


class ChannelCommandRefused(ChannelClientError, WorkflowRefused):
    def __init__(self, workflow_id: str, command: str, reason: str,
                 details: Mapping[str, Any]) -> None:
        state = details.get(CHANNEL.stage_word)
        super().__init__(f"{command} refused in {state or 'an unknown state'}: {reason}",
                         workflow_id, command, reason)
        self.state = state


class ChannelChange(BaseModel):
    """What a channel serves, as its search attributes recorded it at `at`."""

    state: ChannelState
    stable_version: str | None
    at: datetime


def channel_change(event: HistoryEvent, previous: ChannelChange | None) -> ChannelChange | None:
    """The state an event records: an upsert of the channel's search attributes (each upsert
    carries them all, so `previous` is not needed)."""
    if event.event_type != EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
        return None
    attributes = decode_typed_search_attributes(
        event.upsert_workflow_search_attributes_event_attributes.search_attributes)
    state = attributes.get(sa.CHANNEL_STATE)
    if state is None:
        return None
    return ChannelChange(state=ChannelState(state),
                         stable_version=attributes.get(sa.STABLE_VERSION),
                         at=event.event_time.ToDatetime(tzinfo=UTC))


class ChannelSummary(BaseModel):
    """One channel as the visibility store lists it (no worker involved)."""

    channel_id: str
    mini_program_id: str | None
    target_app: str | None
    environment: str | None
    state: str | None
    stable_version: str | None
    started_at: datetime | None


class ChannelClient:
    def __init__(self, client: Client, task_queue: str = DEFAULT_TASK_QUEUE, *,
                 token: TokenProvider | None = None,
                 starting_grace: float = STARTING_GRACE_SECONDS) -> None:
        """`client` must use infra.temporal.data_converter(settings); `token` gives the
        caller's identity token for every command."""
        self._client = client
        self.task_queue = task_queue
        self._access = WorkflowAccess(
            client, still_starting=STILL_STARTING, starting_grace=starting_grace,
            not_found=ChannelNotFound, finished=ChannelFinished, failed=ChannelFailed,
            starting=ChannelStarting, refused=ChannelCommandRefused,
            token=token or token_provider())

    @classmethod
    async def connect(cls, settings: Settings | None = None, *,
                      token: TokenProvider | None = None) -> "ChannelClient":
        settings = settings or Settings.from_env()
        return cls(await connect_client(settings), settings.task_queue, token=token)

    async def command(self, key: ChannelKey, name: str,
                      payload: Mapping[str, Any] | Command) -> ChannelStatus:
        """Send `rollback`, `take_offline` or `bring_online` as an update, starting the
        channel's workflow first if it has none; the status it was accepted in."""
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            WORKFLOW_TYPE, ChannelStart(**key.model_dump()).model_dump(mode="json"),
            id=key.workflow_id, task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        status: ChannelStatus = await self._access.update(
            key.workflow_id, name, command_payload(CHANNEL.commands, name, payload),
            ChannelStatus, start=start)
        return status

    async def status(self, key: ChannelKey) -> ChannelStatus:
        status: ChannelStatus = await self._access.query(key.workflow_id, "status",
                                                         ChannelStatus)
        return status

    async def versions(self, key: ChannelKey) -> ChannelVersions:
        versions: ChannelVersions = await self._access.query(key.workflow_id, "versions",
                                                             ChannelVersions)
        return versions

    async def changes(self, key: ChannelKey) -> AsyncGenerator[ChannelChange, None]:
        """What the channel serves now, then every change as it is recorded, following
        continue-as-new, for as long as the channel runs (ChannelFinished if it is stopped)."""
        workflow_id = key.workflow_id
        last: ChannelChange | None = None
        while True:
            run = await self._access.describe(workflow_id)
            async for change in self._access.run_positions(workflow_id, run, channel_change):
                if last is None or (change.state, change.stable_version) != (
                        last.state, last.stable_version):
                    last = change
                    yield change
            latest = await self._access.describe(workflow_id)
            if latest.run_id == run.run_id:
                await self._access.raise_if_failed(workflow_id, latest)
                raise ChannelFinished(workflow_id, latest)
            # Otherwise the run continued as new: follow the next one.

    async def list(self, *, mini_program_id: str | None = None,
                   state: ChannelState | str | None = None,
                   limit: int = 100) -> list[ChannelSummary]:
        """Running channels matching the filters, from the visibility store."""
        query = channel_query(mini_program_id=mini_program_id, state=state)
        found = []
        async with self._access.errors(None):
            async for execution in self._client.list_workflows(query, limit=limit):
                attributes = execution.typed_search_attributes
                found.append(ChannelSummary(
                    channel_id=execution.id,
                    mini_program_id=attributes.get(sa.MINI_PROGRAM_ID),
                    target_app=attributes.get(sa.TARGET_APP),
                    environment=attributes.get(sa.RELEASE_ENVIRONMENT),
                    state=attributes.get(sa.CHANNEL_STATE),
                    stable_version=attributes.get(sa.STABLE_VERSION),
                    started_at=execution.start_time))
        return found


def channel_query(*, mini_program_id: str | None = None,
                  state: ChannelState | str | None = None) -> str:
    """The visibility query for running channels matching every filter given."""
    clauses = [f"WorkflowType = '{WORKFLOW_TYPE}'", "ExecutionStatus = 'Running'"]
    if mini_program_id is not None:
        if not re.fullmatch(IDENTIFIER, mini_program_id):
            raise ValueError(f"{mini_program_id!r} is not a valid mini program id")
        clauses.append(f"{sa.MINI_PROGRAM_ID.name} = '{mini_program_id}'")
    if state is not None:
        clauses.append(f"{sa.CHANNEL_STATE.name} = '{ChannelState(state).value}'")
    return " AND ".join(clauses)
