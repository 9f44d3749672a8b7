import asyncio
import re

import asyncpg
import pytest

from mpr.catalog.admin import get_target_app
from mpr.catalog.db import MigrationError, apply_migrations, migration_files
from mpr.domain.channel.stages import TakedownKind, VersionStatus
from mpr.domain.core.models import Role
from mpr.domain.release.models import Environment, Reviewer, TargetAppPolicy
from mpr.domain.release.stages import Stage

ALL = [path.name for path in migration_files()]


async def test_each_migration_is_applied_once(fresh_database_url: str) -> None:
    assert await apply_migrations(fresh_database_url) == ALL
    assert await apply_migrations(fresh_database_url) == []

    conn = await asyncpg.connect(fresh_database_url)
    try:
        recorded = await conn.fetch("SELECT name FROM schema_migrations ORDER BY name")
    finally:
        await conn.close()
    assert [row["name"] for row in recorded] == ALL


async def test_processes_starting_together_apply_each_migration_once(
    fresh_database_url: str,
) -> None:
    results = await asyncio.gather(*(apply_migrations(fresh_database_url) for _ in range(5)))

    assert sorted(name for applied in results for name in applied) == ALL
    assert results.count([]) == 4


async def test_an_applied_migration_that_changed_is_refused(fresh_database_url: str) -> None:
    await apply_migrations(fresh_database_url)
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute("UPDATE schema_migrations SET sha256 = 'edited' WHERE name = $1", ALL[0])
    finally:
        await conn.close()

    with pytest.raises(MigrationError, match=ALL[0]):
        await apply_migrations(fresh_database_url)


async def _check_values(pool: asyncpg.Pool, constraint: str) -> set[str]:
    definition = await pool.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1", constraint
    )
    return set(re.findall(r"'([^']+)'::text", definition))


async def test_check_constraints_follow_the_domain_enums(db_pool: asyncpg.Pool) -> None:
    assert await _check_values(db_pool, "releases_stage_check") == {
        *Stage, *VersionStatus}
    assert await _check_values(db_pool, "channels_offline_kind_check") == set(TakedownKind)
    assert await _check_values(db_pool, "version_changes_change_check") == {
        "released", "restored", *(status.lower() for status in VersionStatus
                                  if status is not VersionStatus.RELEASED)}
    assert await _check_values(db_pool, "releases_environment_check") == set(Environment)
    assert await _check_values(db_pool, "workspace_members_role_check") == set(Role)
    assert await _check_values(db_pool, "review_requests_organisation_check") == set(Reviewer)


async def test_target_apps_are_seeded(db_pool: asyncpg.Pool) -> None:
    ladder = [1, 2, 5, 10, 20, 50, 100]
    assert await get_target_app(db_pool, "alipaycn") == TargetAppPolicy(
        target_app="alipaycn",
        display_name="Alipay China",
        required_reviewers=[Reviewer.PLATFORM, Reviewer.PARTNER_APP],
        first_release_full_only=False,
        whitelist_allowed=False,
        grayscale_ladder=ladder,
    )
    assert await get_target_app(db_pool, "gopay") == TargetAppPolicy(
        target_app="gopay",
        display_name="GoPay",
        required_reviewers=[Reviewer.PARTNER_APP],
        first_release_full_only=True,
        whitelist_allowed=True,
        grayscale_ladder=ladder,
    )


@pytest.mark.parametrize(
    "ladder",
    ["{}", "{1,2,50}", "{5,2,100}", "{0,100}", "{1,1,100}"],
)
async def test_the_database_refuses_an_invalid_ladder(db_pool: asyncpg.Pool, ladder: str) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await db_pool.execute(
            "INSERT INTO target_app_policies (target_app, required_reviewers, grayscale_ladder) "
            "VALUES ('bad', '{platform}', $1::text::int[])",
            ladder,
        )
