"""The catalog side of the super apps' mini service pages (seed 004)."""

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.mini_service.catalog import MiniServiceCatalogActivities
from mpr.catalog import InvalidTransition, UnknownTargetApp
from mpr.catalog import db as catalog_db
from mpr.catalog.admin import Membership, add_member, list_members
from mpr.catalog.db import apply_migrations, migration_files
from mpr.catalog.mini_services import (
    NotDuplicable,
    allocate_service_version,
    duplicable_content,
    get_service_version,
    is_service_archived,
    list_service_versions,
    load_service_context,
    load_service_roles,
    record_service_transition,
    resolve_mini_service,
    resolve_mini_service_detail,
)
from mpr.domain.core.models import Role
from mpr.domain.mini_service.models import (
    MiniServiceContent,
    Section,
    SectionKind,
    ServiceRolesRequest,
    ServiceVersionRef,
)
from mpr.domain.mini_service.records import (
    ServiceEvent,
    ServiceRow,
    ServiceTransition,
    ServiceTransitionResult,
)
from mpr.domain.mini_service.stages import ServiceStatus
from tests.catalog.readers import list_service_events
from tests.identity import verifying
from tests.mpr_runner import Mpr, catalog_mpr  # noqa: F401 (the module's `mpr`)

START = datetime(2025, 1, 1, tzinfo=UTC)
DRAFT, TESTING, RELEASING = ServiceStatus.DRAFT, ServiceStatus.TESTING, ServiceStatus.RELEASING
RELEASED, ARCHIVED = ServiceStatus.RELEASED, ServiceStatus.ARCHIVED


class Version:
    """One mini service version's catalog writes, shaped like the workflow's, in order."""

    def __init__(
        self, version_no: int, *, app: str = "gopay", duplicated_from: int | None = None
    ) -> None:
        self.seq = 0
        self.row = ServiceRow(
            super_app=app,
            version_no=version_no,
            status=DRAFT,
            percent=0,
            content=MiniServiceContent.new(),
            testers=[],
            created_by="operator",
            duplicated_from=duplicated_from,
            at=START,
        )

    def to(
        self, status: ServiceStatus, *, promote: bool = False, **row_changes: Any
    ) -> ServiceTransition:
        self.seq += 1
        at = START + timedelta(seconds=self.seq)
        event = ServiceEvent(
            event_id=str(uuid.uuid4()),
            super_app=self.row.super_app,
            version_no=self.row.version_no,
            seq=self.seq,
            command=status.lower(),
            actor="operator",
            accepted=True,
            status_before=self.row.status,
            status_after=status,
            payload={"note": "test"},
            at=at,
        )
        row = self.row.model_copy(update={"status": status, "at": at, **row_changes})
        return ServiceTransition(event=event, row=row, promote=promote)

    async def record(
        self, pool: asyncpg.Pool, transition: ServiceTransition
    ) -> ServiceTransitionResult:
        result = await record_service_transition(pool, transition)
        if result.applied and transition.row is not None:
            self.row = transition.row
        return result

    async def move(
        self, pool: asyncpg.Pool, status: ServiceStatus, **changes: Any
    ) -> ServiceTransitionResult:
        return await self.record(pool, self.to(status, **changes))

    async def release(self, pool: asyncpg.Pool, **row_changes: Any) -> ServiceTransitionResult:
        await self.move(pool, TESTING)
        await self.move(pool, RELEASING, percent=10)
        return await self.move(pool, RELEASED, percent=100, promote=True, **row_changes)


async def status_of(pool: asyncpg.Pool, version_no: int, app: str = "gopay") -> ServiceStatus:
    stored = await get_service_version(pool, app, version_no)
    assert stored is not None
    return stored.status


# --- Allocation and context --------------------------------------------------------------------


async def test_versions_are_numbered_per_super_app(db_pool: asyncpg.Pool) -> None:
    assert [await allocate_service_version(db_pool, "gopay") for _ in range(3)] == [1, 2, 3]
    assert await allocate_service_version(db_pool, "dana") == 1
    assert await allocate_service_version(db_pool, "gopay") == 4


