"""Helpers to start and drive releases in workflow tests."""

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowHandle

from domain.release_id import release_id


@dataclass
class Releases:
    """Starts and drives releases on one test worker's task queue."""

    client: Client
    task_queue: str

    async def start(self, **overrides: Any) -> WorkflowHandle[Any, Any]:
        request = start_input(**overrides)
        workflow_id = release_id(request["mini_program_id"], request["version"],
                                 request["target_app"], request.get("environment", "production"))
        return await self.client.start_workflow(
            "MiniProgramRelease", request, id=workflow_id, task_queue=self.task_queue
        )


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
