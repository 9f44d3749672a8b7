"""Helpers to start and drive releases in workflow tests."""

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError

from mpr.domain.release.release_id import release_id


@dataclass
class Releases:
    """Starts and drives releases on one test worker's task queue."""

    client: Client
    task_queue: str

    async def start(self, **overrides: Any) -> WorkflowHandle[Any, Any]:
        request = start_input(**overrides)
        workflow_id = release_id(request["mini_program_id"], request["version"],
                                 request["target_app"], request.get("environment", "production"))
        handle = await self.client.start_workflow(
            "MiniProgramRelease", request, id=workflow_id, task_queue=self.task_queue
        )
        await until_answering(handle)
        return handle


async def until_answering(handle: WorkflowHandle[Any, Any]) -> None:
    """Wait until a new workflow has loaded its context from the catalog and answers queries
    (it says "still starting" before), as the client libraries do; generous, because the
    machine may be busy with other test servers. A workflow that fails to start stays silent,
    so this gives up once it is closed and leaves the test to see why."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            await handle.query("status")
            return
        except WorkflowQueryFailedError as error:
            if "still starting" not in error.message:
                raise
        if (await handle.describe()).close_time is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} did not finish starting within 60 s")


def start_input(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "mini_program_id": f"coffee-{uuid.uuid4().hex[:8]}",
        "version": "1.0.0",
        "target_app": "alipaycn",
        "workspace_id": "ws-1",
        "requested_by": "dev",
        "source": "/samples/coffee",
        "config": {"basic_info": {"name": "Coffee Shop"}},
    }
    values.update(overrides)
    return values


async def wait_for_stage(handle: WorkflowHandle[Any, Any], stage: str) -> dict[str, Any]:
    """Poll `status`; generous, because the machine may be busy with other test servers."""
    status: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = await handle.query("status")
        if status["stage"] == stage:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"release stayed in {status.get('stage')}, expected {stage}")


async def command(handle: WorkflowHandle[Any, Any], name: str, **payload: Any) -> dict[str, Any]:
    result: dict[str, Any] = await handle.execute_update(name, payload)
    return result
