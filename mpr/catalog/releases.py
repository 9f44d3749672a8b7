"""The catalog side of a release: its starting context, its actors' roles, and its events.

`record_transition` is the only writer of release state. Every write of one release event
happens in one transaction keyed by the event id, so a retried activity changes nothing twice.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg
from pydantic import BaseModel

from mpr.catalog import InvalidTransition, MiniProgramInAnotherWorkspace, channels
from mpr.catalog.admin import require_target_app
from mpr.catalog.db import Database, connection
from mpr.catalog.roles import program_roles
from mpr.domain.channel.models import ChannelKey, Takedown
from mpr.domain.core.models import Role
from mpr.domain.release.models import (
    ActorRolesRequest,
    CompatibilityReport,
    Environment,
    PackageFacts,
    ReleaseContext,
    ReleaseContextRequest,
    ReviewOutcome,
    Rollout,
)
from mpr.domain.release.records import (
    CatalogTransition,
    ReleaseEvent,
    ReleaseRow,
    ReviewRound,
    TransitionResult,
)
from mpr.domain.release.release_id import release_id
from mpr.domain.release.stages import CHANNEL_HOLDING_STAGES, Stage

ARCHIVED = "ARCHIVED"
CatalogStage = Stage | Literal["ARCHIVED", "ROLLED_BACK"]
"""A release row's stage: the workflow's stage, ARCHIVED once a newer version replaced it, or
ROLLED_BACK once its channel's rollback took it down (a rollback may restore it to RELEASED)."""

HOLD_INDEX = "releases_channel_hold"
CHANNEL_KEY = "mini_program_id = $1 AND target_app = $2 AND environment = $3"


class StoredRelease(BaseModel):
    release_id: str
    mini_program_id: str
    version: str
    target_app: str
    environment: Environment
    workspace_id: str
    requested_by: str
    stage: CatalogStage
    percent: int
    package_sha256: str | None
    first_release: bool
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None


class RecordedEvent(ReleaseEvent):
    blocked_by: str | None = None


# --- Activities' reads ---------------------------------------------------------------------


async def load_release_context(db: Database, request: ReleaseContextRequest) -> ReleaseContext:
    start = request.request
    policy = await require_target_app(db, start.target_app)
    owner = await db.fetchval(
        "SELECT workspace_id FROM mini_programs WHERE mini_program_id = $1", start.mini_program_id
    )
    if owner is not None and owner != start.workspace_id:
        raise MiniProgramInAnotherWorkspace(start.mini_program_id, owner, start.workspace_id)
    stable = await db.fetchval(
        f"SELECT stable_version FROM channels WHERE {CHANNEL_KEY}",
        start.mini_program_id,
        start.target_app,
        start.environment.value,
    )
    return ReleaseContext(
        policy=policy, first_release=stable is None, previous_stable_version=stable
    )


async def load_actor_roles(db: Database, request: ActorRolesRequest) -> list[Role]:
    """The roles the actor holds for this release; reviewers are not workspace members."""
    return await program_roles(db, actor=request.actor, workspace_id=request.workspace_id,
                               mini_program_id=request.mini_program_id,
                               target_app=request.target_app)


# --- The one writer ------------------------------------------------------------------------


async def record_transition(db: Database, transition: CatalogTransition) -> TransitionResult:
    """Write everything one release event changes, exactly once per event id."""
    _check(transition)
    event = transition.event
    async with connection(db) as conn, conn.transaction():
        # A retry may race its own first attempt: the second waits here, then finds the event.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", event.event_id)
        recorded = await conn.fetchrow(
            "SELECT accepted, blocked_by, reason FROM release_events WHERE event_id = $1",
            event.event_id,
        )
        if recorded is not None:
            refused = event.accepted and not recorded["accepted"]
            blocked_by, reason = recorded["blocked_by"], recorded["reason"]
        else:
            blocked = await _apply_unless_blocked(conn, transition)
            stored = _as_recorded(transition, blocked)
            await _insert_event(conn, stored)
            refused, blocked_by, reason = blocked is not None, stored.blocked_by, stored.reason
    if not refused:
        return TransitionResult(applied=True)
    return TransitionResult(applied=False, blocked_by=blocked_by, reason=reason)


