"""The catalog side of the super apps' mini service pages (seed 004).

`record_service_transition` is the only writer of mini service state: like
`releases.record_transition`, it writes each event in one transaction keyed by the event id,
so a retried activity changes nothing twice. Clients resolve the page a user sees from these
tables alone, never from Temporal.
"""

from datetime import datetime
from typing import Literal

import asyncpg
from pydantic import BaseModel

from mpr.catalog import CatalogError, InvalidTransition
from mpr.catalog.admin import require_target_app
from mpr.catalog.db import Database, connection
from mpr.domain.core.bucketing import BUCKETS, in_rollout, rollout_bucket
from mpr.domain.core.models import Role
from mpr.domain.mini_service.models import (
    MiniServiceContent,
    ServiceContext,
    ServiceRolesRequest,
    ServiceVersionRef,
    ServiceVersionSummary,
)
from mpr.domain.mini_service.records import (
    ServiceEvent,
    ServiceRow,
    ServiceTransition,
    ServiceTransitionResult,
)
from mpr.domain.mini_service.stages import IN_FLIGHT, ServiceStatus
from mpr.domain.release.models import Environment

IN_FLIGHT_INDEX = "mini_service_versions_in_flight"
ONE_RELEASED_INDEX = "mini_service_versions_one_released"
SERVICE_ROLES = [Role.SERVICE_OPERATOR, Role.SERVICE_ADMIN]
DUPLICABLE = frozenset({ServiceStatus.RELEASED, ServiceStatus.ARCHIVED})
IN_FLIGHT_VALUES = sorted(status.value for status in IN_FLIGHT)
# The bucketing key of a mini service: the super app stands where a mini program would, so a
# page gets the same stable, per-version cohorts as a mini program's grayscale.
BUCKET_TARGET = "mini-service"
BUCKET_ENVIRONMENT = Environment.PRODUCTION.value
VERSION_KEY = "super_app = $1 AND version_no = $2"
SUMMARY_COLUMNS = "version_no, status, percent, created_by, updated_at, duplicated_from"
EVENT_COLUMNS = (
    "event_id, super_app, version_no, seq, command, actor, accepted, reason, status_before, "
    "status_after, payload, at, blocked_by, archived_version, claimed_actor"
)

ServiceSource = Literal["tester", "grayscale", "released", "none"]


class NotDuplicable(CatalogError):
    """Seed 004: only a Released or Archived version can be copied as a new version."""

    def __init__(self, super_app: str, version_no: int, status: str | None) -> None:
        label = f"mini service version {version_no} of {super_app!r}"
        if status is None:
            message = f"{label} does not exist"
        else:
            message = f"{label} is {status}; only a RELEASED or ARCHIVED version can be duplicated"
        super().__init__(message)


class StoredServiceVersion(BaseModel):
    super_app: str
    version_no: int
    status: ServiceStatus
    percent: int
    content: MiniServiceContent
    testers: list[str]
    created_by: str
    duplicated_from: int | None
    created_at: datetime
    updated_at: datetime
    released_at: datetime | None
    archived_at: datetime | None


class RecordedServiceEvent(ServiceEvent):
    blocked_by: int | None = None
    """The version holding the in-flight slot when the catalog refused this event."""
    archived_version: int | None = None


class ServiceResolution(BaseModel):
    version_no: int | None
    """None when no version of the super app's mini service is shown to this user."""
    source: ServiceSource
    reason: str


# --- Allocation and the activities' reads ----------------------------------------------------


async def allocate_service_version(db: Database, super_app: str) -> int:
    """The super app's next version number; concurrent callers never get the same one."""
    await require_target_app(db, super_app)
    # The upsert holds the counter row's lock until it commits, so allocations serialise.
    version_no: int = await db.fetchval(
        """
        INSERT INTO mini_service_counters AS c (super_app, last_version_no) VALUES ($1, 1)
        ON CONFLICT (super_app) DO UPDATE SET last_version_no = c.last_version_no + 1
        RETURNING last_version_no
        """,
        super_app,
    )
    return version_no


