"""A channel that continues as new after a short history, under the real workflow type: how a
test on the time-skipping server (which never suggests continuing as new) sees a channel
continue as new while commands are in flight."""

from typing import Any

from temporalio import workflow

from workflows.channel import WORKFLOW_TYPE, MiniProgramChannel

SHORT_HISTORY = 80


@workflow.defn(name=WORKFLOW_TYPE)
class ShortChannel(MiniProgramChannel):
    continue_as_new_after_events = SHORT_HISTORY

    @workflow.run
    async def run(self, request: Any, carried: Any = None) -> None:
        await super().run(request, carried)
