"""The mini service client library: what another Python service imports to run a super app's
mini service page (seed 004).

    from starters.mini_services import MiniServiceClient, ServiceCommandRefused

    services = await MiniServiceClient.connect(pool)   # pool: the catalog (catalog.db)
    version = await services.create("gopay")           # a new DRAFT, created by the token's
    await services.command("gopay", version, "add_section", {"title": {"en": "Food"}})
    try:
        await services.command("gopay", version, "release", {"percent": 5})
    except ServiceCommandRefused as refused:
        print(refused.reason)                       # the workflow's own words

Every command and start carries the caller's identity token: by default the one the
environment configures (mpr.infra.tokens), or what `connect(..., token=provider)` is given, a
coroutine function called for every command so that a long-running service can refresh it.
Its subject is the actor; the payloads need no `actor`.

The catalog allocates version numbers, so `create` and `duplicate` need it (as do `history`
and `resolve`, which read it); everything else talks to Temporal only. Commands go as updates
and return the status they were accepted in; `signal()` is the fire-and-forget variant.

Every failure the caller can act on is a `starters.errors.ClientError`: `TemporalUnreachable`
(starters.errors) when the server does not answer, else a `MiniServiceClientError` subclass,
each also a subclass of the neutral error it is the mini service's case of (ServiceNotFound of
WorkflowNotFound, ServiceCommandRefused of WorkflowRefused, ...), as the release client's
errors are: code (and `mpr`'s exit codes) catching the neutral errors handles both alike.
"""

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from mpr.catalog.admin import require_target_app
from mpr.catalog.db import Database
from mpr.catalog.mini_services import (
    NotDuplicable,
    ServiceResolution,
    allocate_service_version,
    duplicable_content,
    get_service_version,
    list_service_versions,
    resolve_mini_service_detail,
)
from mpr.domain.core.commands import Command
from mpr.domain.core.models import IDENTIFIER
from mpr.domain.mini_service.models import (
    MiniServiceContent,
    Preview,
    ServiceStart,
    ServiceVersionSummary,
    mini_service_id,
)
from mpr.domain.mini_service.rules import MINI_SERVICE
from mpr.domain.mini_service.stages import ServiceStatus
from mpr.domain.mini_service.state import MiniServiceStatus
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
    STARTING_POLL_SECONDS,
    WorkflowAccess,
    command_payload,
    connect_client,
)
from workflows import search_attributes as sa
from workflows.mini_service import STILL_STARTING, WORKFLOW_TYPE

ID_PREFIX = "mini-service"
# The version number a start request is validated with before the catalog allocates the real one.
UNALLOCATED = 1


class ServiceRef(BaseModel):
    """A mini service version by its parts; `workflow_id` is `mini-service:{app}:{n}`."""

    model_config = ConfigDict(frozen=True)

    super_app: str = Field(pattern=IDENTIFIER)
    version_no: int = Field(ge=1)

    @property
    def workflow_id(self) -> str:
        return mini_service_id(self.super_app, self.version_no)

    @classmethod
    def parse(cls, workflow_id: str) -> "ServiceRef":
        """The version a workflow id names; ValueError when it is not a mini service id."""
        prefix, _, rest = workflow_id.partition(":")
        super_app, _, number = rest.rpartition(":")
        if prefix != ID_PREFIX or not super_app or not number.isdigit():
            raise ValueError(f"not a mini service id: {workflow_id!r} "
                             "(expected mini-service:{super_app}:{version_no})")
        return cls(super_app=super_app, version_no=int(number))


# --- errors ------------------------------------------------------------------------------
# The neutral bases (starters.errors) carry `workflow_id`, and `reason`, `command` where
# they apply.


class MiniServiceClientError(ClientError):
    """Base of the failures only the mini service client reports (with TemporalUnreachable,
    from starters.errors, they are every failure it reports on purpose)."""


class ServiceNotFound(MiniServiceClientError, WorkflowNotFound):
    def __init__(self, workflow_id: str, namespace: str = "default") -> None:
        super().__init__(f"no mini service version {workflow_id} in namespace {namespace}",
                         workflow_id)


class ServiceFinished(MiniServiceClientError, WorkflowFinished):
    """The version's workflow is closed (ARCHIVED or DELETED): it takes no more commands."""

    def __init__(self, workflow_id: str, status: ServiceStatus | None) -> None:
        where = f" ({status})" if status else ""
        super().__init__(f"mini service version {workflow_id} has finished{where}", workflow_id)
        self.status = status


