"""The release client library: what another Python service imports to drive releases.

    from mpr.domain.release.commands import ApplyRelease
    from mpr.domain.release.models import StartInput
    from mpr.domain.release.stages import Stage
    from starters.releases import CommandRefused, ReleaseClient

    releases = await ReleaseClient.connect()        # Settings.from_env(): address, task queue
    ref = await releases.start(StartInput(...))      # starting the same version again is a no-op
    await releases.wait_for_stage(ref, Stage.READY_TO_APPLY, timeout=120)
    try:
        status = await releases.command(ref, "apply_release", ApplyRelease())
    except CommandRefused as refused:
        print(refused.reason)                       # the workflow's own words

Every command and start carries the caller's identity token: by default the one the
environment configures (mpr.infra.tokens: MPR_TOKEN, MPR_TOKEN_FILE, MPR_TOKEN_COMMAND or
`mpr login`), or `ReleaseClient.connect(token=provider)`, a coroutine function called for every
command so that a long-running service can refresh it. Its subject is the actor: payloads
need no `actor`, and one that names someone else is refused.

Commands go as updates: the call returns the state the release accepted the command in, or
raises `CommandRefused`; `signal()` is the fire-and-forget variant. Every failure the caller
can act on is a `starters.errors.ClientError`: `TemporalUnreachable` (starters.errors) when the
server does not answer, else a `ReleaseClientError` subclass, each also a subclass of the
neutral error it is the release's case of (ReleaseNotFound of WorkflowNotFound, ...). Results
are the workflow's own pydantic models.

Following a release (`changes`, and `wait_for_stage` on top of it) long-polls the workflow's
history instead of polling the `status` query: the workflow upserts the ReleaseStage and
GrayscalePercent search attributes on every move, so each upsert event *is* a stage or percent
change. That sees every change, even moves too quick for a poll (a one-cell compatibility test),
costs the worker nothing while waiting (queries are answered by the worker; history by the
server), and reacts as soon as the server has the event.

A service holding a Temporal client of its own can start a release without ReleaseClient:

    client = await mpr.infra.temporal.connect(Settings.from_env())
    handle = await start_release(client, StartInput(...), identity_token=token)

Starting the same version twice returns the running release; a version whose release has
already finished (RELEASED or CANCELED) cannot be started again: release a new version.
"""

import asyncio
import builtins
import re
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.converter import decode_typed_search_attributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from mpr.domain.core.commands import Command
from mpr.domain.core.identity import TOKEN_FIELD
from mpr.domain.core.models import IDENTIFIER
from mpr.domain.release.models import SEMVER, CompatibilityReport, Environment, StartInput
from mpr.domain.release.release_id import parse_release_id, release_id
from mpr.domain.release.rules import RELEASE
from mpr.domain.release.stages import TERMINAL_STAGES, Stage
from mpr.domain.release.state import AuditLog, ReleaseStatus
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
from workflows.release import STILL_STARTING, WORKFLOW_TYPE

DEFAULT_LIST_LIMIT = 100
# A query no worker answered in time: the server or the client gave up on it ("Timeout
# expired"), which a worker busy with thousands of starting releases can make happen.
QUERY_NOT_ANSWERED = (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED)


# --- addressing ------------------------------------------------------------------------------


class ReleaseRef(BaseModel):
    """A release by its parts; `release_id` is its workflow id."""

    model_config = ConfigDict(frozen=True)

    mini_program_id: str = Field(pattern=IDENTIFIER)
    version: str = Field(pattern=SEMVER, max_length=64)
    target_app: str = Field(pattern=IDENTIFIER)
    environment: Environment = Environment.PRODUCTION

    @property
    def release_id(self) -> str:
        return release_id(self.mini_program_id, self.version, self.target_app, self.environment)

    @classmethod
    def parse(cls, workflow_id: str) -> "ReleaseRef":
        """The release a workflow id names; ValueError when it is not a release id."""
        program, version, app, environment = parse_release_id(workflow_id)
        return cls(mini_program_id=program, version=version, target_app=app,
                   environment=environment)

    @classmethod
    def of(cls, request: StartInput) -> "ReleaseRef":
        return cls(mini_program_id=request.mini_program_id, version=request.version,
                   target_app=request.target_app, environment=request.environment)


