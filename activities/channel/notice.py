"""Tell a channel's workflow that the catalog changed under it, starting it if need be.

Signal-with-start (a supported client call, not an experimental one): a channel that has no
workflow yet, such as one whose first version just went live, gets one; a running one is told
to read the catalog again. The notice carries no user's identity and changes nothing by
itself: the channel believes only the catalog.
"""

from temporalio import activity
from temporalio.client import Client

from activities.scope import activity_scope
from mpr.domain.channel.models import ChannelNotice, ChannelStart
from mpr.infra.logging import get_logger

log = get_logger(__name__)

CHANNEL_WORKFLOW_TYPE = "MiniProgramChannel"
REFRESH_SIGNAL = "refresh"


class ChannelNotices:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name="notify_channel")
    async def notify_channel(self, notice: ChannelNotice) -> str:
        """Signal-with-start the channel's workflow; its run id."""
        key = notice.key
        with activity_scope("notify_channel", channel=key.label, release_id=notice.release_id):
            start = ChannelStart(mini_program_id=key.mini_program_id, target_app=key.target_app,
                                 environment=key.environment)
            handle = await self._client.start_workflow(
                CHANNEL_WORKFLOW_TYPE, start.model_dump(mode="json"), id=key.workflow_id,
                task_queue=notice.task_queue, start_signal=REFRESH_SIGNAL,
                start_signal_args=[{"release_id": notice.release_id}])
            log.info("channel notified", run_id=handle.result_run_id)
            return handle.result_run_id or ""