async def test_concurrent_allocations_never_collide(db_pool: asyncpg.Pool) -> None:
    numbers = await asyncio.gather(*(allocate_service_version(db_pool, "gcash") for _ in range(20)))

    assert sorted(numbers) == list(range(1, 21))


async def test_an_unknown_super_app_has_no_versions_or_context(db_pool: asyncpg.Pool) -> None:
    with pytest.raises(UnknownTargetApp, match="'wechat'"):
        await allocate_service_version(db_pool, "wechat")
    with pytest.raises(UnknownTargetApp, match="known target apps: alipaycn, dana, gcash, gopay"):
        await load_service_context(db_pool, "wechat")


async def test_the_context_carries_the_super_apps_ladder(db_pool: asyncpg.Pool) -> None:
    context = await load_service_context(db_pool, "dana")

    assert context.grayscale_ladder == [1, 5, 10, 25, 50, 100]


# --- Transitions -------------------------------------------------------------------------------


async def test_a_transition_writes_the_row_and_its_event(db_pool: asyncpg.Pool) -> None:
    content = MiniServiceContent.new()
    content.sections.append(
        Section(section_id="s1", kind=SectionKind.RECOMMENDED, mini_program_ids=["prog"])
    )
    version = Version(1)
    await version.move(db_pool, DRAFT, content=content)

    result = await version.move(db_pool, TESTING, testers=["qa@example.com"])

    assert result.applied and result.reason is None and result.archived_version is None
    assert [(v.version_no, v.status) for v in result.history] == [(1, TESTING)]
    stored = await get_service_version(db_pool, "gopay", 1)
    assert stored is not None
    assert (stored.status, stored.content, stored.testers) == (TESTING, content, ["qa@example.com"])
    assert stored.created_at == START + timedelta(seconds=1)
    assert stored.released_at is None and stored.archived_at is None
    events = await list_service_events(db_pool, "gopay", 1)
    assert [(e.seq, e.command, e.status_before, e.status_after) for e in events] == [
        (1, "draft", DRAFT, DRAFT),
        (2, "testing", DRAFT, TESTING),
    ]


async def test_a_retried_write_returns_the_first_result(db_pool: asyncpg.Pool) -> None:
    version = Version(1)
    transition = version.to(DRAFT)

    first, again = [await record_service_transition(db_pool, transition) for _ in range(2)]
    together = await asyncio.gather(
        *(record_service_transition(db_pool, transition) for _ in range(5))
    )

    assert again == first and all(result == first for result in together)
    assert len(await list_service_events(db_pool, "gopay", 1)) == 1


async def test_a_command_refused_by_the_workflow_is_logged_only(db_pool: asyncpg.Pool) -> None:
    version = Version(1)
    await version.move(db_pool, DRAFT)
    refused = version.to(DRAFT)
    refused = ServiceTransition(
        event=refused.event.model_copy(update={"accepted": False, "reason": "not allowed"})
    )

    result = await record_service_transition(db_pool, refused)

    assert (result.applied, result.reason) == (True, None)
    events = await list_service_events(db_pool, "gopay", 1)
    assert (events[-1].accepted, events[-1].reason) == (False, "not allowed")


async def test_a_second_version_in_flight_is_refused(db_pool: asyncpg.Pool) -> None:
    first, second = Version(1), Version(2)
    await first.move(db_pool, DRAFT)
    await second.move(db_pool, DRAFT)
    await first.move(db_pool, TESTING)

    held = await second.move(db_pool, TESTING)

    reason = "mini service version 1 of gopay is already TESTING; revert or release it first"
    assert (held.applied, held.reason) == (False, reason)
    assert await status_of(db_pool, 2) is DRAFT
    refusal = (await list_service_events(db_pool, "gopay", 2))[-1]
    assert (refusal.accepted, refusal.status_after, refusal.blocked_by) == (False, DRAFT, 1)
    assert refusal.reason == reason


async def test_a_retried_refusal_stays_refused(db_pool: asyncpg.Pool) -> None:
    first, second = Version(1), Version(2)
    await first.move(db_pool, TESTING)
    attempt = second.to(TESTING)
    refused = await record_service_transition(db_pool, attempt)

    await first.move(db_pool, DRAFT)

    assert (await record_service_transition(db_pool, attempt)).applied is False
    assert refused.applied is False
    assert len(await list_service_events(db_pool, "gopay", 2)) == 1


