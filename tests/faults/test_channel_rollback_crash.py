"""A worker killed with SIGKILL in the middle of a channel's rollback: the rollback completes
once.

1.0.0 and then 1.1.0 of a fresh mini program go live through the worker, so its channel
workflow runs and serves 1.1.0. The test holds the channel's catalog row (`SELECT ... FOR
UPDATE` in an open transaction of its own) and sends `rollback`: the update is accepted, and
`record_channel_transition` opens its transaction, takes the event's advisory lock and waits
for the row. That is when the worker is killed. Its session is orphaned with the transaction
open; Temporal retries the activity on a second worker once its start-to-close timeout has
passed, and the retry waits behind its own first attempt (the advisory lock). The test lets go
of the row: the orphaned transaction can only roll back, the retry writes the rollback, and the
caller's update, still waiting, answers with 1.0.0 served. Sent again by a caller unsure of the
outcome, the rollback is refused. The catalog and the workflow hold the rollback exactly once.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from mpr.catalog.rollout import resolve_version_detail
from mpr.domain.channel.models import ChannelKey
from mpr.domain.channel.stages import ChannelState
from mpr.domain.channel.state import ChannelStatus
from mpr.domain.release.stages import Stage
from starters.channels import ChannelClient, ChannelCommandRefused
from starters.releases import ReleaseRef
from tests.faults.support import (
    DEADLINE_SECONDS,
    ONE_CELL,
    FaultStack,
    Sources,
    eventually,
    new_program,
    pending_activities,
    stable_and_archived,
    start_input,
    started_activities,
)
from tests.stack import ActingReleases, WorkerProcess, token_of

WRITE = "record_channel_transition"
REASON = "checkout crashes on 1.1.0"
# The activity's first statements, as pg_stat_activity shows them while they wait.
ADVISORY_LOCK = "SELECT pg_advisory_xact_lock%"
ROW_LOCK = "SELECT revision FROM channels%FOR UPDATE%"


async def test_a_rollback_whose_worker_is_killed_inside_the_catalog_write_completes_once(
    stack: FaultStack, sources: Sources
) -> None:
    first = await stack.start_worker()
    releases = await stack.releases()
    program = new_program("rollback")
    old = await gone_live(releases, program, "1.0.0", sources)
    new = await gone_live(releases, program, "1.1.0", sources)
    key = ChannelKey(mini_program_id=program, target_app="gopay")
    client = await stack.client()
    channel = client.get_workflow_handle(key.workflow_id)
    await eventually(lambda: serving(channel, "1.1.0"), "the channel to serve 1.1.0")
    channels = ChannelClient(client, stack.env["TEMPORAL_TASK_QUEUE"], token=token_of("admin"))
    pool = await stack.catalog()
    sent = 0

    async with holding_channel_row(stack, key) as holder:
        rollback = asyncio.create_task(channels.command(key, "rollback", {"reason": REASON}))
        sent += 1
        orphan = await eventually(lambda: waiting(pool, ROW_LOCK, exclude=[holder]),
                                  "the rollback's write to wait for the channel row")
        # The moment: the update is accepted, and its write is inside its transaction (it
        # holds the event's advisory lock) when the worker dies.
        assert await update_events(channel) == {"accepted": 1, "completed": 0}
        assert [(p.activity_type, p.attempt) for p in await pending_activities(channel)] == [
            (WRITE, 1)]
        stack.kill(first)
        assert not recorded_in_log(first), "the kill came too late"
        assert not rollback.done()

        await stack.start_worker()
        # Past the first attempt's start-to-close timeout the second worker retries the write;
        # the retry waits for the first attempt's transaction, still open in its orphaned
        # session (or, had PostgreSQL ended that session, for the channel row).
        await eventually(lambda: waiting(pool, ADVISORY_LOCK, ROW_LOCK,
                                         exclude=[holder, *orphan]),
                         "the retried write to wait behind the first attempt")
        assert [(p.activity_type, p.attempt) for p in await pending_activities(channel)] == [
            (WRITE, 2)]
    # The row is free: the orphaned transaction rolls back, the retry writes the rollback.

    # The caller's update, accepted before the kill, answers once the retry has written it.
    status = await asyncio.wait_for(rollback, DEADLINE_SECONDS)
    assert (status.state, status.stable_version) == (ChannelState.ONLINE, "1.0.0")
    assert status.audit_count == sent

    # A caller unsure of the outcome sends it again: refused, since the only version stable
    # before 1.0.0 is the rolled-back 1.1.0 (not "the first version": 1.1.0 was stable once).
    sent += 1
    with pytest.raises(ChannelCommandRefused) as again:
        await channels.command(key, "rollback", {"reason": REASON})
    assert again.value.reason == ("every version stable before 1.0.0 was rolled back; name "
                                  "one with to_version to restore it")

    # The catalog: 1.0.0 served again, one accepted rollback, one change of each version.
    resolution = await resolve_version_detail(pool, program, "gopay", "someone")
    assert (resolution.version, resolution.source) == ("1.0.0", "stable")
    events = await pool.fetch(
        "SELECT command, accepted, actor FROM channel_events WHERE mini_program_id = $1 "
        "ORDER BY seq", program)
    assert [tuple(e) for e in events] == [("rollback", True, "admin"),
                                          ("rollback", False, "admin")]
    changes = await pool.fetch(
        "SELECT version, change FROM version_changes WHERE mini_program_id = $1 "
        "AND change IN ('rolled_back', 'restored') ORDER BY ordinal", program)
    assert [tuple(c) for c in changes] == [("1.1.0", "rolled_back"), ("1.0.0", "restored")]
    stages = await pool.fetch(
        "SELECT release_id, stage FROM releases WHERE mini_program_id = $1", program)
    assert {r["release_id"]: r["stage"] for r in stages} == {
        old.release_id: "RELEASED", new.release_id: "ROLLED_BACK"}
    assert await stable_and_archived(pool) == []

    # The workflow: the same rollback, once.
    final = ChannelStatus.model_validate(await channel.query("status"))
    assert (final.state, final.stable_version) == (ChannelState.ONLINE, "1.0.0")
    assert final.stable_release_id == old.release_id
    assert final.audit_count == sent
    assert [(e.command, e.accepted) for e in final.recent_audit] == [("rollback", True),
                                                                      ("rollback", False)]
    assert final.last_rollback is not None
    assert (final.last_rollback.from_version, final.last_rollback.to_version) == (
        "1.1.0", "1.0.0")
    assert await update_events(channel) == {"accepted": sent, "completed": sent}
    # The history agrees: the rollback's write was done by its second attempt (the refusal's,
    # by its first).
    writes = [a.attempt for a in (await started_activities(channel)).values()
              if a.activity_type == WRITE]
    assert writes == [2, 1]


# --- helpers ---------------------------------------------------------------------------------


async def gone_live(releases: ActingReleases, program: str, version: str,
                    sources: Sources) -> ReleaseRef:
    """A release of `program` on gopay taken to RELEASED, its workflow finished."""
    ref = await releases.start(start_input(program, version, "gopay", sources.tiny(version),
                                           ONE_CELL))
    await releases.wait_for_stage(ref, Stage.READY_TO_APPLY, timeout=DEADLINE_SECONDS)
    await releases.command(ref, "apply_release", {"actor": "dev"})
    await releases.command(ref, "approve_review", {"actor": "gopay-rev",
                                                    "reviewer": "partner_app"})
    status = await releases.command(ref, "full_release", {"actor": "admin"})
    assert status.stage is Stage.RELEASED
    await releases.temporal.get_workflow_handle(ref.release_id).result()
    return ref


async def serving(channel: WorkflowHandle[Any, Any], version: str) -> bool:
    try:
        status = await channel.query("status")
    except Exception:  # not started yet, or still reading the catalog
        return False
    return bool(status["stable_version"] == version)


@asynccontextmanager
async def holding_channel_row(stack: FaultStack, key: ChannelKey) -> AsyncIterator[int]:
    """Hold the channel's catalog row in an open transaction of the test's own; the pid of its
    session."""
    conn = await asyncpg.connect(stack.env["DATABASE_URL"])
    try:
        async with conn.transaction():
            locked = await conn.fetchval(
                "SELECT revision FROM channels WHERE mini_program_id = $1 AND target_app = $2 "
                "AND environment = $3 FOR UPDATE",
                key.mini_program_id, key.target_app, key.environment.value)
            assert locked is not None, "the channel has no catalog row"
            yield conn.get_server_pid()
    finally:
        await conn.close()


async def waiting(pool: asyncpg.Pool, *statements: str, exclude: list[int]) -> list[int]:
    """The sessions waiting on a lock while running one of `statements` (LIKE patterns)."""
    rows = await pool.fetch(
        """
        SELECT pid FROM pg_stat_activity
        WHERE wait_event_type = 'Lock' AND query LIKE ANY($1::text[])
            AND NOT pid = ANY($2::int[])
        """, list(statements), exclude)
    return [row["pid"] for row in rows]


async def update_events(channel: WorkflowHandle[Any, Any]) -> dict[str, int]:
    counts = {"accepted": 0, "completed": 0}
    async for event in channel.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            counts["accepted"] += 1
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            counts["completed"] += 1
    return counts


def recorded_in_log(worker: WorkerProcess) -> list[dict[str, Any]]:
    return [line for line in worker.log_lines()
            if line.get("event") == "channel transition recorded"]
