"""The mini service workflow's only way to read and write the catalog.

Same conventions as the release's catalog activities: database outages propagate and are
retried; refusals become non-retryable ApplicationErrors typed by the refusal's class name.
"""

import asyncpg
from temporalio import activity

from activities.identity import Authenticator
from activities.scope import activity_scope
from mpr.catalog import mini_services
from mpr.domain.core.identity import IdentityVerdict
from mpr.domain.core.models import Role
from mpr.domain.mini_service.models import (
    ServiceAuthentication,
    ServiceContext,
    ServiceRolesRequest,
    ServiceVersionRef,
)
from mpr.domain.mini_service.records import ServiceTransition, ServiceTransitionResult
from mpr.infra.logging import get_logger

log = get_logger(__name__)


class MiniServiceCatalogActivities:
    def __init__(self, pool: asyncpg.Pool, identity: Authenticator) -> None:
        self._pool = pool
        self._identity = identity

    @activity.defn(name="load_service_context")
    async def load_service_context(self, super_app: str) -> ServiceContext:
        with activity_scope("load_service_context", super_app=super_app):
            context = await mini_services.load_service_context(self._pool, super_app)
            log.info("service context loaded", grayscale_ladder=context.grayscale_ladder)
            return context

    @activity.defn(name="authenticate_service_actor")
    async def authenticate_service_actor(
        self, request: ServiceAuthentication
    ) -> IdentityVerdict:
        """The verified subject of a mini service command or start, and its roles there."""

        async def roles_of(subject: str) -> list[Role]:
            return await mini_services.load_service_roles(
                self._pool, ServiceRolesRequest(super_app=request.super_app, actor=subject))

        with activity_scope("authenticate_service_actor", super_app=request.super_app):
            return await self._identity.verdict(request, roles_of)

    @activity.defn(name="load_service_roles")
    async def load_service_roles(self, request: ServiceRolesRequest) -> list[Role]:
        with activity_scope("load_service_roles", super_app=request.super_app):
            roles = await mini_services.load_service_roles(self._pool, request)
            log.info("service roles loaded", actor=request.actor, roles=[r.value for r in roles])
            return roles

    @activity.defn(name="record_service_transition")
    async def record_service_transition(
        self, transition: ServiceTransition
    ) -> ServiceTransitionResult:
        event = transition.event
        with activity_scope(
            "record_service_transition",
            super_app=event.super_app,
            version_no=str(event.version_no),
        ):
            result = await mini_services.record_service_transition(self._pool, transition)
            log.info(
                "service transition recorded",
                event_id=event.event_id,
                command=event.command,
                status_after=event.status_after.value,
                applied=result.applied,
                archived_version=result.archived_version,
            )
            return result

    @activity.defn(name="is_service_archived")
    async def is_service_archived(self, ref: ServiceVersionRef) -> bool:
        with activity_scope(
            "is_service_archived", super_app=ref.super_app, version_no=str(ref.version_no)
        ):
            return await mini_services.is_service_archived(self._pool, ref)
