"""The catalog side of a channel: what it serves, its versions' history, and its events.

`record_channel_transition` is the only writer of a channel's own changes (rollback,
takedown, back online); a release reaching RELEASED still moves the channel through
`releases.record_transition`. Every channel event is one transaction keyed by its event id,
so a retried activity changes nothing twice, and it applies only to the channel revision it
was decided on: a release that went live in between makes it a refusal, never a rollback to
the wrong version.
"""

from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg

from mpr.catalog.db import Database, connection
from mpr.domain.channel.models import (
    CHANGES_KEPT,
    STABLE_HISTORY_KEPT,
    VERSIONS_KEPT,
    ChannelKey,
    ChannelView,
    InFlight,
    ReleasedVersion,
    Takedown,
    VersionChange,
)
from mpr.domain.channel.records import (
    ChannelEvent,
    ChannelTransition,
    ChannelTransitionResult,
    RollbackChange,
)
from mpr.domain.channel.stages import TakedownKind, VersionStatus
from mpr.domain.release.stages import CHANNEL_HOLDING_STAGES

CHANNEL_KEY = "mini_program_id = $1 AND target_app = $2 AND environment = $3"
REVIEWER_TAKEDOWNS = (TakedownKind.PLATFORM, TakedownKind.PARTNER)

BundlesPresent = Callable[[list[str | None]], Awaitable[list[bool]]]
"""Whether each package's bundle (by its artifact path) is still in the artifact store: the
caller asks its file system, in a thread."""


def _key_args(key: ChannelKey) -> tuple[str, str, str]:
    return key.mini_program_id, key.target_app, key.environment.value


# --- reads ----------------------------------------------------------------------------------


async def load_channel_view(
    db: Database, key: ChannelKey, bundles_present: BundlesPresent
) -> ChannelView | None:
    """The channel as the catalog has it; None when the mini program is not in the catalog."""
    async with connection(db) as conn:
        return await _view(conn, key, bundles_present)


async def _view(
    conn: asyncpg.Connection, key: ChannelKey, bundles_present: BundlesPresent
) -> ChannelView | None:
    workspace = await conn.fetchval(
        "SELECT workspace_id FROM mini_programs WHERE mini_program_id = $1", key.mini_program_id)
    if workspace is None:
        return None
    row = await conn.fetchrow(
        f"""
        SELECT stable_version, stable_release_id, offline_kind, offline_reason, offline_by,
               offline_at, revision
        FROM channels WHERE {CHANNEL_KEY}
        """, *_key_args(key))
    history = [r["release_id"] for r in await conn.fetch(
        f"""
        SELECT release_id FROM version_changes
        WHERE {CHANNEL_KEY} AND change IN ('released', 'restored')
        ORDER BY at DESC, ordinal DESC LIMIT $4
        """, *_key_args(key), STABLE_HISTORY_KEPT)]
    return ChannelView(
        workspace_id=workspace,
        stable_version=row["stable_version"] if row else None,
        stable_release_id=row["stable_release_id"] if row else None,
        takedown=_takedown(row),
        in_flight=await _in_flight(conn, key),
        released=await _released(conn, key, history, bundles_present),
        stable_history=history,
        revision=row["revision"] if row else 0,
    )


def _takedown(row: asyncpg.Record | None) -> Takedown | None:
    if row is None or row["offline_kind"] is None:
        return None
    return Takedown(kind=TakedownKind(row["offline_kind"]), reason=row["offline_reason"],
                    by=row["offline_by"], at=row["offline_at"])


async def _in_flight(conn: asyncpg.Connection, key: ChannelKey) -> InFlight | None:
    row = await conn.fetchrow(
        f"""
        SELECT release_id, version, stage, percent FROM releases
        WHERE {CHANNEL_KEY} AND stage = ANY($4::text[])
        """, *_key_args(key), [stage.value for stage in CHANNEL_HOLDING_STAGES])
    return InFlight.model_validate(dict(row)) if row else None