Release: TypeAlias = str | ReleaseRef
"""A release is named by its workflow id or by a ReleaseRef."""


def _release_id(release: Release) -> str:
    return (release if isinstance(release, ReleaseRef) else ReleaseRef.parse(release)).release_id


# --- results -----------------------------------------------------------------------------


class StageChange(BaseModel):
    """Where a release moved (stage and grayscale percent), as its history recorded it."""

    model_config = ConfigDict(frozen=True)

    stage: Stage
    percent: int
    at: datetime


class ReleaseSummary(BaseModel):
    """One release as the visibility store lists it (no worker involved)."""

    model_config = ConfigDict(frozen=True)

    release_id: str
    mini_program_id: str
    version: str
    target_app: str
    environment: Environment
    stage: Stage | None
    """None only for a release whose start failed before it published a stage."""
    percent: int
    status: str
    """The Temporal execution status as visibility queries name it: Running, Completed, ..."""
    start_time: datetime
    close_time: datetime | None


# --- errors ------------------------------------------------------------------------------
# The neutral bases (starters.errors) carry `workflow_id`; these also name it `release_id`.


class ReleaseClientError(ClientError):
    """Base of the failures only the release client reports (with TemporalUnreachable, from
    starters.errors, they are every failure it reports on purpose)."""


class ReleaseNotFound(ReleaseClientError, WorkflowNotFound):
    def __init__(self, release_id: str, namespace: str = "default") -> None:
        super().__init__(f"no release {release_id} in namespace {namespace}", release_id)
        self.release_id = release_id


class ReleaseFinished(ReleaseClientError, WorkflowFinished):
    """The release is closed: it takes no more commands and will not reach another stage."""

    def __init__(self, release_id: str, stage: Stage | None) -> None:
        where = f" in stage {stage}" if stage else ""
        super().__init__(f"release {release_id} has finished{where}", release_id)
        self.release_id = release_id
        self.stage = stage


class ReleaseFailed(ReleaseClientError, WorkflowFailed):
    """The workflow failed; in practice its start input was refused (e.g. unknown target app)."""

    def __init__(self, release_id: str, reason: str) -> None:
        super().__init__(f"release {release_id} failed: {reason}", release_id, reason)
        self.release_id = release_id


class ReleaseStarting(ReleaseClientError, WorkflowStarting):
    """The release has not loaded its policy yet (a catalog outage makes this last)."""

    def __init__(self, release_id: str) -> None:
        super().__init__(f"release {release_id}: {STILL_STARTING}", release_id)
        self.release_id = release_id


class CommandRefused(ReleaseClientError, WorkflowRefused):
    def __init__(self, release_id: str, command: str, reason: str, stage: Stage | None) -> None:
        super().__init__(f"{command} refused in {stage or 'an unknown stage'}: {reason}",
                         release_id, command, reason)
        self.release_id = release_id
        self.stage = stage


class StageTimeout(ReleaseClientError):
    def __init__(self, release_id: str, wanted: frozenset[Stage], current: Stage | None) -> None:
        names = " or ".join(sorted(wanted))
        super().__init__(f"release {release_id} did not reach {names} in time "
                         f"(it is in {current or 'no stage yet'})")
        self.release_id = release_id
        self.wanted = wanted
        self.current = current


