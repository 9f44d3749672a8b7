"""Administration of the catalog: workspace memberships, target app policies and their QR
link templates, and mini programs' trial members."""

import re
from collections.abc import Iterable
from typing import Self

import asyncpg
from pydantic import Field, model_validator

from mpr.catalog import CatalogError, UnknownTargetApp
from mpr.catalog.db import (
    CONNECT_TIMEOUT_SECONDS,
    Database,
    apply_migrations,
    connection,
    create_pool,
)
from mpr.domain.core.models import IDENTIFIER, Role, Strict, UserId
from mpr.domain.qr import LinkTemplates
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


# --- QR link templates (docs/qr-codes.md) -----------------------------------------------------


async def set_link_templates(db: Database, target_app: str, templates: LinkTemplates) -> None:
    """Replace the target app's link templates (the model has validated them)."""
    status: str = await db.execute(
        """
        UPDATE target_app_policies
        SET official_link_template = $2, trial_link_template = $3, updated_at = now()
        WHERE target_app = $1
        """,
        target_app,
        templates.official,
        templates.trial,
    )
    if status != "UPDATE 1":
        await require_target_app(db, target_app)  # raises UnknownTargetApp


async def get_link_templates(db: Database, target_app: str) -> LinkTemplates | None:
    """The target app's templates; None when there is no such target app."""
    row = await db.fetchrow(
        "SELECT official_link_template, trial_link_template FROM target_app_policies "
        "WHERE target_app = $1",
        target_app,
    )
    return _templates(row) if row else None


async def list_link_templates(db: Database) -> dict[str, LinkTemplates]:
    rows = await db.fetch(
        "SELECT target_app, official_link_template, trial_link_template "
        "FROM target_app_policies ORDER BY target_app"
    )
    return {row["target_app"]: _templates(row) for row in rows}


def _templates(row: asyncpg.Record) -> LinkTemplates:
    # Read as stored: a template written before today's checks still shows, to be replaced.
    return LinkTemplates.model_construct(
        official=row["official_link_template"], trial=row["trial_link_template"]
    )


# --- trial members ---------------------------------------------------------------------------

MAX_TRIAL_MEMBERS = 1000
"""Per mini program, as many as a release's whitelist may hold: resolve_version's cache keeps
them in memory (mpr.catalog.rollout.ChannelCache)."""


class TrialMember(Strict):
    """A super app user who is served the versions of a mini program's trial codes."""

    mini_program_id: str = Field(pattern=IDENTIFIER)
    user_id: UserId


class UnknownMiniProgram(CatalogError):
    def __init__(self, mini_program_id: str) -> None:
        super().__init__(
            f"unknown mini program {mini_program_id!r}: the catalog knows a mini program once "
            "a release of it has started"
        )
        self.mini_program_id = mini_program_id


class TooManyTrialMembers(CatalogError):
    def __init__(self, mini_program_id: str) -> None:
        super().__init__(
            f"{mini_program_id} has {MAX_TRIAL_MEMBERS} trial members, the most it may have: "
            "remove one first"
        )


async def add_trial_member(db: Database, member: TrialMember) -> bool:
    """Add the trial member; False when the user already was one."""
    async with connection(db) as conn, conn.transaction():
        # The row lock serialises concurrent additions, so the bound holds.
        known = await conn.fetchval(
            "SELECT true FROM mini_programs WHERE mini_program_id = $1 FOR UPDATE",
            member.mini_program_id,
        )
        if not known:
            raise UnknownMiniProgram(member.mini_program_id)
        status: str = await conn.execute(
            """
            INSERT INTO trial_members (mini_program_id, user_id)
            SELECT $1, $2
            WHERE (SELECT count(*) FROM trial_members WHERE mini_program_id = $1) < $3
            ON CONFLICT DO NOTHING
            """,
            member.mini_program_id,
            member.user_id,
            MAX_TRIAL_MEMBERS,
        )
        if status == "INSERT 0 1":
            return True
        already = await conn.fetchval(
            "SELECT true FROM trial_members WHERE mini_program_id = $1 AND user_id = $2",
            member.mini_program_id,
            member.user_id,
        )
        if already:
            return False
        raise TooManyTrialMembers(member.mini_program_id)


async def remove_trial_member(db: Database, member: TrialMember) -> bool:
    """Remove the trial member; False when the user was not one."""
    status: str = await db.execute(
        "DELETE FROM trial_members WHERE mini_program_id = $1 AND user_id = $2",
        member.mini_program_id,
        member.user_id,
    )
    return status == "DELETE 1"


async def list_trial_members(db: Database, mini_program_id: str) -> list[TrialMember]:
    rows = await db.fetch(
        "SELECT mini_program_id, user_id FROM trial_members WHERE mini_program_id = $1 "
        "ORDER BY user_id",
        mini_program_id,
    )
    return [TrialMember.model_validate(dict(row)) for row in rows]


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