async def load_service_context(db: Database, super_app: str) -> ServiceContext:
    policy = await require_target_app(db, super_app)
    return ServiceContext(grayscale_ladder=policy.grayscale_ladder)


async def load_service_roles(db: Database, request: ServiceRolesRequest) -> list[Role]:
    """The actor's service roles for this super app, whatever workspace granted them."""
    rows = await db.fetch(
        """
        SELECT DISTINCT role FROM workspace_members
        WHERE user_id = $1 AND target_app = $2 AND role = ANY($3::text[])
        ORDER BY role
        """,
        request.actor,
        request.super_app,
        [role.value for role in SERVICE_ROLES],
    )
    return [Role(row["role"]) for row in rows]


async def is_service_archived(db: Database, ref: ServiceVersionRef) -> bool:
    archived: bool = await db.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM mini_service_versions WHERE {VERSION_KEY} "
        "AND status = 'ARCHIVED')",
        ref.super_app,
        ref.version_no,
    )
    return archived


async def duplicable_content(db: Database, super_app: str, version_no: int) -> MiniServiceContent:
    """The content a new version copies from `version_no`."""
    row = await db.fetchrow(
        f"SELECT status, content FROM mini_service_versions WHERE {VERSION_KEY}",
        super_app,
        version_no,
    )
    if row is None:
        raise NotDuplicable(super_app, version_no, None)
    if row["status"] not in DUPLICABLE:
        raise NotDuplicable(super_app, version_no, row["status"])
    return MiniServiceContent.model_validate(row["content"])


# --- The one writer --------------------------------------------------------------------------


async def record_service_transition(
    db: Database, transition: ServiceTransition
) -> ServiceTransitionResult:
    """Write everything one mini service event changes, exactly once per event id.

    A retry returns the first write's verdict; its `history` is read afresh.
    """
    _check(transition)
    event = transition.event
    async with connection(db) as conn, conn.transaction():
        # A retry may race its own first attempt: the second waits here, then finds the event.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", event.event_id)
        recorded = await _recorded_event(conn, event.event_id)
        if recorded is None:
            recorded = await _apply_unless_held(conn, transition)
            await _insert_event(conn, recorded)
        history = await list_service_versions(conn, event.super_app)
    blocked = recorded.blocked_by is not None
    return ServiceTransitionResult(
        applied=not blocked,
        reason=recorded.reason if blocked else None,
        archived_version=recorded.archived_version,
        history=history,
    )


def _check(transition: ServiceTransition) -> None:
    event, row = transition.event, transition.row
    if row is None:
        if transition.promote:
            raise InvalidTransition(f"event {event.event_id} promotes without a version row")
        return
    if (row.super_app, row.version_no) != (event.super_app, event.version_no):
        raise InvalidTransition(
            f"event {event.event_id} is for version {event.version_no} of {event.super_app} "
            f"but carries version {row.version_no} of {row.super_app}"
        )
    if transition.promote and row.status is not ServiceStatus.RELEASED:
        raise InvalidTransition(f"{_label(row)} is promoted while {row.status}")


async def _apply_unless_held(
    conn: asyncpg.Connection, transition: ServiceTransition
) -> RecordedServiceEvent:
    """Apply the transition and return the event to log: a refusal if the slot is held."""
    event = RecordedServiceEvent(**transition.event.model_dump())
    row = transition.row
    if row is None:
        return event
    try:
        async with conn.transaction():  # a savepoint: a held slot undoes only this part
            archived = await _apply(conn, row, promote=transition.promote)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == ONE_RELEASED_INDEX:
            raise InvalidTransition(
                f"{_label(row)} is written RELEASED without being promoted"
            ) from exc
        if exc.constraint_name != IN_FLIGHT_INDEX:
            raise
        holder = await _in_flight_holder(conn, row)
        if holder is None:
            # The holder left the slot after blocking us: a retry of the activity will pass.
            raise RuntimeError(f"the in-flight slot of {row.super_app} changed; retry") from exc
        holder_no, holder_status = holder
        return event.model_copy(
            update={
                "accepted": False,
                "status_after": event.status_before,
                "blocked_by": holder_no,
                "reason": f"mini service version {holder_no} of {row.super_app} is already "
                f"{holder_status}; revert or release it first",
            }
        )
    return event.model_copy(update={"archived_version": archived})


