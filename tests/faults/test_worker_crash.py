"""A worker killed with SIGKILL in the middle of a build, and its successor killed in the middle
of the compatibility run: once a worker is back the release finishes, and the retries left no
duplicate behind (one package, one bundle, one report, one audit row per command)."""


import asyncpg

from mpr.domain.release.stages import Stage
from starters.releases import ReleaseRef
from tests.faults.support import (
    DEADLINE_SECONDS,
    FaultStack,
    Sources,
    eventually,
    in_flight_cells,
    log_events,
    new_program,
    start_input,
    started_activities,
)

EXPECTED_COMMANDS = ["start_release", "build_succeeded", "compatibility_tested",
                     "apply_release", "approve_review", "full_release"]


async def test_a_release_survives_workers_killed_mid_build_and_mid_compatibility(
    stack: FaultStack, sources: Sources
) -> None:
    releases = await stack.releases()
    request = start_input(new_program("crash"), "1.0.0", "gopay", sources.heavy("1.0.0"))
    ref = ReleaseRef.of(request)
    release_id = ref.release_id

    first = await stack.start_worker()
    await releases.start(request)
    build = await eventually(lambda: log_events(first, release_id, "build started"),
                             "the build to start")
    stack.kill(first)
    assert log_events(first, release_id, "build finished") == [], "the kill came too late"
    build_id = build[0]["activity_id"]

    # The new worker gets the build again once its heartbeat timeout has passed.
    second = await stack.start_worker()
    await eventually(lambda: in_flight_cells(second, release_id), "a cell to start")
    stack.kill(second)
    retried_build = log_events(second, release_id, "build finished")
    assert [line["attempt"] for line in retried_build] == [2]
    lost_cells = in_flight_cells(second, release_id)
    assert lost_cells, "every cell had finished when the worker was killed"

    await stack.start_worker()
    await releases.wait_for_stage(ref, Stage.READY_TO_APPLY, timeout=DEADLINE_SECONDS)
    await releases.command(ref, "apply_release", {"actor": "dev"})
    await releases.command(ref, "approve_review", {"actor": "gopay-rev",
                                                    "reviewer": "partner_app"})
    status = await releases.command(ref, "full_release", {"actor": "admin"})
    assert status.stage is Stage.RELEASED
    handle = (await stack.client()).get_workflow_handle(release_id)
    await handle.result()

    # The history agrees: the build and the lost cells really were retried.
    started = await started_activities(handle)
    assert started[build_id].attempt == 2
    assert all(started[cell].attempt >= 2 for cell in lost_cells), {
        cell: started[cell] for cell in lost_cells}

    pool = await stack.catalog()
    package = status.package
    assert package is not None and status.compatibility is not None
    assert status.compatibility.cells == 24
    await assert_exactly_one_package(stack, pool, package.sha256)
    assert await pool.fetchval(
        "SELECT count(*) FROM compatibility_reports WHERE release_id = $1", release_id) == 1
    events = await pool.fetch(
        "SELECT event_id, command FROM release_events WHERE release_id = $1 ORDER BY seq",
        release_id)
    assert [event["command"] for event in events] == EXPECTED_COMMANDS
    audit = await releases.audit_log(ref)
    assert audit.total == len(EXPECTED_COMMANDS)
    assert [entry.event_id for entry in audit.entries] == [event["event_id"] for event in events]
    assert await pool.fetchval(
        "SELECT stable_release_id FROM channels WHERE mini_program_id = $1",
        request.mini_program_id) == release_id


async def assert_exactly_one_package(stack: FaultStack, pool: asyncpg.Pool, sha256: str) -> None:
    """One bundle in the artifact directory (no second copy, no leftover temporary file), and
    one package row pointing at it."""
    stored = [path for path in stack.artifact_dir.rglob("*") if path.is_file()]
    assert [path.name for path in stored] == [f"{sha256}.zip"]
    rows = await pool.fetch("SELECT sha256 FROM packages WHERE artifact_path = $1",
                            str(stored[0]))
    assert [row["sha256"] for row in rows] == [sha256]