def _check(transition: CatalogTransition) -> None:
    event, release = transition.event, transition.release
    if release is None:
        changes = transition.model_dump(exclude={"event", "release"}, exclude_defaults=True)
        if changes:
            raise InvalidTransition(
                f"event {event.event_id} has no release row but changes {sorted(changes)}"
            )
        return
    if release.release_id != event.release_id:
        raise InvalidTransition(
            f"event {event.event_id} is for {event.release_id} but carries {release.release_id}"
        )
    expected = release_id(
        release.mini_program_id, release.version, release.target_app, release.environment
    )
    if release.release_id != expected:
        raise InvalidTransition(f"release row {release.release_id} should be named {expected}")
    rollout = transition.rollout
    if rollout and rollout.candidate_release_id not in (None, release.release_id):
        raise InvalidTransition(
            f"{release.release_id} may not make {rollout.candidate_release_id} a candidate"
        )
    if transition.promote and release.stage is not Stage.RELEASED:
        raise InvalidTransition(f"{release.release_id} is promoted while {release.stage}")


@dataclass(frozen=True)
class Blocked:
    """Why the catalog refused an accepted release event."""

    reason: str
    holder: str | None = None
    """The release holding the channel between UNDER_REVIEW and GRAYSCALE, if that is why."""


async def _apply_unless_blocked(
    conn: asyncpg.Connection, transition: CatalogTransition
) -> Blocked | None:
    """Apply the transition, or undo it and say why it cannot apply: another release holds
    the channel, or a reviewer's takedown forbids going live on it."""
    release = transition.release
    if release is None:
        return None
    takedown = await _forbidding_takedown(conn, transition, release)
    if takedown is not None:
        return Blocked(
            f"{_channel_label(release)} was taken offline by {takedown.by} ({takedown.kind} "
            f"takedown: {takedown.reason}): no release goes live on it until a "
            f"{takedown.kind} reviewer brings it online")
    try:
        async with conn.transaction():  # a savepoint: a held channel undoes only this part
            await _apply(conn, transition, release)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != HOLD_INDEX:
            raise
        holder = await _channel_holder(conn, release)
        if holder is None:
            # The holder left the hold after blocking us: a retry of the activity will pass.
            raise RuntimeError(f"the hold on {_channel_label(release)} changed; retry") from exc
        return Blocked(
            f"release {holder} is already between UNDER_REVIEW and GRAYSCALE on "
            f"{_channel_label(release)}; finish or cancel it first", holder)
    return None


async def _forbidding_takedown(
    conn: asyncpg.Connection, transition: CatalogTransition, release: ReleaseRow
) -> Takedown | None:
    """A platform or partner takedown on the channel, when this event would serve a version
    on it (a candidate or a new stable version)."""
    rollout = transition.rollout
    goes_live = transition.promote or (rollout is not None
                                       and rollout.candidate_release_id is not None)
    if not goes_live:
        return None
    return await channels.reviewer_takedown(conn, _channel_args(release))


async def _apply(
    conn: asyncpg.Connection, transition: CatalogTransition, release: ReleaseRow
) -> None:
    await conn.execute(
        "INSERT INTO mini_programs (mini_program_id, workspace_id) VALUES ($1, $2) "
        "ON CONFLICT (mini_program_id) DO NOTHING",
        release.mini_program_id,
        release.workspace_id,
    )
    if transition.package:  # before the release row, which refers to it
        await _insert_package(conn, transition.package)
    await _upsert_release(conn, release)
    if transition.compatibility_report:
        await _insert_report(conn, release.release_id, transition.compatibility_report)
    if transition.open_reviews:
        await _open_reviews(conn, release.release_id, transition.open_reviews, release.at)
    if transition.review:
        await _decide_review(conn, release.release_id, transition.review, release.at)
    if transition.rollout:
        await _write_rollout(conn, release, transition.rollout)
    if transition.promote:
        await _promote(conn, transition.event, release)


async def _insert_package(conn: asyncpg.Connection, package: PackageFacts) -> None:
    await conn.execute(
        """
        INSERT INTO packages (sha256, size_bytes, uncompressed_bytes, file_count, artifact_path,
                              manifest)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (sha256) DO NOTHING
        """,
        package.sha256,
        package.size_bytes,
        package.uncompressed_bytes,
        package.file_count,
        package.artifact_path,
        package.manifest.model_dump(mode="json"),
    )


