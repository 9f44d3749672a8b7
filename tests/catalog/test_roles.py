import asyncpg
import pytest

from mpr.catalog.admin import Membership, add_member
from mpr.catalog.releases import load_actor_roles
from mpr.domain.core.models import Role
from mpr.domain.release.models import ActorRolesRequest

RELEASE = {"workspace_id": "ws", "mini_program_id": "prog", "target_app": "gopay"}


async def roles_of(pool: asyncpg.Pool, actor: str) -> list[Role]:
    return await load_actor_roles(pool, ActorRolesRequest(actor=actor, **RELEASE))


async def grant(
    pool: asyncpg.Pool, user: str, role: Role, workspace: str = "ws", **scope: str
) -> None:
    await add_member(pool, Membership(workspace_id=workspace, user_id=user, role=role, **scope))


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.MASTER, Role.DEVELOPER])
async def test_workspace_roles_count_in_their_workspace_only(
    db_pool: asyncpg.Pool, role: Role
) -> None:
    await grant(db_pool, "member", role)
    await grant(db_pool, "outsider", role, workspace="other-ws")

    assert await roles_of(db_pool, "member") == [role]
    assert await roles_of(db_pool, "outsider") == []


async def test_program_admin_counts_for_its_program_in_its_workspace(db_pool: asyncpg.Pool) -> None:
    await grant(db_pool, "pa", Role.PROGRAM_ADMIN, mini_program_id="prog")
    await grant(db_pool, "other-program", Role.PROGRAM_ADMIN, mini_program_id="elsewhere")
    await grant(
        db_pool, "other-ws", Role.PROGRAM_ADMIN, workspace="other-ws", mini_program_id="prog"
    )

    assert await roles_of(db_pool, "pa") == [Role.PROGRAM_ADMIN]
    assert await roles_of(db_pool, "other-program") == []
    assert await roles_of(db_pool, "other-ws") == []


async def test_platform_reviewers_review_every_workspace(db_pool: asyncpg.Pool) -> None:
    await grant(db_pool, "reviewer", Role.PLATFORM_REVIEWER, workspace="platform")

    assert await roles_of(db_pool, "reviewer") == [Role.PLATFORM_REVIEWER]


async def test_partner_reviewers_review_their_target_app_only(db_pool: asyncpg.Pool) -> None:
    await grant(
        db_pool, "gopay-rev", Role.PARTNER_REVIEWER, workspace="gopay-org", target_app="gopay"
    )
    await grant(
        db_pool, "gcash-rev", Role.PARTNER_REVIEWER, workspace="gcash-org", target_app="gcash"
    )

    assert await roles_of(db_pool, "gopay-rev") == [Role.PARTNER_REVIEWER]
    assert await roles_of(db_pool, "gcash-rev") == []


async def test_an_actor_holds_every_role_granted_once(db_pool: asyncpg.Pool) -> None:
    await grant(db_pool, "lead", Role.DEVELOPER)
    await grant(db_pool, "lead", Role.ADMIN)
    await grant(db_pool, "lead", Role.PROGRAM_ADMIN, mini_program_id="prog")
    await grant(db_pool, "lead", Role.DEVELOPER, workspace="other-ws")

    assert await roles_of(db_pool, "lead") == [Role.ADMIN, Role.DEVELOPER, Role.PROGRAM_ADMIN]


async def test_a_stranger_has_no_role(db_pool: asyncpg.Pool) -> None:
    assert await roles_of(db_pool, "nobody") == []
