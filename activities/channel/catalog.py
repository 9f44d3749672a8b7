"""The channel workflow's only way to read and write the catalog.

Same conventions as the release's catalog activities: database outages propagate and are
retried; refusals become non-retryable ApplicationErrors typed by the refusal's class name.
Whether a version's bundle is still in the artifact store is asked of the file system in a
thread, so the worker's event loop never waits on a disk.
"""

import asyncio
from pathlib import Path

import asyncpg
from temporalio import activity

from activities.identity import Authenticator
from activities.scope import activity_scope
from mpr.catalog import channels
from mpr.catalog.roles import program_roles
from mpr.domain.channel.models import (
    ChannelAuthentication,
    ChannelKey,
    ChannelVerdict,
    ChannelView,
)
from mpr.domain.channel.records import ChannelTransition, ChannelTransitionResult
from mpr.domain.core.models import Role
from mpr.infra.logging import get_logger

log = get_logger(__name__)


async def bundles_present(artifact_paths: list[str | None]) -> list[bool]:
    def present() -> list[bool]:
        return [path is not None and Path(path).is_file() for path in artifact_paths]

    return await asyncio.to_thread(present)


class ChannelCatalogActivities:
    def __init__(self, pool: asyncpg.Pool, identity: Authenticator) -> None:
        self._pool = pool
        self._identity = identity

    @activity.defn(name="load_channel")
    async def load_channel(self, key: ChannelKey) -> ChannelView | None:
        with activity_scope("load_channel", channel=key.label):
            return await channels.load_channel_view(self._pool, key, bundles_present)

    @activity.defn(name="authenticate_channel_actor")
    async def authenticate_channel_actor(self, request: ChannelAuthentication) -> ChannelVerdict:
        """The verified subject of a channel command, its roles on the channel (the
        workspace's, the mini program's, the platform's and the target app's reviewers), and
        the channel as the catalog has it now."""
        key = request.key
        with activity_scope("authenticate_channel_actor", channel=key.label):
            view = await channels.load_channel_view(self._pool, key, bundles_present)

            async def roles_of(subject: str) -> list[Role]:
                if view is None:
                    return []
                return await program_roles(
                    self._pool, actor=subject, workspace_id=view.workspace_id,
                    mini_program_id=key.mini_program_id, target_app=key.target_app)

            verdict = await self._identity.verdict(request, roles_of)
            return ChannelVerdict(**verdict.model_dump(), view=view)

    @activity.defn(name="record_channel_transition")
    async def record_channel_transition(
        self, transition: ChannelTransition
    ) -> ChannelTransitionResult:
        event = transition.event
        with activity_scope("record_channel_transition", channel=event.key.label):
            result = await channels.record_channel_transition(self._pool, transition,
                                                              bundles_present)
            log.info("channel transition recorded", event_id=event.event_id,
                     command=event.command, state_after=event.state_after.value,
                     applied=result.applied)
            return result