class ServiceFailed(MiniServiceClientError, WorkflowFailed):
    """The workflow failed; in practice its start input was refused."""

    def __init__(self, workflow_id: str, reason: str) -> None:
        super().__init__(f"mini service version {workflow_id} failed: {reason}", workflow_id,
                         reason)


class ServiceStarting(MiniServiceClientError, WorkflowStarting):
    """The version has not loaded its super app's policy yet (a catalog outage makes this
    last)."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"mini service version {workflow_id}: {STILL_STARTING}", workflow_id)


class ServiceCommandRefused(MiniServiceClientError, WorkflowRefused):
    def __init__(self, workflow_id: str, command: str, reason: str,
                 status: ServiceStatus | None) -> None:
        super().__init__(f"{command} refused in {status or 'an unknown status'}: {reason}",
                         workflow_id, command, reason)
        self.status = status


class CatalogNeeded(MiniServiceClientError):
    def __init__(self, operation: str) -> None:
        super().__init__(f"{operation} needs the catalog database: give MiniServiceClient a "
                         "pool (DATABASE_URL)")


# --- the client --------------------------------------------------------------------------


class MiniServiceClient:
    def __init__(self, client: Client, db: Database | None = None,
                 task_queue: str = DEFAULT_TASK_QUEUE, *,
                 token: TokenProvider | None = None,
                 starting_grace: float = STARTING_GRACE_SECONDS) -> None:
        """`client` must use infra.temporal.data_converter(settings); `db` is the catalog,
        needed by create, duplicate, history and resolve; `token` is called for every command
        and start, and gives the caller's identity token (by default the one the environment
        configures: mpr.infra.tokens); `starting_grace` is how long calls wait for a version
        that is still loading its super app's policy."""
        self._client = client
        self._db = db
        self.task_queue = task_queue
        self._access = WorkflowAccess(
            client, still_starting=STILL_STARTING, starting_grace=starting_grace,
            not_found=ServiceNotFound, finished=_finished, failed=ServiceFailed,
            starting=ServiceStarting, refused=_refused, token=token or token_provider(),
        )

    @classmethod
    async def connect(cls, db: Database | None = None, settings: Settings | None = None, *,
                      token: TokenProvider | None = None) -> "MiniServiceClient":
        settings = settings or Settings.from_env()
        client = await connect_client(settings)
        return cls(client, db, settings.task_queue, token=token)

    @property
    def address(self) -> str:
        return self._access.address

    # --- versions -----------------------------------------------------------------------

    async def create(self, super_app: str, actor: str | None = None) -> int:
        """A new DRAFT version of the super app's page (the four default sections); returns
        its number once the catalog has it."""
        return await self._start_new(ServiceStart(super_app=super_app, version_no=UNALLOCATED,
                                                  created_by=actor))

    async def duplicate(self, super_app: str, from_version: int,
                        actor: str | None = None) -> int:
        """A new DRAFT version with the content of a RELEASED or ARCHIVED version (seed 004).

        ServiceNotFound when that version does not exist, ServiceCommandRefused when it is in
        another status."""
        db = self._catalog("duplicate")
        try:
            content = await duplicable_content(db, super_app, from_version)
        except NotDuplicable as error:
            source = mini_service_id(super_app, from_version)
            stored = await get_service_version(db, super_app, from_version)
            if stored is None:
                raise ServiceNotFound(source, self._client.namespace) from None
            raise ServiceCommandRefused(source, "duplicate", str(error), stored.status) from None
        return await self._start_new(ServiceStart(
            super_app=super_app, version_no=UNALLOCATED, created_by=actor, content=content,
            duplicated_from=from_version))

    async def start(self, request: ServiceStart) -> None:
        """Start the workflow of an allocated version number, or find it running (starting
        the same number twice is one version); returns once the catalog has recorded it.

        ServiceFinished when that version's workflow has already ended, ServiceFailed when
        the workflow refused its input."""
        workflow_id = mini_service_id(request.super_app, request.version_no)
        sent = await self._access.identified(request.model_dump(mode="json", exclude_none=True))
        try:
            async with self._access.errors(workflow_id):
                handle = await self._client.start_workflow(
                    WORKFLOW_TYPE, sent, id=workflow_id, task_queue=self.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    # A start that failed (e.g. a catalog refusal) may be tried again.
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                    search_attributes=TypedSearchAttributes([
                        SearchAttributePair(sa.TARGET_APP, request.super_app),
                        SearchAttributePair(sa.MINI_SERVICE_STATUS, ServiceStatus.DRAFT.value),
                        SearchAttributePair(sa.GRAYSCALE_PERCENT, 0),
                    ]),
                )
        except WorkflowAlreadyStartedError:
            raise _finished(workflow_id, await self._access.describe(workflow_id)) from None
        await self._until_recorded(handle)

    # --- commands -----------------------------------------------------------------------

    async def command(self, super_app: str, version_no: int, name: str,
                      payload: Mapping[str, Any] | Command) -> MiniServiceStatus:
        """Send a command as an update; returns the status it was accepted in.

        A dict payload goes as it is (the workflow validates it and refuses what is
        malformed); a Command model goes with the fields that were set."""
        workflow_id = mini_service_id(super_app, version_no)
        status: MiniServiceStatus = await self._access.update(
            workflow_id, name, command_payload(MINI_SERVICE.commands, name, payload),
            MiniServiceStatus)
        return status

    async def signal(self, super_app: str, version_no: int, name: str,
                     payload: Mapping[str, Any] | Command) -> None:
        """Send a command as a signal: no answer; a refusal shows in
        `status().last_rejection` and in the catalog's events."""
        workflow_id = mini_service_id(super_app, version_no)
        await self._access.signal(workflow_id, name,
                                  command_payload(MINI_SERVICE.commands, name, payload))

    # --- reading ------------------------------------------------------------------------

    async def status(self, super_app: str, version_no: int) -> MiniServiceStatus:
        status: MiniServiceStatus = await self._access.query(
            mini_service_id(super_app, version_no), "status", MiniServiceStatus)
        return status

    async def content(self, super_app: str, version_no: int) -> MiniServiceContent:
        content: MiniServiceContent = await self._access.query(
            mini_service_id(super_app, version_no), "content", MiniServiceContent)
        return content

    async def preview(self, super_app: str, version_no: int,
                      language: str | None = None) -> Preview:
        """The page as a user with `language` sees it; the default language when None."""
        page: Preview = await self._access.query(
            mini_service_id(super_app, version_no), "preview", Preview,
            {"language": language} if language else None)
        return page

    async def history(self, super_app: str) -> list[ServiceVersionSummary]:
        """Every version of the super app's page, newest first, read from the catalog now
        (the workflows' `history` query is as of their last catalog write)."""
        db = self._catalog("history")
        await require_target_app(db, super_app)
        return await list_service_versions(db, super_app)

    async def resolve(self, super_app: str, user_id: str,
                      email: str | None = None) -> ServiceResolution:
        """Which version this user is shown (testers, grayscale bucket, released) and why."""
        return await resolve_mini_service_detail(self._catalog("resolve"), super_app, user_id,
                                                 email)

    # --- internals ----------------------------------------------------------------------

    def _catalog(self, operation: str) -> Database:
        if self._db is None:
            raise CatalogNeeded(operation)
        return self._db

    async def _start_new(self, request: ServiceStart) -> int:
        """Allocate a number for `request` and start it. The request is built (validated)
        before the number is allocated, so that a bad one burns no number; so is the token
        looked up (a missing one burns none either)."""
        await self._access.identity_token()
        version_no = await allocate_service_version(self._catalog("create"), request.super_app)
        await self.start(request.model_copy(update={"version_no": version_no}))
        return version_no

    async def _until_recorded(self, handle: WorkflowHandle[Any, Any]) -> None:
        """Wait until the version's first catalog write is done, so that the catalog lists it
        (and a duplicate of it can refer to it) as soon as create returns."""
        deadline = time.monotonic() + self._access.starting_grace
        while True:
            status = await self._access.query(handle.id, "status", MiniServiceStatus)
            if status.audit_count >= 1:
                return
            if time.monotonic() >= deadline:
                raise ServiceStarting(handle.id)
            await asyncio.sleep(STARTING_POLL_SECONDS)


def _finished(workflow_id: str, description: WorkflowExecutionDescription) -> ServiceFinished:
    return ServiceFinished(workflow_id, _status(description))


def _refused(workflow_id: str, command: str, reason: str,
             details: Mapping[str, Any]) -> ServiceCommandRefused:
    status = details.get("status")
    return ServiceCommandRefused(workflow_id, command, reason,
                                 ServiceStatus(status) if status else None)


def _status(description: WorkflowExecutionDescription) -> ServiceStatus | None:
    value = description.typed_search_attributes.get(sa.MINI_SERVICE_STATUS)
    return ServiceStatus(value) if value else None