async def _released(
    conn: asyncpg.Connection, key: ChannelKey, history: list[str], bundles_present: BundlesPresent
) -> list[ReleasedVersion]:
    """The last VERSIONS_KEPT versions released on the channel, and those in `history`."""
    rows = await conn.fetch(
        f"""
        WITH released AS (
            SELECT release_id, actor, at, row_number() OVER (ORDER BY at DESC) AS recency
            FROM version_changes WHERE {CHANNEL_KEY} AND change = 'released'
        )
        SELECT r.release_id, r.version, r.stage, r.package_sha256, p.artifact_path,
               v.actor AS released_by, v.at AS released_at
        FROM released v
        JOIN releases r USING (release_id)
        LEFT JOIN packages p ON p.sha256 = r.package_sha256
        WHERE v.recency <= $4 OR v.release_id = ANY($5::text[])
        ORDER BY v.at DESC
        """, *_key_args(key), VERSIONS_KEPT, history)
    changes = await _changes(conn, [row["release_id"] for row in rows])
    present = await bundles_present([row["artifact_path"] for row in rows])
    return [
        ReleasedVersion(
            version=row["version"], release_id=row["release_id"],
            status=VersionStatus(row["stage"]), released_at=row["released_at"],
            released_by=row["released_by"], package_sha256=row["package_sha256"],
            bundle_present=is_present, changes=changes.get(row["release_id"], []))
        for row, is_present in zip(rows, present, strict=True)
    ]


async def _changes(
    conn: asyncpg.Connection, release_ids: list[str]
) -> dict[str, list[VersionChange]]:
    rows = await conn.fetch(
        """
        SELECT release_id, change, at, actor, reason FROM (
            SELECT *, row_number() OVER (PARTITION BY release_id
                                         ORDER BY at DESC, ordinal DESC) AS recency
            FROM version_changes WHERE release_id = ANY($1::text[])
        ) c WHERE recency <= $2 ORDER BY at DESC, ordinal DESC
        """, release_ids, CHANGES_KEPT)
    found: dict[str, list[VersionChange]] = {}
    for row in rows:
        found.setdefault(row["release_id"], []).append(VersionChange(
            change=row["change"], at=row["at"], by=row["actor"], reason=row["reason"]))
    return found


async def list_channels(db: Database, mini_program_id: str | None = None) -> list[asyncpg.Record]:
    """Every channel that has served a version, with what it serves now."""
    rows: list[asyncpg.Record] = await db.fetch(
        """
        SELECT mini_program_id, target_app, environment, stable_version, offline_kind,
               offline_reason, candidate_version, percent, updated_at
        FROM channels
        WHERE stable_version IS NOT NULL AND ($1::text IS NULL OR mini_program_id = $1)
        ORDER BY mini_program_id, target_app, environment
        """, mini_program_id)
    return rows


# --- the writer -----------------------------------------------------------------------------


async def record_channel_transition(
    db: Database, transition: ChannelTransition, bundles_present: BundlesPresent
) -> ChannelTransitionResult:
    """Write one channel event and everything it changes, exactly once per event id."""
    event = transition.event
    async with connection(db) as conn, conn.transaction():
        # A retry may race its own first attempt: the second waits here, then finds the event.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", event.event_id)
        recorded = await conn.fetchrow(
            "SELECT accepted, reason FROM channel_events WHERE event_id = $1", event.event_id)
        if recorded is None:
            refusal = await _apply(conn, transition) if event.accepted else None
            await _insert_event(conn, event, refusal)
        else:
            refused_here = event.accepted and not recorded["accepted"]
            refusal = recorded["reason"] if refused_here else None
        # A refused command changed nothing its sender's identity check did not just read;
        # an accepted one (applied, or refused for a channel that moved) is read again.
        view = await _view(conn, event.key, bundles_present) if event.accepted else None
    return ChannelTransitionResult(applied=refusal is None, reason=refusal, view=view)


async def _apply(conn: asyncpg.Connection, transition: ChannelTransition) -> str | None:
    """Apply an accepted event; the reason it cannot apply when the channel moved meanwhile."""
    key = transition.event.key
    revision = await conn.fetchval(
        f"SELECT revision FROM channels WHERE {CHANNEL_KEY} FOR UPDATE", *_key_args(key))
    if revision != transition.expected_revision:
        return ("the channel changed while the command was being decided (a release went "
                "live or another command came first); look at its status and send it again")
    event = transition.event
    if transition.rollback:
        await _roll_back(conn, event, transition.rollback)
    if transition.takedown:
        takedown = transition.takedown
        await conn.execute(
            f"""
            UPDATE channels SET offline_kind = $4, offline_reason = $5, offline_by = $6,
                offline_at = $7, revision = revision + 1, updated_at = $7
            WHERE {CHANNEL_KEY}
            """, *_key_args(key), takedown.kind.value, takedown.reason, takedown.by, takedown.at)
    if transition.online:
        await conn.execute(
            f"""
            UPDATE channels SET offline_kind = NULL, offline_reason = NULL, offline_by = NULL,
                offline_at = NULL, revision = revision + 1, updated_at = $4
            WHERE {CHANNEL_KEY}
            """, *_key_args(key), event.at)
    return None


