"""Administration of the catalog: workspace memberships and target app policies."""

import re
from collections.abc import Iterable
from typing import Self

import asyncpg
from pydantic import Field, model_validator

from mpr.catalog import UnknownTargetApp
from mpr.catalog.db import CONNECT_TIMEOUT_SECONDS, Database, apply_migrations, create_pool
from mpr.domain.core.models import IDENTIFIER, Role, Strict, UserId
from mpr.domain.release.models import TargetAppPolicy

DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Empty means "not scoped"; the table stores '' rather than NULL so it can be in the key.
OPTIONAL_IDENTIFIER = rf"^(?:{IDENTIFIER[1:-1]})?$"

# Roles held for one target app: its partner reviewers, and the super app's own operators of
# its mini service page (seed 004).
TARGET_APP_ROLES = (Role.PARTNER_REVIEWER, Role.SERVICE_OPERATOR, Role.SERVICE_ADMIN)


class Membership(Strict):
    """One role of one user, as stored in workspace_members."""

    workspace_id: str = Field(pattern=IDENTIFIER)
    user_id: UserId
    role: Role
    mini_program_id: str = Field(default="", pattern=OPTIONAL_IDENTIFIER)
    target_app: str = Field(default="", pattern=OPTIONAL_IDENTIFIER)

    @model_validator(mode="after")
    def _scope(self) -> Self:
        if (self.role is Role.PROGRAM_ADMIN) != bool(self.mini_program_id):
            raise ValueError("a mini program is given exactly for the program_admin role")
        if (self.role in TARGET_APP_ROLES) != bool(self.target_app):
            roles = ", ".join(TARGET_APP_ROLES)
            raise ValueError(f"a target app is given exactly for the roles {roles}")
        return self


MEMBER_KEY = (
    "workspace_id = $1 AND user_id = $2 AND role = $3 AND mini_program_id = $4 AND target_app = $5"
)


def _key(member: Membership) -> tuple[str, str, str, str, str]:
    return (
        member.workspace_id,
        member.user_id,
        member.role.value,
        member.mini_program_id,
        member.target_app,
    )


async def add_member(db: Database, member: Membership) -> bool:
    """Grant the role; False when the user already held it."""
    if member.target_app:
        await require_target_app(db, member.target_app)
    status: str = await db.execute(
        """
        INSERT INTO workspace_members (workspace_id, user_id, role, mini_program_id, target_app)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT DO NOTHING
        """,
        *_key(member),
    )
    return status == "INSERT 0 1"


async def remove_member(db: Database, member: Membership) -> bool:
    """Revoke the role; False when the user did not hold it."""
    status: str = await db.execute(
        f"DELETE FROM workspace_members WHERE {MEMBER_KEY}", *_key(member)
    )
    return status == "DELETE 1"


async def list_members(
    db: Database, *, workspace_id: str | None = None, user_id: str | None = None
) -> list[Membership]:
    rows = await db.fetch(
        """
        SELECT workspace_id, user_id, role, mini_program_id, target_app
        FROM workspace_members
        WHERE ($1::text IS NULL OR workspace_id = $1) AND ($2::text IS NULL OR user_id = $2)
        ORDER BY workspace_id, user_id, role, mini_program_id, target_app
        """,
        workspace_id,
        user_id,
    )
    return [Membership.model_validate(dict(row)) for row in rows]


def _policy(row: asyncpg.Record) -> TargetAppPolicy:
    return TargetAppPolicy.model_validate(dict(row))


POLICY_COLUMNS = (
    "target_app, display_name, required_reviewers, first_release_full_only, whitelist_allowed, "
    "grayscale_ladder"
)


async def set_target_app(db: Database, policy: TargetAppPolicy) -> None:
    """Create the target app or replace its policy (the model has validated it)."""
    await db.execute(
        f"""
        INSERT INTO target_app_policies ({POLICY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (target_app) DO UPDATE SET
            display_name = EXCLUDED.display_name,
            required_reviewers = EXCLUDED.required_reviewers,
            first_release_full_only = EXCLUDED.first_release_full_only,
            whitelist_allowed = EXCLUDED.whitelist_allowed,
            grayscale_ladder = EXCLUDED.grayscale_ladder,
            updated_at = now()
        """,
        policy.target_app,
        policy.display_name,
        [reviewer.value for reviewer in policy.required_reviewers],
        policy.first_release_full_only,
        policy.whitelist_allowed,
        policy.grayscale_ladder,
    )


async def get_target_app(db: Database, target_app: str) -> TargetAppPolicy | None:
    row = await db.fetchrow(
        f"SELECT {POLICY_COLUMNS} FROM target_app_policies WHERE target_app = $1", target_app
    )
    return _policy(row) if row else None


async def require_target_app(db: Database, target_app: str) -> TargetAppPolicy:
    policy = await get_target_app(db, target_app)
    if policy is None:
        known = await db.fetch("SELECT target_app FROM target_app_policies ORDER BY target_app")
        raise UnknownTargetApp(target_app, [row["target_app"] for row in known])
    return policy


async def list_target_apps(db: Database) -> list[TargetAppPolicy]:
    rows = await db.fetch(f"SELECT {POLICY_COLUMNS} FROM target_app_policies ORDER BY target_app")
    return [_policy(row) for row in rows]


async def new_catalog(admin_url: str, name: str, database_url: str,
                      members: Iterable[Membership] = ()) -> None:
    """Create the database `name` (which `database_url` reaches), migrate it and grant
    `members`: a catalog of its own for a test session or a benchmark run."""
    # An identifier cannot be a query parameter: it is checked instead.
    if not DATABASE_NAME.fullmatch(name):
        raise ValueError(f"a database name is lower case letters, digits and _, not {name!r}")
    admin = await asyncpg.connect(admin_url, timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    await apply_migrations(database_url)
    pool = await create_pool(database_url)
    try:
        for member in members:
            await add_member(pool, member)
    finally:
        await pool.close()
