"""A workflow that continues as new into a lifecycle workflow with a carried state: how a run
that continued as new begins, without waiting for Temporal to suggest it."""

from typing import Any

from temporalio import workflow


@workflow.defn(name="Handover")
class Handover:
    @workflow.run
    async def run(self, workflow_type: str, request: Any, carried: Any) -> None:
        workflow.continue_as_new(args=[request, carried], workflow=workflow_type)
