"""The catalog activities: the release workflow's only way to read and write the catalog.

Database outages propagate as they are, so Temporal retries them. Refusals (an unknown
target app, a self-contradicting write, a violated constraint) become non-retryable
ApplicationErrors: retrying them would only repeat the refusal.
"""

import asyncpg
from temporalio import activity

from activities.identity import Authenticator
from activities.scope import activity_scope
from mpr.catalog import channels, releases
from mpr.domain.core.identity import IdentityVerdict
from mpr.domain.core.models import Role
from mpr.domain.release.models import (
    ActorRolesRequest,
    Channel,
    ReleaseAuthentication,
    ReleaseContext,
    ReleaseContextRequest,
)
from mpr.domain.release.records import CatalogTransition, TransitionResult
from mpr.infra.logging import get_logger

log = get_logger(__name__)


class CatalogActivities:
    def __init__(self, pool: asyncpg.Pool, identity: Authenticator) -> None:
        self._pool = pool
        self._identity = identity

    @activity.defn(name="load_release_context")
    async def load_release_context(self, request: ReleaseContextRequest) -> ReleaseContext:
        with activity_scope("load_release_context", release_id=request.release_id):
            context = await releases.load_release_context(self._pool, request)
            log.info(
                "release context loaded",
                target_app=context.policy.target_app,
                first_release=context.first_release,
                previous_stable_version=context.previous_stable_version,
            )
            return context

    @activity.defn(name="authenticate_release_actor")
    async def authenticate_release_actor(self, request: ReleaseAuthentication) -> IdentityVerdict:
        """The verified subject of a release's command or start, and its roles there."""
        release_id = (activity.info().workflow_id or "") if activity.in_activity() else ""

        async def roles_of(subject: str) -> list[Role]:
            return await releases.load_actor_roles(self._pool, ActorRolesRequest(
                workspace_id=request.workspace_id, mini_program_id=request.mini_program_id,
                target_app=request.target_app, actor=subject))

        with activity_scope("authenticate_release_actor", release_id=release_id):
            return await self._identity.verdict(request, roles_of)

    @activity.defn(name="load_actor_roles")
    async def load_actor_roles(self, request: ActorRolesRequest) -> list[Role]:
        # The request names no release; the workflow id is the release id.
        release_id = (activity.info().workflow_id or "") if activity.in_activity() else ""
        with activity_scope("load_actor_roles", release_id=release_id):
            roles = await releases.load_actor_roles(self._pool, request)
            log.info("actor roles loaded", actor=request.actor, roles=[r.value for r in roles])
            return roles

    @activity.defn(name="channel_takedown")
    async def channel_takedown(self, channel: Channel) -> str | None:
        """Why the release's channel is offline, or None while it is online."""
        release_id = (activity.info().workflow_id or "") if activity.in_activity() else ""
        with activity_scope("channel_takedown", release_id=release_id):
            takedown = await channels.channel_takedown(self._pool, (
                channel.mini_program_id, channel.target_app, channel.environment.value))
            if takedown is None:
                return None
            return (f"the channel was taken offline by {takedown.by} ({takedown.kind} "
                    f"takedown): {takedown.reason}")

    @activity.defn(name="record_transition")
    async def record_transition(self, transition: CatalogTransition) -> TransitionResult:
        event = transition.event
        with activity_scope("record_transition", release_id=event.release_id):
            result = await releases.record_transition(self._pool, transition)
            log.info(
                "transition recorded",
                event_id=event.event_id,
                command=event.command,
                stage_after=event.stage_after.value,
                applied=result.applied,
                blocked_by=result.blocked_by,
            )
            return result
