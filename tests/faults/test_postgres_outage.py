"""PostgreSQL stopped in the middle of a catalog write: during a rollout write (set_grayscale)
and during promote-and-archive (full_release of a second version).

To land the outage inside the write, the test first holds a lock the write needs, waits until
the worker's transaction has written part of the event and is blocked on that lock, then stops
the server (a fast shutdown: open transactions are rolled back). The activity retries with
backoff while the release waits in its stage; once PostgreSQL is back the command completes,
and the catalog holds either none or all of it: no half-written channel row, no version both
stable and archived, one event row per command.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from mpr.domain.release.stages import Stage
from starters.releases import ReleaseClient, ReleaseRef
from tests.faults.support import (
    DEADLINE_SECONDS,
    ONE_CELL,
    FaultStack,
    PendingActivity,
    Sources,
    event_commands,
    eventually,
    inconsistent_channels,
    new_program,
    pending_activities,
    stable_and_archived,
    start_input,
)

# Attempt 1 was cut by the shutdown; by attempt 3 the release has waited out two backoffs.
WAITED_ATTEMPTS = 3


async def test_a_rollout_write_waits_out_a_postgres_outage(
    stack: FaultStack, sources: Sources
) -> None:
    await stack.start_worker()
    releases = await stack.releases()
    ref = await release_preparation(releases, "alipaycn", sources.tiny("1.0.0"), "1.0.0")
    pool = await stack.catalog()

    async with holding(stack, "LOCK TABLE channels IN EXCLUSIVE MODE"):
        await releases.signal(ref, "set_grayscale", {"actor": "admin", "percent": 5})
        await blocked_mid_transaction(pool, "INSERT INTO channels")
        await asyncio.to_thread(stack.postgres.stop)
    await wait_out_outage(stack, releases, ref, Stage.RELEASE_PREPARATION)

    status = await releases.wait_for_stage(ref, Stage.GRAYSCALE, timeout=DEADLINE_SECONDS)
    assert status.percent == 5
    channel = await pool.fetchrow(
        "SELECT candidate_release_id, candidate_version, percent FROM channels "
        "WHERE mini_program_id = $1", ref.mini_program_id)
    assert dict(channel) == {"candidate_release_id": ref.release_id,
                             "candidate_version": "1.0.0", "percent": 5}
    await assert_catalog_consistent(pool, releases, ref)
    assert (await event_commands(pool, ref.release_id)).count("set_grayscale") == 1


async def test_promote_and_archive_waits_out_a_postgres_outage(
    stack: FaultStack, sources: Sources
) -> None:
    await stack.start_worker()
    releases = await stack.releases()
    program = new_program("outage")
    first = await release_preparation(releases, "gopay", sources.tiny("1.0.0"), "1.0.0",
                                      program)
    await releases.command(first, "full_release", {"actor": "admin"})
    second = await release_preparation(releases, "gopay", sources.tiny("1.1.0"), "1.1.0",
                                       program)
    pool = await stack.catalog()
    old_and_new = (first.release_id, second.release_id)

    # The promotion moves the channel to 1.1.0, then waits to archive 1.0.0.
    async with holding(stack, "SELECT 1 FROM releases WHERE release_id = $1 FOR UPDATE",
                       first.release_id):
        await releases.signal(second, "full_release", {"actor": "admin"})
        await blocked_mid_transaction(pool, "SET stage = 'ARCHIVED'")
        await asyncio.to_thread(stack.postgres.stop)
    await wait_out_outage(stack, releases, second, Stage.RELEASE_PREPARATION)

    # Whenever it is looked at, the catalog shows the promotion undone or done, never half.
    assert await promotion(pool, *old_and_new) in (
        (first.release_id, "RELEASED", "RELEASE_PREPARATION"),
        (second.release_id, "ARCHIVED", "RELEASED"),
    )
    handle = (await stack.client()).get_workflow_handle(second.release_id)
    await handle.result()
    assert await promotion(pool, *old_and_new) == (second.release_id, "ARCHIVED", "RELEASED")
    await assert_catalog_consistent(pool, releases, second)
    assert (await event_commands(pool, second.release_id)).count("full_release") == 1


# --- helpers ---------------------------------------------------------------------------------


async def release_preparation(releases: ReleaseClient, target_app: str, source: Path,
                              version: str, program: str | None = None) -> ReleaseRef:
    """A release applied and approved by every reviewer its target app requires."""
    request = start_input(program or new_program("outage"), version, target_app, source,
                          ONE_CELL)
    ref = await releases.start(request)
    await releases.wait_for_stage(ref, Stage.READY_TO_APPLY, timeout=DEADLINE_SECONDS)
    await releases.command(ref, "apply_release", {"actor": "dev"})
    partner = "gopay-rev" if target_app == "gopay" else "alipay-rev"
    if target_app == "alipaycn":
        await releases.command(ref, "approve_review",
                               {"actor": "platform-rev", "reviewer": "platform"})
    status = await releases.command(ref, "approve_review",
                                    {"actor": partner, "reviewer": "partner_app"})
    assert status.stage is Stage.RELEASE_PREPARATION
    return ref


@asynccontextmanager
async def holding(stack: FaultStack, lock_statement: str, *args: str) -> AsyncIterator[None]:
    """Hold a lock in an open transaction of the test's own; the shutdown ends it."""
    conn = await asyncpg.connect(stack.env["DATABASE_URL"])
    try:
        await conn.execute("BEGIN")
        await conn.execute(lock_statement, *args)
        yield
    finally:
        conn.terminate()


