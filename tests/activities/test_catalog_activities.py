"""The activities as Temporal runs them: typed, logged with their ids, refusals non-retryable."""

import asyncpg
import pytest
import structlog
from structlog.testing import capture_logs
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.release.catalog import CatalogActivities
from mpr.catalog.admin import Membership, add_member
from mpr.domain.core.models import Role
from mpr.domain.release.models import ActorRolesRequest
from mpr.domain.release.records import TransitionResult
from mpr.domain.release.stages import Stage
from tests.catalog.factories import Release, context_request
from tests.identity import verifying


@pytest.fixture
def activities(db_pool: asyncpg.Pool) -> CatalogActivities:
    return CatalogActivities(db_pool, verifying())


async def test_recording_a_transition_logs_the_release(activities: CatalogActivities) -> None:
    release = Release()
    transition = release.to(Stage.BUILDING)

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        result = await ActivityEnvironment().run(activities.record_transition, transition)

    assert result == TransitionResult(applied=True)
    assert logs[-1]["event"] == "transition recorded"
    assert logs[-1]["activity"] == "record_transition"
    assert logs[-1]["release_id"] == release.release_id
    assert "workflow_id" in logs[-1]


async def test_an_unknown_target_app_is_not_retried(activities: CatalogActivities) -> None:
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(
            activities.load_release_context, context_request(app="wechat")
        )

    assert refused.value.type == "UnknownTargetApp"
    assert refused.value.non_retryable
    assert "known target apps: alipaycn, dana, gcash, gopay" in refused.value.message


async def test_a_write_violating_the_schema_is_not_retried(activities: CatalogActivities) -> None:
    orphan = Release().to(Stage.COMPATIBILITY_TESTING, package_sha256="0" * 64)

    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(activities.record_transition, orphan)

    assert (refused.value.type, refused.value.non_retryable) == ("CatalogRejected", True)


async def test_roles_are_loaded(activities: CatalogActivities, db_pool: asyncpg.Pool) -> None:
    await add_member(db_pool, Membership(workspace_id="ws", user_id="alice", role=Role.MASTER))
    request = ActorRolesRequest(
        workspace_id="ws", mini_program_id="prog", target_app="gopay", actor="alice"
    )

    assert await ActivityEnvironment().run(activities.load_actor_roles, request) == [Role.MASTER]