async def _upsert_release(conn: asyncpg.Connection, release: ReleaseRow) -> None:
    # ARCHIVED is the catalog's own verdict; the workflow's copy (RELEASED) never undoes it.
    await conn.execute(
        """
        INSERT INTO releases (release_id, mini_program_id, version, target_app, environment,
                              workspace_id, requested_by, stage, percent, package_sha256,
                              first_release, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
        ON CONFLICT (release_id) DO UPDATE SET
            workspace_id = EXCLUDED.workspace_id,
            requested_by = EXCLUDED.requested_by,
            stage = CASE WHEN releases.stage = 'ARCHIVED' THEN releases.stage
                         ELSE EXCLUDED.stage END,
            percent = EXCLUDED.percent,
            package_sha256 = EXCLUDED.package_sha256,
            first_release = EXCLUDED.first_release,
            updated_at = EXCLUDED.updated_at
        """,
        release.release_id,
        release.mini_program_id,
        release.version,
        release.target_app,
        release.environment.value,
        release.workspace_id,
        release.requested_by,
        release.stage.value,
        release.percent,
        release.package_sha256,
        release.first_release,
        release.at,
    )


async def _insert_report(
    conn: asyncpg.Connection, release_id: str, report: CompatibilityReport
) -> None:
    summary = report.summary()
    await conn.execute(
        """
        INSERT INTO compatibility_reports (report_id, release_id, package_sha256, cells, passed,
                                           warned, failed, results, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (report_id) DO NOTHING
        """,
        report.report_id,
        release_id,
        report.package_sha256,
        summary.cells,
        summary.passed,
        summary.warned,
        summary.failed,
        [result.model_dump(mode="json") for result in report.results],
        report.created_at,
    )


async def _open_reviews(
    conn: asyncpg.Connection, release_id: str, reviews: ReviewRound, at: datetime
) -> None:
    await conn.executemany(
        """
        INSERT INTO review_requests (release_id, round, organisation, requested_at)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT DO NOTHING
        """,
        [(release_id, reviews.round, org.value, at) for org in reviews.organisations],
    )


async def _decide_review(
    conn: asyncpg.Connection, release_id: str, review: ReviewOutcome, at: datetime
) -> None:
    # Upsert, so a decision is kept even if its round was never opened; the first one stands.
    await conn.execute(
        """
        INSERT INTO review_requests (release_id, round, organisation, status, actor, comment,
                                     requested_at, decided_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
        ON CONFLICT (release_id, round, organisation) DO UPDATE SET
            status = EXCLUDED.status,
            actor = EXCLUDED.actor,
            comment = EXCLUDED.comment,
            decided_at = EXCLUDED.decided_at
        WHERE review_requests.status = 'pending'
        """,
        release_id,
        review.round,
        review.reviewer.value,
        "approved" if review.approved else "rejected",
        review.actor,
        review.comment,
        at,
    )


def _channel_args(release: ReleaseRow) -> tuple[str, str, str]:
    return release.mini_program_id, release.target_app, release.environment.value


async def _write_rollout(conn: asyncpg.Connection, release: ReleaseRow, rollout: Rollout) -> None:
    if rollout.candidate_release_id is None:
        # A release only withdraws its own candidacy, never another release's.
        await conn.execute(
            f"""
            UPDATE channels SET candidate_version = NULL, candidate_release_id = NULL,
                percent = 0, whitelist = '{{}}', revision = revision + 1, updated_at = $5
            WHERE {CHANNEL_KEY} AND candidate_release_id = $4
            """,
            *_channel_args(release),
            release.release_id,
            release.at,
        )
        return
    # Setting a candidate needs no ownership check: the channel hold lets only one release
    # reach WHITELIST_TESTING or GRAYSCALE. The revision moves only when the row changes.
    await conn.execute(
        """
        INSERT INTO channels AS c (mini_program_id, target_app, environment, candidate_version,
                                   candidate_release_id, percent, whitelist, revision, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8)
        ON CONFLICT (mini_program_id, target_app, environment) DO UPDATE SET
            candidate_version = EXCLUDED.candidate_version,
            candidate_release_id = EXCLUDED.candidate_release_id,
            percent = EXCLUDED.percent,
            whitelist = EXCLUDED.whitelist,
            revision = c.revision + 1,
            updated_at = EXCLUDED.updated_at
        WHERE (c.candidate_version, c.candidate_release_id, c.percent, c.whitelist)
            IS DISTINCT FROM (EXCLUDED.candidate_version, EXCLUDED.candidate_release_id,
                              EXCLUDED.percent, EXCLUDED.whitelist)
        """,
        *_channel_args(release),
        rollout.candidate_version,
        rollout.candidate_release_id,
        rollout.percent,
        rollout.whitelist,
        release.at,
    )


