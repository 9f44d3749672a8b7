"""Starting releases from another service.

    client = await infra.temporal.connect(Settings.from_env())
    handle = await start_release(client, StartInput(...))

Starting the same version twice returns the running release; a version whose release has
already finished (RELEASED or CANCELED) cannot be started again: release a new version.
"""

import asyncio
import time
from typing import Any

from temporalio.client import (
    Client,
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
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from mpr.domain.release.models import StartInput
from mpr.domain.release.release_id import release_id
from mpr.domain.release.stages import Stage
from mpr.infra.settings import DEFAULT_TASK_QUEUE
from workflows import search_attributes as sa
from workflows.release import STILL_STARTING, WORKFLOW_TYPE


class ReleaseAlreadyFinished(Exception):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"release {workflow_id} has already finished; a released or canceled version "
            "cannot be released again: release a new version"
        )
        self.workflow_id = workflow_id


def release_id_of(request: StartInput) -> str:
    return release_id(request.mini_program_id, request.version, request.target_app,
                      request.environment)


async def start_release(
    client: Client, request: StartInput, task_queue: str = DEFAULT_TASK_QUEUE
) -> WorkflowHandle[Any, Any]:
    workflow_id = release_id_of(request)
    try:
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            request,
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
    await _until_answering(handle)
    return handle


# A query no worker answered in time: the server or the client gave up on it ("Timeout
# expired"), which a worker busy with thousands of starting releases can make happen.
QUERY_NOT_ANSWERED = (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED)


async def _until_answering(handle: WorkflowHandle[Any, Any], within: float = 10) -> None:
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