async def _roll_back(conn: asyncpg.Connection, event: ChannelEvent, change: RollbackChange) -> None:
    # The restored release is RELEASED before the channel points at it: the channel's stable
    # release must be RELEASED at every step (its foreign key). Its archive date is not lost:
    # version_changes keeps it.
    key = event.key
    await conn.execute(
        "UPDATE releases SET stage = 'RELEASED', archived_at = NULL, updated_at = $2 "
        "WHERE release_id = $1", change.to_release_id, event.at)
    await conn.execute(
        f"""
        UPDATE channels SET stable_version = $4, stable_release_id = $5,
            revision = revision + 1, updated_at = $6
        WHERE {CHANNEL_KEY}
        """, *_key_args(key), change.to_version, change.to_release_id, event.at)
    await conn.execute(
        "UPDATE releases SET stage = 'ROLLED_BACK', updated_at = $2 WHERE release_id = $1",
        change.from_release_id, event.at)
    reason = (event.payload or {}).get("reason")
    await record_version_changes(conn, event.event_id, key, event.actor, event.at, [
        (change.from_release_id, change.from_version, VersionStatus.ROLLED_BACK, reason),
        (change.to_release_id, change.to_version, "restored", reason),
    ])


async def record_version_changes(
    conn: asyncpg.Connection, event_id: str, key: ChannelKey, actor: str | None, at: datetime,
    changes: list[tuple[str, str, str, str | None]],
) -> None:
    """Append (release id, version, change, reason) rows for one event, in order."""
    await conn.executemany(
        """
        INSERT INTO version_changes (event_id, ordinal, mini_program_id, target_app,
                                     environment, release_id, version, change, actor, reason, at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT DO NOTHING
        """,
        [(event_id, ordinal, *_key_args(key), release_id, version, change.lower(), actor,
          reason, at)
         for ordinal, (release_id, version, change, reason) in enumerate(changes)])


async def _insert_event(
    conn: asyncpg.Connection, event: ChannelEvent, refusal: str | None
) -> None:
    await conn.execute(
        """
        INSERT INTO channel_events (event_id, mini_program_id, target_app, environment, seq,
                                    command, actor, claimed_actor, actor_kind, accepted, reason,
                                    state_before, state_after, payload, at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
        """,
        event.event_id, *_key_args(event.key), event.seq, event.command, event.actor,
        event.claimed_actor, event.actor_kind.value if event.actor_kind else None,
        event.accepted and refusal is None, refusal or event.reason,
        event.state_before.value,
        (event.state_before if refusal else event.state_after).value,
        event.payload, event.at)


async def channel_takedown(db: Database, key: tuple[str, str, str]) -> Takedown | None:
    """The takedown holding the channel (mini program, target app, environment) offline."""
    row = await db.fetchrow(
        f"""
        SELECT offline_kind, offline_reason, offline_by, offline_at FROM channels
        WHERE {CHANNEL_KEY} AND offline_kind IS NOT NULL
        """, *key)
    return _takedown(row)


async def reviewer_takedown(db: Database, key: tuple[str, str, str]) -> Takedown | None:
    """A platform or partner takedown holding the channel: no release may go live under it."""
    takedown = await channel_takedown(db, key)
    return takedown if takedown is not None and takedown.kind in REVIEWER_TAKEDOWNS else None


async def channel_events(db: Database, key: ChannelKey, limit: int = 100) -> list[asyncpg.Record]:
    """The channel's most recent events, newest first."""
    rows: list[asyncpg.Record] = await db.fetch(
        f"""
        SELECT seq, command, actor, claimed_actor, actor_kind, accepted, reason, state_before,
               state_after, at
        FROM channel_events WHERE {CHANNEL_KEY} ORDER BY at DESC, seq DESC LIMIT $4
        """, *_key_args(key), limit)
    return rows