class ReleaseAlreadyFinished(Exception):
    """start_release's answer for a version whose release has finished (ReleaseClient.start
    raises ReleaseFinished instead)."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"release {workflow_id} has already finished; a released or canceled version "
            "cannot be released again: release a new version"
        )
        self.workflow_id = workflow_id


# --- starting ------------------------------------------------------------------------------


def release_id_of(request: StartInput) -> str:
    return release_id(request.mini_program_id, request.version, request.target_app,
                      request.environment)


async def start_release(
    client: Client, request: StartInput, task_queue: str = DEFAULT_TASK_QUEUE, *,
    identity_token: str | None,
) -> WorkflowHandle[Any, Any]:
    """Start the release `request` asks for, as the subject of `identity_token` (None only
    where the worker runs with MPR_AUTH=off)."""
    workflow_id = release_id_of(request)
    sent = request.model_dump(mode="json", exclude_none=True)
    if identity_token is not None:
        sent[TOKEN_FIELD] = identity_token
    try:
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            sent,
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(sa.MINI_PROGRAM_ID, request.mini_program_id),
                SearchAttributePair(sa.MINI_PROGRAM_VERSION, request.version),
                SearchAttributePair(sa.TARGET_APP, request.target_app),
                SearchAttributePair(sa.RELEASE_ENVIRONMENT, request.environment.value),
                SearchAttributePair(sa.RELEASE_STAGE, Stage.BUILDING.value),
                SearchAttributePair(sa.GRAYSCALE_PERCENT, 0),
            ]),
        )
    except WorkflowAlreadyStartedError:
        raise ReleaseAlreadyFinished(workflow_id) from None
    await until_answering(handle)
    return handle


async def until_answering(handle: WorkflowHandle[Any, Any], within: float = 10) -> None:
    """Wait until the release has loaded its target app policy and answers `status`, so callers
    can query it at once; a catalog outage or a busy worker can make that longer than `within`
    (the release is started all the same)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            await handle.query("status")
            return
        except WorkflowQueryFailedError as error:
            if STILL_STARTING not in str(error):
                raise
            if (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING:
                return  # it failed to start (e.g. an unknown target app): the caller will see
        except RPCError as error:
            if error.status not in QUERY_NOT_ANSWERED:
                raise
        await asyncio.sleep(0.05)


# --- the client --------------------------------------------------------------------------


class ReleaseClient:
    def __init__(self, client: Client, task_queue: str = DEFAULT_TASK_QUEUE, *,
                 token: TokenProvider | None = None,
                 starting_grace: float = STARTING_GRACE_SECONDS) -> None:
        """`client` must use infra.temporal.data_converter(settings); `token` is called for
        every command and start, and gives the caller's identity token (by default the one the
        environment configures: mpr.infra.tokens); `starting_grace` is how long queries wait
        for a release that is still loading its policy."""
        self._client = client
        self.task_queue = task_queue
        self._access = WorkflowAccess(
            client, still_starting=STILL_STARTING, starting_grace=starting_grace,
            not_found=ReleaseNotFound, finished=_finished, failed=ReleaseFailed,
            starting=ReleaseStarting, refused=_refused, token=token or token_provider(),
        )

    @classmethod
    async def connect(cls, settings: Settings | None = None, *,
                      token: TokenProvider | None = None) -> "ReleaseClient":
        settings = settings or Settings.from_env()
        client = await connect_client(settings)
        return cls(client, settings.task_queue, token=token)

    @property
    def address(self) -> str:
        return self._access.address

    async def start(self, request: StartInput) -> ReleaseRef:
        """Start a release, or find it running: starting the same version twice is one release.

        Raises ReleaseFinished when that version's release has already finished, ReleaseFailed
        when the workflow refused its input."""
        workflow_id = release_id_of(request)
        try:
            identity_token = await self._access.identity_token()
            async with self._access.errors(workflow_id):
                await start_release(self._client, request, self.task_queue,
                                    identity_token=identity_token)
        except ReleaseAlreadyFinished:
            raise _finished(workflow_id, await self._access.describe(workflow_id)) from None
        await self._access.raise_if_failed(workflow_id, await self._access.describe(workflow_id))
        return ReleaseRef.of(request)

    async def command(self, release: Release, name: str,
                      payload: Mapping[str, Any] | Command) -> ReleaseStatus:
        """Send a command as an update; returns the state it was accepted in.

        A dict payload goes as it is (the workflow validates it and refuses what is malformed);
        a Command model goes with the fields that were set, so an omitted field means "keep"."""
        workflow_id = _release_id(release)
        status: ReleaseStatus = await self._access.update(
            workflow_id, name, command_payload(RELEASE.commands, name, payload), ReleaseStatus
        )
        return status

    async def signal(self, release: Release, name: str,
                     payload: Mapping[str, Any] | Command) -> None:
        """Send a command as a signal: no answer; a refusal shows in `status().last_rejection`
        and in the audit log."""
        workflow_id = _release_id(release)
        await self._access.signal(workflow_id, name,
                                  command_payload(RELEASE.commands, name, payload))

    async def status(self, release: Release) -> ReleaseStatus:
        status: ReleaseStatus = await self._access.query(_release_id(release), "status",
                                                         ReleaseStatus)
        return status

    async def audit_log(self, release: Release) -> AuditLog:
        log: AuditLog = await self._access.query(_release_id(release), "audit_log", AuditLog)
        return log

    async def compatibility_report(self, release: Release) -> CompatibilityReport | None:
        report: CompatibilityReport | None = await self._access.query(
            _release_id(release), "compatibility_report", CompatibilityReport | None
        )
        return report

    async def changes(self, release: Release) -> AsyncGenerator[StageChange, None]:
        """The stage and percent the release is at, then every change, as it is recorded,
        until the release is RELEASED or CANCELED; follows continue-as-new.

        Raises ReleaseFinished when the workflow closes short of those stages (terminated),
        ReleaseFailed when it failed."""
        workflow_id = _release_id(release)
        last: StageChange | None = None
        while True:
            run = await self._access.describe(workflow_id)
            async for change in self._access.run_positions(workflow_id, run, stage_change):
                if last is None or (change.stage, change.percent) != (last.stage, last.percent):
                    last = change
                    yield change
                if change.stage in TERMINAL_STAGES:
                    return
            latest = await self._access.describe(workflow_id)
            if latest.run_id == run.run_id:
                await self._access.raise_if_failed(workflow_id, latest)
                raise ReleaseFinished(workflow_id, last.stage if last else None)
            # Otherwise the run continued as new: follow the next one.

    # The timeout is a parameter, not the caller's asyncio.timeout, so that StageTimeout can say
    # which stage the release was in.
    async def wait_for_stage(self, release: Release, stage: Stage | str | Iterable[Stage | str],
                             timeout: timedelta | float) -> ReleaseStatus:  # noqa: ASYNC109
        """Wait until the release is in `stage` (or one of several) and return its status,
        queried right then (a fast release may have moved on again). The stage it is in now
        counts; stages it has already left do not.

        Raises StageTimeout, or ReleaseFinished when it finished in another stage."""
        workflow_id = _release_id(release)
        wanted = _stages(stage)
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        current: Stage | None = None
        try:
            async with asyncio.timeout(seconds), aclosing(self.changes(workflow_id)) as changes:
                async for change in changes:
                    current = change.stage
                    if change.stage in wanted:
                        return await self.status(workflow_id)
        except TimeoutError:
            raise StageTimeout(workflow_id, wanted, current) from None
        raise ReleaseFinished(workflow_id, current)

    # --- internals --------------------------------------------------------------------------

    # Last: from here on `list` in this class body would name this method.
    async def list(
        self,
        *,
        stage: Stage | str | None = None,
        mini_program_id: str | None = None,
        version: str | None = None,
        target_app: str | None = None,
        environment: Environment | str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> builtins.list[ReleaseSummary]:
        """Releases matching every filter given, newest first, from the visibility store.

        ValueError when a filter value is malformed (nothing is sent)."""
        query = visibility_query(stage=stage, mini_program_id=mini_program_id, version=version,
                                 target_app=target_app, environment=environment)
        summaries = []
        async with self._access.errors(None):
            async for execution in self._client.list_workflows(query, limit=limit):
                summary = _summary(execution)
                if summary is not None:
                    summaries.append(summary)
        return summaries


# --- helpers -----------------------------------------------------------------------------


def visibility_query(
    *,
    stage: Stage | str | None = None,
    mini_program_id: str | None = None,
    version: str | None = None,
    target_app: str | None = None,
    environment: Environment | str | None = None,
) -> str:
    """The visibility query for releases matching every filter given."""
    filters = [
        (sa.RELEASE_STAGE.name, Stage(stage).value if stage else None),
        (sa.MINI_PROGRAM_ID.name, _matching(mini_program_id, IDENTIFIER, "mini program id")),
        (sa.MINI_PROGRAM_VERSION.name, _matching(version, SEMVER, "version")),
        (sa.TARGET_APP.name, _matching(target_app, IDENTIFIER, "target app")),
        (sa.RELEASE_ENVIRONMENT.name, Environment(environment).value if environment else None),
    ]
    # A release that continued as new has a closed run per continuation: list the live one.
    clauses = [f"WorkflowType = {_quoted(WORKFLOW_TYPE)}", "ExecutionStatus != 'ContinuedAsNew'"]
    clauses += [f"{name} = {_quoted(value)}" for name, value in filters if value is not None]
    return " AND ".join(clauses)


def _matching(value: str | None, pattern: str, what: str) -> str | None:
    if value is not None and not re.fullmatch(pattern, value):
        raise ValueError(f"{value!r} is not a valid {what}")
    return value


def _quoted(value: str) -> str:
    # The visibility query language has no escaping that every store agrees on: refuse.
    if any(char in value for char in "'\"\\`") or not value.isprintable():
        raise ValueError(f"{value!r} cannot be used in a visibility query")
    return f"'{value}'"


def _finished(release_id: str, description: WorkflowExecutionDescription) -> ReleaseFinished:
    return ReleaseFinished(release_id, _stage(description.typed_search_attributes))


def _refused(release_id: str, command: str, reason: str,
             details: Mapping[str, Any]) -> CommandRefused:
    stage = details.get("stage")
    return CommandRefused(release_id, command, reason, Stage(stage) if stage else None)


def _stages(stage: Stage | str | Iterable[Stage | str]) -> frozenset[Stage]:
    if isinstance(stage, str):
        return frozenset({Stage(stage)})
    return frozenset(Stage(s) for s in stage)


def _stage(attributes: TypedSearchAttributes) -> Stage | None:
    value = attributes.get(sa.RELEASE_STAGE)
    return Stage(value) if value else None


def stage_change(event: HistoryEvent, previous: StageChange | None) -> StageChange | None:
    """The position an event records: the start's search attributes, or an upsert of them."""
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        encoded = event.workflow_execution_started_event_attributes.search_attributes
    elif event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
        encoded = event.upsert_workflow_search_attributes_event_attributes.search_attributes
    else:
        return None
    attributes = decode_typed_search_attributes(encoded)
    stage = _stage(attributes) or (previous.stage if previous else None)
    if stage is None:
        return None
    percent = attributes.get(sa.GRAYSCALE_PERCENT)
    if percent is None:
        percent = previous.percent if previous else 0
    return StageChange(stage=stage, percent=percent, at=event.event_time.ToDatetime(tzinfo=UTC))


def _execution_status(status: WorkflowExecutionStatus | None) -> str:
    if status is None:
        return "Unknown"
    return "".join(part.title() for part in status.name.split("_"))


def _summary(execution: WorkflowExecution) -> ReleaseSummary | None:
    try:
        program, version, app, environment = parse_release_id(execution.id)
    except ValueError:
        return None  # started by hand under a non-release id: it failed at once, nothing to show
    attributes = execution.typed_search_attributes
    return ReleaseSummary(
        release_id=execution.id,
        mini_program_id=program,
        version=version,
        target_app=app,
        environment=environment,
        stage=_stage(attributes),
        percent=attributes.get(sa.GRAYSCALE_PERCENT) or 0,
        status=_execution_status(execution.status),
        start_time=execution.start_time,
        close_time=execution.close_time,
    )
