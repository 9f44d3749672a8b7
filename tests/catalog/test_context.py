import asyncpg
import pytest

from mpr.catalog import MiniProgramInAnotherWorkspace, UnknownTargetApp
from mpr.catalog.releases import load_release_context
from mpr.domain.release.models import Environment
from mpr.domain.release.stages import Stage
from tests.catalog.factories import Release, context_request, to_released


async def test_a_first_release_has_no_previous_version(db_pool: asyncpg.Pool) -> None:
    context = await load_release_context(db_pool, context_request())

    assert context.policy.target_app == "gopay"
    assert context.policy.first_release_full_only
    assert (context.first_release, context.previous_stable_version) == (True, None)


async def test_a_later_release_knows_the_stable_version(db_pool: asyncpg.Pool) -> None:
    await to_released(db_pool, Release("1.0.0"))

    context = await load_release_context(db_pool, context_request("2.0.0"))
    assert (context.first_release, context.previous_stable_version) == (False, "1.0.0")

    elsewhere = context_request("2.0.0", environment=Environment.SANDBOX)
    assert (await load_release_context(db_pool, elsewhere)).first_release


async def test_a_release_that_never_went_live_does_not_count(db_pool: asyncpg.Pool) -> None:
    await Release("1.0.0").move(db_pool, Stage.CANCELED)

    assert (await load_release_context(db_pool, context_request())).first_release


async def test_an_unknown_target_app_is_named_with_the_known_ones(db_pool: asyncpg.Pool) -> None:
    with pytest.raises(UnknownTargetApp) as refused:
        await load_release_context(db_pool, context_request(app="wechat"))

    assert str(refused.value) == (
        "unknown target app 'wechat'; known target apps: alipaycn, dana, gcash, gopay"
    )


async def test_a_mini_program_is_released_from_its_own_workspace(db_pool: asyncpg.Pool) -> None:
    await Release("1.0.0", workspace="ws").move(db_pool, Stage.BUILDING)

    with pytest.raises(MiniProgramInAnotherWorkspace, match="belongs to workspace 'ws'"):
        await load_release_context(db_pool, context_request(workspace="intruder"))