async def _apply(conn: asyncpg.Connection, row: ServiceRow, *, promote: bool) -> int | None:
    """Write the row; return the version a promotion archived."""
    archived = await _archive_released(conn, row) if promote else None
    await _upsert(conn, row)
    return archived


async def _archive_released(conn: asyncpg.Connection, row: ServiceRow) -> int | None:
    """Archive the super app's released version, before `row` may become RELEASED."""
    # Promotions of one super app take turns, so two of them cannot both find nothing to
    # archive and then collide on the one-RELEASED index. The two-key form keeps this lock
    # apart from the one-key locks taken on event ids.
    await conn.execute(
        "SELECT pg_advisory_xact_lock('mini_service_versions'::regclass::oid::int, hashtext($1))",
        row.super_app,
    )
    if await _status(conn, row) is ServiceStatus.ARCHIVED:
        return None  # a newer version replaced this one: a late promotion archives nothing
    archived: int | None = await conn.fetchval(
        """
        UPDATE mini_service_versions SET status = 'ARCHIVED', archived_at = $3, updated_at = $3
        WHERE super_app = $1 AND status = 'RELEASED' AND version_no <> $2
        RETURNING version_no
        """,
        row.super_app,
        row.version_no,
        row.at,
    )
    return archived


async def _upsert(conn: asyncpg.Connection, row: ServiceRow) -> None:
    if row.status is ServiceStatus.ARCHIVED:
        # Only the catalog archives; the workflow's copy of that verdict changes nothing.
        if await _status(conn, row) is not ServiceStatus.ARCHIVED:
            raise InvalidTransition(f"{_label(row)} is archived only by releasing a newer one")
        return
    # An archived row is frozen: a late write from its workflow must not revive it. Nothing
    # else changes either (updated_at included) when the row is what it already was.
    await conn.execute(
        """
        INSERT INTO mini_service_versions AS v (super_app, version_no, status, percent, content,
            testers, created_by, duplicated_from, created_at, updated_at, released_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)
        ON CONFLICT (super_app, version_no) DO UPDATE SET
            status = EXCLUDED.status,
            percent = EXCLUDED.percent,
            content = EXCLUDED.content,
            testers = EXCLUDED.testers,
            updated_at = EXCLUDED.updated_at,
            released_at = COALESCE(v.released_at, EXCLUDED.released_at)
        WHERE v.status <> 'ARCHIVED'
            AND (v.status, v.percent, v.content, v.testers)
                IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.percent, EXCLUDED.content,
                                  EXCLUDED.testers)
        """,
        row.super_app,
        row.version_no,
        row.status.value,
        row.percent,
        row.content.model_dump(mode="json"),
        row.testers,
        row.created_by,
        row.duplicated_from,
        row.at,
        row.at if row.status is ServiceStatus.RELEASED else None,
    )


async def _status(conn: asyncpg.Connection, row: ServiceRow) -> ServiceStatus | None:
    status = await conn.fetchval(
        f"SELECT status FROM mini_service_versions WHERE {VERSION_KEY} FOR UPDATE",
        row.super_app,
        row.version_no,
    )
    return ServiceStatus(status) if status else None


async def _in_flight_holder(
    conn: asyncpg.Connection, row: ServiceRow
) -> tuple[int, ServiceStatus] | None:
    holder = await conn.fetchrow(
        """
        SELECT version_no, status FROM mini_service_versions
        WHERE super_app = $1 AND status = ANY($2::text[]) AND version_no <> $3
        """,
        row.super_app,
        IN_FLIGHT_VALUES,
        row.version_no,
    )
    return (holder["version_no"], ServiceStatus(holder["status"])) if holder else None