async def blocked_mid_transaction(pool: asyncpg.Pool, statement: str) -> None:
    """Wait until the worker's transaction is blocked on `statement`, having already written
    (it has a transaction id): an outage now cuts a write in the middle."""
    async def blocked() -> bool:
        return bool(await pool.fetchval(
            """
            SELECT count(*) FROM pg_stat_activity
            WHERE wait_event_type = 'Lock' AND backend_xid IS NOT NULL
                AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()
            """, statement))

    await eventually(blocked, f"the catalog write to block on {statement!r}")


async def wait_out_outage(stack: FaultStack, releases: ReleaseClient, ref: ReleaseRef,
                          stage: Stage) -> None:
    """With PostgreSQL down: the write is retried with backoff while the release waits in
    `stage`; then PostgreSQL comes back on the same socket."""
    handle = (await stack.client()).get_workflow_handle(ref.release_id)

    async def retried_write() -> PendingActivity | None:
        for pending in await pending_activities(handle):
            if pending.activity_type == "record_transition" and \
                    pending.attempt >= WAITED_ATTEMPTS:
                return pending
        return None

    pending = await eventually(retried_write, "the catalog write to be retried")
    assert pending.last_failure, "a retried write names the failure it retries"
    assert (await releases.status(ref)).stage is stage
    await asyncio.to_thread(stack.postgres.start)


async def promotion(pool: asyncpg.Pool, old: str, new: str) -> tuple[Any, ...]:
    """(stable release, stage of the old version, stage of the new one), read at one instant."""
    row = await pool.fetchrow(
        """
        SELECT c.stable_release_id,
               (SELECT stage FROM releases WHERE release_id = $1) AS old_stage,
               (SELECT stage FROM releases WHERE release_id = $2) AS new_stage
        FROM releases r JOIN channels c USING (mini_program_id, target_app, environment)
        WHERE r.release_id = $2
        """, old, new)
    return tuple(row)


async def assert_catalog_consistent(pool: asyncpg.Pool, releases: ReleaseClient,
                                    ref: ReleaseRef) -> None:
    assert await stable_and_archived(pool) == []
    assert await inconsistent_channels(pool) == []
    status = await releases.status(ref)
    row = await pool.fetchrow("SELECT stage, percent FROM releases WHERE release_id = $1",
                              ref.release_id)
    assert (row["stage"], row["percent"]) == (status.stage, status.percent)
    assert len(await event_commands(pool, ref.release_id)) == status.audit_count