@pytest.mark.parametrize("freeing", [DRAFT, RELEASED])
async def test_the_hold_is_freed_by_revert_or_release(
    db_pool: asyncpg.Pool, freeing: ServiceStatus
) -> None:
    first, second = Version(1), Version(2)
    await first.move(db_pool, RELEASING, percent=5)
    assert (await second.move(db_pool, TESTING)).reason == (
        "mini service version 1 of gopay is already RELEASING; revert or release it first"
    )

    await first.move(db_pool, freeing, promote=freeing is RELEASED)

    assert (await second.move(db_pool, TESTING)).applied


async def test_the_hold_is_per_super_app(db_pool: asyncpg.Pool) -> None:
    await Version(1, app="gopay").move(db_pool, TESTING)

    assert (await Version(1, app="dana").move(db_pool, TESTING)).applied


async def test_a_release_archives_the_previous_one(db_pool: asyncpg.Pool) -> None:
    first, second = Version(1), Version(2)
    assert (await first.release(db_pool)).archived_version is None

    result = await second.release(db_pool)

    assert result.archived_version == 1
    assert [(v.version_no, v.status) for v in result.history] == [(2, RELEASED), (1, ARCHIVED)]
    archived = await get_service_version(db_pool, "gopay", 1)
    assert archived is not None and archived.archived_at == second.row.at
    assert archived.released_at == START + timedelta(seconds=3)
    assert await is_service_archived(db_pool, ServiceVersionRef(super_app="gopay", version_no=1))
    assert not await is_service_archived(
        db_pool, ServiceVersionRef(super_app="gopay", version_no=2)
    )
    assert not await is_service_archived(
        db_pool, ServiceVersionRef(super_app="gopay", version_no=9)
    )
    assert (await list_service_events(db_pool, "gopay", 2))[-1].archived_version == 1


async def test_promoting_twice_changes_nothing(db_pool: asyncpg.Pool) -> None:
    first, second = Version(1), Version(2)
    await first.release(db_pool)
    await second.release(db_pool)
    before = await list_service_versions(db_pool, "gopay")

    again = await second.move(db_pool, RELEASED, percent=100, promote=True)

    assert again.applied and again.archived_version is None
    assert again.history == before == await list_service_versions(db_pool, "gopay")


async def test_a_late_write_of_an_archived_version_does_not_revive_it(
    db_pool: asyncpg.Pool,
) -> None:
    first, second = Version(1), Version(2)
    await first.release(db_pool)
    await second.release(db_pool)

    late = await first.move(db_pool, RELEASED, percent=100, promote=True)
    mirrored = await first.move(db_pool, ARCHIVED)

    assert late.applied and late.archived_version is None
    assert mirrored.applied
    assert [(v.version_no, v.status) for v in mirrored.history] == [(2, RELEASED), (1, ARCHIVED)]


async def test_never_two_released_versions(db_pool: asyncpg.Pool) -> None:
    for version_no in range(1, 5):
        await Version(version_no).release(db_pool)

    statuses = [v.status for v in await list_service_versions(db_pool, "gopay")]
    assert statuses == [RELEASED, ARCHIVED, ARCHIVED, ARCHIVED]
    with pytest.raises(asyncpg.UniqueViolationError):
        await db_pool.execute(
            "UPDATE mini_service_versions SET status = 'RELEASED', archived_at = NULL "
            "WHERE super_app = 'gopay' AND version_no = 1"
        )


async def test_a_deleted_draft_stays_in_the_history(db_pool: asyncpg.Pool) -> None:
    draft = Version(1)
    await draft.move(db_pool, DRAFT)

    result = await draft.move(db_pool, ServiceStatus.DELETED)

    assert [(v.version_no, v.status) for v in result.history] == [(1, ServiceStatus.DELETED)]


