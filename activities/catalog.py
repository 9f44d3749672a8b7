"""The catalog activities: the release workflow's only way to read and write the catalog.

Database outages propagate as they are, so Temporal retries them. Refusals (an unknown
target app, a self-contradicting write, a violated constraint) become non-retryable
ApplicationErrors: retrying them would only repeat the refusal.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from catalog import CatalogError, releases
from domain.models import (
    ActorRolesRequest,
    ReleaseContext,
    ReleaseContextRequest,
    Role,
)
from domain.records import CatalogTransition, TransitionResult
from infra.logging import get_logger

log = get_logger(__name__)

# Constraint violations mean the write itself is wrong; unique violations are left out on
# purpose, since a concurrent writer can cause one and a retry then succeeds.
REFUSED_WRITES = (
    asyncpg.ForeignKeyViolationError,
    asyncpg.CheckViolationError,
    asyncpg.NotNullViolationError,
)


@contextmanager
def activity_scope(name: str, **ids: str) -> Iterator[None]:
    """Log with the activity's ids; make catalog refusals non-retryable ApplicationErrors.

    Shared by every catalog activity class (releases and mini services)."""
    workflow_id = activity.info().workflow_id if activity.in_activity() else None
    with structlog.contextvars.bound_contextvars(activity=name, workflow_id=workflow_id, **ids):
        try:
            yield
        except CatalogError as error:
            log.warning("catalog refused the request", error=str(error))
            raise ApplicationError(
                str(error), type=type(error).__name__, non_retryable=True
            ) from None
        except REFUSED_WRITES as error:
            log.error("catalog constraint violated", error=str(error))
            raise ApplicationError(
                f"the catalog refused the write: {error}",
                type="CatalogRejected",
                non_retryable=True,
            ) from error


class CatalogActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

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

    @activity.defn(name="load_actor_roles")
    async def load_actor_roles(self, request: ActorRolesRequest) -> list[Role]:
        # The request names no release; the workflow id is the release id.
        release_id = (activity.info().workflow_id or "") if activity.in_activity() else ""
        with activity_scope("load_actor_roles", release_id=release_id):
            roles = await releases.load_actor_roles(self._pool, request)
            log.info("actor roles loaded", actor=request.actor, roles=[r.value for r in roles])
            return roles

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
