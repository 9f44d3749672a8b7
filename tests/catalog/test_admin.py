import asyncpg
import pytest
from pydantic import ValidationError

from mpr.catalog import UnknownTargetApp
from mpr.catalog.admin import (
    Membership,
    add_member,
    get_target_app,
    list_members,
    list_target_apps,
    new_catalog,
    remove_member,
    set_target_app,
)
from mpr.domain.core.models import Role
from mpr.domain.release.models import Reviewer, TargetAppPolicy

DEV = Membership(workspace_id="ws", user_id="alice", role=Role.DEVELOPER)
PA = Membership(workspace_id="ws", user_id="bob", role=Role.PROGRAM_ADMIN, mini_program_id="prog")
PARTNER = Membership(
    workspace_id="gopay-org", user_id="carol", role=Role.PARTNER_REVIEWER, target_app="gopay"
)


async def test_members_are_added_listed_and_removed(db_pool: asyncpg.Pool) -> None:
    assert [await add_member(db_pool, m) for m in (DEV, PA, PARTNER)] == [True] * 3
    assert await add_member(db_pool, DEV) is False

    assert await list_members(db_pool) == [PARTNER, DEV, PA]
    assert await list_members(db_pool, workspace_id="ws") == [DEV, PA]
    assert await list_members(db_pool, user_id="carol") == [PARTNER]
    assert await list_members(db_pool, workspace_id="ws", user_id="carol") == []

    assert await remove_member(db_pool, DEV) is True
    assert await remove_member(db_pool, DEV) is False
    assert await list_members(db_pool, workspace_id="ws") == [PA]


async def test_a_role_in_one_scope_is_removed_from_that_scope_only(db_pool: asyncpg.Pool) -> None:
    other = PA.model_copy(update={"mini_program_id": "other"})
    await add_member(db_pool, PA)
    await add_member(db_pool, other)

    await remove_member(db_pool, PA)

    assert await list_members(db_pool, user_id="bob") == [other]


@pytest.mark.parametrize(
    "fields",
    [
        {"role": Role.PROGRAM_ADMIN},
        {"role": Role.DEVELOPER, "mini_program_id": "prog"},
        {"role": Role.PARTNER_REVIEWER},
        {"role": Role.PLATFORM_REVIEWER, "target_app": "gopay"},
        {"role": "superuser"},
        {"role": Role.OWNER, "workspace_id": "has space"},
    ],
)
def test_memberships_are_scoped_by_role(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Membership.model_validate({"workspace_id": "ws", "user_id": "alice", **fields})


async def test_a_partner_reviewer_needs_a_known_target_app(db_pool: asyncpg.Pool) -> None:
    with pytest.raises(UnknownTargetApp, match="'wechat'"):
        await add_member(db_pool, PARTNER.model_copy(update={"target_app": "wechat"}))
    assert await list_members(db_pool) == []


async def test_target_apps_are_created_and_changed(db_pool: asyncpg.Pool) -> None:
    policy = TargetAppPolicy(
        target_app="truemoney",
        display_name="TrueMoney",
        required_reviewers=[Reviewer.PARTNER_APP],
        grayscale_ladder=[10, 50, 100],
    )
    await set_target_app(db_pool, policy)
    assert await get_target_app(db_pool, "truemoney") == policy

    stricter = policy.model_copy(
        update={"required_reviewers": [Reviewer.PLATFORM, Reviewer.PARTNER_APP]}
    )
    await set_target_app(db_pool, stricter)
    assert await get_target_app(db_pool, "truemoney") == stricter
    assert [p.target_app for p in await list_target_apps(db_pool)] == [
        "alipaycn",
        "dana",
        "gcash",
        "gopay",
        "truemoney",
    ]


async def test_an_unknown_target_app_reads_as_none(db_pool: asyncpg.Pool) -> None:
    assert await get_target_app(db_pool, "wechat") is None


@pytest.mark.parametrize("name", ['x"; DROP DATABASE mpr; --', "Upper", "", "1st", "a" * 64])
async def test_a_new_catalog_takes_only_a_plain_database_name(name: str) -> None:
    with pytest.raises(ValueError, match="a database name is lower case letters"):
        await new_catalog("postgresql://unused", name, "postgresql://unused")