@pytest.mark.parametrize(
    "contradiction",
    [
        pytest.param(lambda v: v.to(TESTING, promote=True), id="promote-while-testing"),
        pytest.param(lambda v: v.to(DRAFT, version_no=7), id="another-version's-row"),
        pytest.param(lambda v: v.to(ARCHIVED), id="archived-by-the-workflow"),
        pytest.param(
            lambda v: ServiceTransition(event=v.to(RELEASED).event, promote=True),
            id="promote-without-row",
        ),
    ],
)
async def test_self_contradicting_writes_are_refused(
    db_pool: asyncpg.Pool, contradiction: Any
) -> None:
    version = Version(1)
    await version.move(db_pool, DRAFT)

    with pytest.raises(InvalidTransition):
        await record_service_transition(db_pool, contradiction(version))
    assert len(await list_service_events(db_pool, "gopay", 1)) == 1


async def test_released_without_promotion_is_refused(db_pool: asyncpg.Pool) -> None:
    await Version(1).release(db_pool)
    second = Version(2)
    await second.move(db_pool, RELEASING, percent=50)

    with pytest.raises(InvalidTransition, match="without being promoted"):
        await second.move(db_pool, RELEASED, percent=100)
    assert await status_of(db_pool, 2) is RELEASING


async def test_an_unknown_super_app_is_refused_by_the_schema(db_pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await Version(1, app="wechat").move(db_pool, DRAFT)


# --- Duplicate -----------------------------------------------------------------------------------


async def test_released_and_archived_versions_are_duplicable(db_pool: asyncpg.Pool) -> None:
    content = MiniServiceContent.new().model_copy(update={"sections": []})
    await Version(1).release(db_pool, content=content)
    await Version(2).release(db_pool)

    assert await duplicable_content(db_pool, "gopay", 1) == content
    assert await duplicable_content(db_pool, "gopay", 2) == MiniServiceContent.new()
    copy = Version(3, duplicated_from=1)
    assert (await copy.move(db_pool, DRAFT, content=content)).history[0].duplicated_from == 1


@pytest.mark.parametrize("status", [DRAFT, TESTING, RELEASING, ServiceStatus.DELETED])
async def test_other_versions_are_not_duplicable(
    db_pool: asyncpg.Pool, status: ServiceStatus
) -> None:
    await Version(1).move(db_pool, status)

    with pytest.raises(NotDuplicable) as refused:
        await duplicable_content(db_pool, "gopay", 1)
    assert str(refused.value) == (
        f"mini service version 1 of 'gopay' is {status}; "
        "only a RELEASED or ARCHIVED version can be duplicated"
    )


async def test_a_missing_version_is_not_duplicable(db_pool: asyncpg.Pool) -> None:
    with pytest.raises(NotDuplicable, match="version 4 of 'gopay' does not exist"):
        await duplicable_content(db_pool, "gopay", 4)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await Version(5, duplicated_from=4).move(db_pool, DRAFT)


# --- Roles ---------------------------------------------------------------------------------------


async def test_service_roles_count_for_their_super_app_only(db_pool: asyncpg.Pool) -> None:
    for user, role, app in (
        ("olga", Role.SERVICE_OPERATOR, "gopay"),
        ("adam", Role.SERVICE_ADMIN, "gopay"),
        ("adam", Role.SERVICE_OPERATOR, "gopay"),
        ("dina", Role.SERVICE_ADMIN, "dana"),
        ("pete", Role.PARTNER_REVIEWER, "gopay"),
    ):
        await add_member(
            db_pool, Membership(workspace_id=f"{app}-org", user_id=user, role=role, target_app=app)
        )
    await add_member(db_pool, Membership(workspace_id="gopay-org", user_id="own", role=Role.OWNER))

    async def roles(actor: str) -> list[Role]:
        request = ServiceRolesRequest(super_app="gopay", actor=actor)
        return await load_service_roles(db_pool, request)

    assert await roles("olga") == [Role.SERVICE_OPERATOR]
    assert await roles("adam") == [Role.SERVICE_ADMIN, Role.SERVICE_OPERATOR]
    assert await roles("dina") == []
    assert await roles("pete") == []
    assert await roles("own") == []


@pytest.mark.parametrize("role", [Role.SERVICE_OPERATOR, Role.SERVICE_ADMIN])
async def test_service_memberships_are_scoped_by_super_app(
    db_pool: asyncpg.Pool, role: Role
) -> None:
    member = Membership(workspace_id="gopay-org", user_id="u", role=role, target_app="gopay")
    assert await add_member(db_pool, member)
    assert await list_members(db_pool, user_id="u") == [member]
    with pytest.raises(ValidationError, match="a target app is given exactly for the roles"):
        Membership(workspace_id="gopay-org", user_id="u", role=role)
    with pytest.raises(UnknownTargetApp):
        await add_member(db_pool, member.model_copy(update={"target_app": "wechat"}))


@pytest.mark.parametrize(
    ("role", "target_app"),
    [("service_admin", ""), ("service_operator", ""), ("partner_reviewer", ""), ("owner", "gopay")],
)
async def test_the_schema_scopes_roles_by_target_app(
    db_pool: asyncpg.Pool, role: str, target_app: str
) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await db_pool.execute(
            "INSERT INTO workspace_members (workspace_id, user_id, role, target_app) "
            "VALUES ('ws', 'u', $1, $2)",
            role,
            target_app,
        )


# --- Which version a user sees -------------------------------------------------------------------

USERS = [f"user-{n}" for n in range(1000)]


async def test_nothing_is_shown_before_a_release(db_pool: asyncpg.Pool) -> None:
    await Version(1).move(db_pool, DRAFT)

    detail = await resolve_mini_service_detail(db_pool, "gopay", "u")
    assert (detail.version_no, detail.source) == (None, "none")
    assert await resolve_mini_service(db_pool, "wechat", "u") is None


async def test_testers_see_the_testing_version(db_pool: asyncpg.Pool) -> None:
    await Version(1).release(db_pool)
    await Version(2).move(db_pool, TESTING, testers=["qa@example.com", "Lead@Example.com"])

    for email in ("qa@example.com", "QA@example.com", "lead@example.com"):
        detail = await resolve_mini_service_detail(db_pool, "gopay", "u", email)
        assert (detail.version_no, detail.source) == (2, "tester")
    assert await resolve_mini_service(db_pool, "gopay", "u", "other@example.com") == 1
    assert await resolve_mini_service(db_pool, "gopay", "u") == 1


async def test_the_releasing_cohort_only_grows(db_pool: asyncpg.Pool) -> None:
    await Version(1).release(db_pool)
    second = Version(2)
    await second.move(db_pool, TESTING, testers=["qa@example.com"])
    cohorts: list[set[str]] = []
    for percent in (1, 5, 20, 50):
        await second.move(db_pool, RELEASING, percent=percent)
        seen = await asyncio.gather(*(resolve_mini_service(db_pool, "gopay", u) for u in USERS))
        assert set(seen) <= {1, 2}
        cohort = {user for user, version in zip(USERS, seen, strict=True) if version == 2}
        assert abs(len(cohort) - percent * len(USERS) / 100) <= 0.04 * len(USERS)
        cohorts.append(cohort)

    assert all(a <= b for a, b in itertools.pairwise(cohorts))
    detail = await resolve_mini_service_detail(db_pool, "gopay", next(iter(cohorts[0])))
    assert (detail.source, detail.reason.startswith("grayscale bucket")) == ("grayscale", True)
    # Pilot testers are not a grayscale cohort: a tester outside the bucket sees the release.
    outsider = next(u for u in USERS if u not in cohorts[-1])
    assert await resolve_mini_service(db_pool, "gopay", outsider, "qa@example.com") == 1


async def test_everyone_sees_a_full_release(db_pool: asyncpg.Pool) -> None:
    await Version(1).release(db_pool)
    await Version(2).release(db_pool)

    seen = await asyncio.gather(*(resolve_mini_service(db_pool, "gopay", u) for u in USERS[:200]))
    assert set(seen) == {2}
    detail = await resolve_mini_service_detail(db_pool, "gopay", "u")
    assert (detail.version_no, detail.source) == (2, "released")


# --- Activities ----------------------------------------------------------------------------------


@pytest.fixture
def activities(db_pool: asyncpg.Pool) -> MiniServiceCatalogActivities:
    return MiniServiceCatalogActivities(db_pool, verifying())


async def test_the_activities_read_and_write_the_catalog(
    activities: MiniServiceCatalogActivities, db_pool: asyncpg.Pool
) -> None:
    env = ActivityEnvironment()
    await add_member(
        db_pool,
        Membership(workspace_id="g", user_id="op", role=Role.SERVICE_OPERATOR, target_app="gopay"),
    )

    context = await env.run(activities.load_service_context, "gopay")
    roles = await env.run(
        activities.load_service_roles, ServiceRolesRequest(super_app="gopay", actor="op")
    )
    result = await env.run(activities.record_service_transition, Version(1).to(DRAFT))
    archived = await env.run(
        activities.is_service_archived, ServiceVersionRef(super_app="gopay", version_no=1)
    )

    assert context.grayscale_ladder[-1] == 100
    assert roles == [Role.SERVICE_OPERATOR]
    assert result.applied and [v.version_no for v in result.history] == [1]
    assert archived is False


async def test_refusals_are_not_retried(activities: MiniServiceCatalogActivities) -> None:
    env = ActivityEnvironment()
    with pytest.raises(ApplicationError) as unknown:
        await env.run(activities.load_service_context, "wechat")
    with pytest.raises(ApplicationError) as orphan:
        await env.run(activities.record_service_transition, Version(1, app="wechat").to(DRAFT))
    with pytest.raises(ApplicationError) as invalid:
        await env.run(activities.record_service_transition, Version(1).to(DRAFT, promote=True))

    assert (unknown.value.type, unknown.value.non_retryable) == ("UnknownTargetApp", True)
    assert (orphan.value.type, orphan.value.non_retryable) == ("CatalogRejected", True)
    assert (invalid.value.type, invalid.value.non_retryable) == ("InvalidTransition", True)


# --- Migration and the command line --------------------------------------------------------------


async def test_migration_002_upgrades_a_catalog_on_001(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, *later = migration_files()
    with monkeypatch.context() as only_first:
        only_first.setattr(catalog_db, "migration_files", lambda: [first])
        assert await apply_migrations(fresh_database_url) == [first.name]
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute(
            "INSERT INTO workspace_members (workspace_id, user_id, role, target_app) "
            "VALUES ('gopay-org', 'carol', 'partner_reviewer', 'gopay')"
        )

        assert await apply_migrations(fresh_database_url) == [path.name for path in later]
        assert "002_mini_service.sql" in [path.name for path in later]
        await conn.execute(
            "INSERT INTO workspace_members (workspace_id, user_id, role, target_app) "
            "VALUES ('gopay-org', 'sam', 'service_admin', 'gopay')"
        )
        members = await conn.fetch("SELECT user_id, role FROM workspace_members ORDER BY user_id")
        checks = await conn.fetch(
            "SELECT conname FROM pg_constraint "
            "WHERE conrelid = 'workspace_members'::regclass AND contype = 'c' ORDER BY conname"
        )
    finally:
        await conn.close()
    assert [tuple(row) for row in members] == [
        ("carol", "partner_reviewer"),
        ("sam", "service_admin"),
    ]
    # The program_admin scope of 001 is kept; its target app scope was replaced.
    assert [row["conname"] for row in checks] == [
        "workspace_members_check",
        "workspace_members_role_check",
        "workspace_members_target_app_scope",
    ]


async def test_mpr_grants_service_roles(mpr: Mpr) -> None:
    base = ["admin", "member", "add", "--workspace", "gopay-org", "--user", "sam"]

    added = await mpr(*base, "--role", "service_admin", "--target-app", "gopay")
    missing = await mpr(*base, "--role", "service_operator")
    stray = await mpr(*base, "--role", "developer", "--target-app", "gopay")
    usage = await mpr("admin", "member", "add", "--help")

    assert (added.code, added.out) == (0, "granted service_admin of gopay for sam in gopay-org\n")
    assert "role service_operator needs --target-app" in missing.error(2)
    assert stray.error(2) == (
        "mpr: --target-app applies only to roles "
        "partner_reviewer, service_operator, service_admin\n"
    )
    assert usage.code == 0
    assert "service_operator" in usage.out and "service_admin" in usage.out
