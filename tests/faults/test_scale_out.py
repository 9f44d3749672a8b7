"""Scale-out: two worker processes on one task queue share 200 releases; one of them is killed
with SIGKILL in the middle of the run, and every release still ends RELEASED, on the other.

Each release takes the production path of a first release to GoPay: build, a compatibility
cell, apply, the partner app's approval, full release. Both workers must have done part of the
work before the kill; afterwards each release's catalog events must be its commands and system
events, each exactly once.
"""

import asyncio
import uuid
from collections import Counter

import asyncpg

from mpr.domain.release.stages import Stage
from starters.releases import ReleaseClient
from tests.faults.support import (
    DEADLINE_SECONDS,
    ONE_CELL,
    FaultStack,
    Sources,
    eventually,
    inconsistent_channels,
    stable_and_archived,
    start_input,
)
from tests.stack import WorkerProcess

RELEASES = 200
AT_ONCE = 40
KILL_WHEN_RELEASED = RELEASES // 4
COMMANDS = [
    ("apply_release", {"actor": "dev"}),
    ("approve_review", {"actor": "gopay-rev", "reviewer": "partner_app"}),
    ("full_release", {"actor": "admin"}),
]
SYSTEM_EVENTS = {"start_release", "build_succeeded", "compatibility_tested"}


def built_releases(worker: WorkerProcess) -> set[str]:
    """The releases whose build the worker logged as finished."""
    return {str(line["release_id"]) for line in worker.log_lines()
            if line.get("event") == "build finished"}


async def drive(releases: ReleaseClient, program: str, source_version: str,
                sources: Sources, released: list[str], limit: asyncio.Semaphore) -> None:
    async with limit:
        ref = await releases.start(start_input(program, source_version, "gopay",
                                               sources.tiny(source_version), ONE_CELL))
        await releases.wait_for_stage(ref, Stage.READY_TO_APPLY, timeout=DEADLINE_SECONDS)
        for name, payload in COMMANDS:
            await releases.command(ref, name, payload)
        released.append(ref.release_id)


async def test_two_workers_share_the_releases_and_one_dying_loses_none(
    stack: FaultStack, sources: Sources
) -> None:
    first = await stack.start_worker()
    second = await stack.start_worker()
    releases = await stack.releases()
    programs = [f"scale-{uuid.uuid4().hex[:8]}-{n:03d}" for n in range(RELEASES)]
    released: list[str] = []
    limit = asyncio.Semaphore(AT_ONCE)
    driving = asyncio.gather(*(drive(releases, program, "1.0.0", sources, released, limit)
                               for program in programs))

    await eventually(lambda: len(released) >= KILL_WHEN_RELEASED,
                     f"{KILL_WHEN_RELEASED} releases released")
    assert built_releases(first) and built_releases(second), "one worker did all the builds"
    stack.kill(first)
    await asyncio.wait_for(driving, timeout=10 * DEADLINE_SECONDS)

    assert len(released) == RELEASES
    client = await stack.client()
    for release_id in released:
        status = await client.get_workflow_handle(release_id).result()
        assert status["stage"] == Stage.RELEASED.value, release_id
    # Read after the kill: a build the first worker finished just before dying is in its log.
    unbuilt = set(released) - built_releases(first) - built_releases(second)
    assert not unbuilt, f"released without a finished build: {sorted(unbuilt)[:3]}"
    await check_catalog(await stack.catalog(), released)


async def check_catalog(pool: asyncpg.Pool, released: list[str]) -> None:
    rows = await pool.fetch(
        "SELECT release_id, command, accepted FROM release_events WHERE release_id = ANY($1)",
        released)
    per_release: dict[str, Counter[str]] = {release_id: Counter() for release_id in released}
    for row in rows:
        assert row["accepted"], dict(row)
        per_release[row["release_id"]][row["command"]] += 1
    expected = Counter(name for name, _ in COMMANDS) + Counter(SYSTEM_EVENTS)
    wrong = {release_id: dict(counts) for release_id, counts in per_release.items()
             if counts != expected}
    assert not wrong, f"events missing or written twice: {list(wrong.items())[:3]}"
    stages = await pool.fetch(
        "SELECT stage, count(*) AS n FROM releases WHERE release_id = ANY($1) GROUP BY stage",
        released)
    assert {row["stage"]: row["n"] for row in stages} == {"RELEASED": RELEASES}
    assert await stable_and_archived(pool) == []
    assert await inconsistent_channels(pool) == []