def _label(row: ServiceRow) -> str:
    return f"mini service version {row.version_no} of {row.super_app}"


async def _recorded_event(conn: asyncpg.Connection, event_id: str) -> RecordedServiceEvent | None:
    row = await conn.fetchrow(
        f"SELECT {EVENT_COLUMNS} FROM mini_service_events WHERE event_id = $1", event_id
    )
    return RecordedServiceEvent.model_validate(dict(row)) if row else None


async def _insert_event(conn: asyncpg.Connection, event: RecordedServiceEvent) -> None:
    await conn.execute(
        f"""
        INSERT INTO mini_service_events ({EVENT_COLUMNS})
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
        """,
        event.event_id,
        event.super_app,
        event.version_no,
        event.seq,
        event.command,
        event.actor,
        event.accepted,
        event.reason,
        event.status_before.value,
        event.status_after.value,
        event.payload,
        event.at,
        event.blocked_by,
        event.archived_version,
        event.claimed_actor,
    )


# --- Which version a user sees ---------------------------------------------------------------


async def resolve_mini_service_detail(
    db: Database, super_app: str, user_id: str, email: str | None = None
) -> ServiceResolution:
    """A tester sees the TESTING version, the rollout's cohort the RELEASING one, everyone
    else the RELEASED one."""
    rows = await db.fetch(
        """
        SELECT version_no, status, percent,
               lower($2::text) = ANY(SELECT lower(t) FROM unnest(testers) AS t) AS tester
        FROM mini_service_versions
        WHERE super_app = $1 AND status IN ('TESTING', 'RELEASING', 'RELEASED')
        """,
        super_app,
        email,
    )
    by_status = {ServiceStatus(row["status"]): row for row in rows}
    testing = by_status.get(ServiceStatus.TESTING)
    if testing is not None and testing["tester"]:
        version_no = testing["version_no"]
        return ServiceResolution(
            version_no=version_no, source="tester", reason=f"tester of version {version_no}"
        )
    releasing = by_status.get(ServiceStatus.RELEASING)
    if releasing is not None:
        version_no = releasing["version_no"]
        bucket = rollout_bucket(
            super_app, BUCKET_TARGET, BUCKET_ENVIRONMENT, str(version_no), user_id
        )
        if in_rollout(bucket, releasing["percent"]):
            threshold = releasing["percent"] * (BUCKETS // 100)
            return ServiceResolution(
                version_no=version_no,
                source="grayscale",
                reason=f"grayscale bucket {bucket} < {threshold}",
            )
    released = by_status.get(ServiceStatus.RELEASED)
    if released is None:
        return ServiceResolution(
            version_no=None, source="none", reason=f"no mini service of {super_app} is released"
        )
    return ServiceResolution(
        version_no=released["version_no"], source="released", reason="released"
    )


async def resolve_mini_service(
    db: Database, super_app: str, user_id: str, email: str | None = None
) -> int | None:
    """The version of the super app's mini service page this user sees; None if none."""
    resolution = await resolve_mini_service_detail(db, super_app, user_id, email)
    return resolution.version_no


# --- Readers ---------------------------------------------------------------------------------


async def get_service_version(
    db: Database, super_app: str, version_no: int
) -> StoredServiceVersion | None:
    row = await db.fetchrow(
        f"""
        SELECT super_app, version_no, status, percent, content, testers, created_by,
               duplicated_from, created_at, updated_at, released_at, archived_at
        FROM mini_service_versions WHERE {VERSION_KEY}
        """,
        super_app,
        version_no,
    )
    return StoredServiceVersion.model_validate(dict(row)) if row else None


async def list_service_versions(db: Database, super_app: str) -> list[ServiceVersionSummary]:
    """Every version of the super app's mini service, newest first."""
    rows = await db.fetch(
        f"SELECT {SUMMARY_COLUMNS} FROM mini_service_versions WHERE super_app = $1 "
        "ORDER BY version_no DESC",
        super_app,
    )
    return [ServiceVersionSummary.model_validate(dict(row)) for row in rows]