async def _promote(conn: asyncpg.Connection, event: ReleaseEvent, release: ReleaseRow) -> None:
    """Make the release its channel's stable version and archive the one it replaces; an
    admin's takedown ends here (a reviewer's forbade getting this far)."""
    await conn.execute(
        "INSERT INTO channels (mini_program_id, target_app, environment, updated_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        *_channel_args(release),
        release.at,
    )
    previous = await conn.fetchrow(
        f"SELECT stable_release_id, stable_version FROM channels WHERE {CHANNEL_KEY} FOR UPDATE",
        *_channel_args(release),
    )
    if previous["stable_release_id"] == release.release_id:
        return
    # The channel moves first: the old release may not be archived while it is still stable.
    await conn.execute(
        f"""
        UPDATE channels SET stable_version = $4, stable_release_id = $5,
            candidate_version = NULL, candidate_release_id = NULL, percent = 0, whitelist = '{{}}',
            offline_kind = NULL, offline_reason = NULL, offline_by = NULL, offline_at = NULL,
            revision = revision + 1, updated_at = $6
        WHERE {CHANNEL_KEY}
        """,
        *_channel_args(release),
        release.version,
        release.release_id,
        release.at,
    )
    changes: list[tuple[str, str, str, str | None]] = [
        (release.release_id, release.version, "released", None)]
    if previous["stable_release_id"] is not None:
        await conn.execute(
            "UPDATE releases SET stage = 'ARCHIVED', archived_at = $2, updated_at = $2 "
            "WHERE release_id = $1",
            previous["stable_release_id"],
            release.at,
        )
        changes.append((previous["stable_release_id"], previous["stable_version"], "archived",
                        f"version {release.version} was released"))
    await channels.record_version_changes(
        conn, event.event_id, ChannelKey(**release.channel.model_dump()), event.actor,
        release.at, changes)


async def _channel_holder(conn: asyncpg.Connection, release: ReleaseRow) -> str | None:
    holder: str | None = await conn.fetchval(
        f"""
        SELECT release_id FROM releases
        WHERE {CHANNEL_KEY} AND stage = ANY($4::text[]) AND release_id <> $5
        """,
        *_channel_args(release),
        [stage.value for stage in CHANNEL_HOLDING_STAGES],
        release.release_id,
    )
    return holder


def _channel_label(release: ReleaseRow) -> str:
    return "/".join(_channel_args(release))


def _as_recorded(transition: CatalogTransition, blocked: Blocked | None) -> RecordedEvent:
    """The event as it goes into the log: a blocked transition is a refusal, stage unchanged."""
    event = RecordedEvent(**transition.event.model_dump())
    if blocked is None:
        return event
    return event.model_copy(
        update={
            "accepted": False,
            "stage_after": event.stage_before,
            "reason": blocked.reason,
            "blocked_by": blocked.holder,
        }
    )


async def _insert_event(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        """
        INSERT INTO release_events (event_id, release_id, seq, command, actor, accepted, reason,
                                    stage_before, stage_after, payload, at, blocked_by,
                                    claimed_actor)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
        """,
        event.event_id,
        event.release_id,
        event.seq,
        event.command,
        event.actor,
        event.accepted,
        event.reason,
        event.stage_before.value,
        event.stage_after.value,
        event.payload,
        event.at,
        event.blocked_by,
        event.claimed_actor,
    )


# --- Readers ---------------------------------------------------------------------------------


async def get_release(db: Database, release_id: str) -> StoredRelease | None:
    row = await db.fetchrow(
        """
        SELECT release_id, mini_program_id, version, target_app, environment, workspace_id,
               requested_by, stage, percent, package_sha256, first_release, created_at,
               updated_at, archived_at
        FROM releases WHERE release_id = $1
        """,
        release_id,
    )
    return StoredRelease.model_validate(dict(row)) if row else None
