"""A worker stopped with SIGTERM in the middle of a build drains: the build finishes and is
reported within the graceful shutdown timeout, the process exits cleanly, and the next worker
carries on without redoing it; a command sent meanwhile is not lost."""

import asyncio
import signal

from mpr.domain.release.stages import Stage
from starters.releases import ReleaseRef
from tests.faults.support import (
    DEADLINE_SECONDS,
    WORKER_EXIT_SECONDS,
    FaultStack,
    Sources,
    eventually,
    log_events,
    new_program,
    start_input,
    started_activities,
)

DRAIN_EVENTS = {"worker draining", "build finished", "worker stopped"}


async def test_sigterm_lets_the_build_in_flight_finish_and_loses_nothing(
    stack: FaultStack, sources: Sources
) -> None:
    releases = await stack.releases()
    request = start_input(new_program("drain"), "1.0.0", "gopay", sources.heavy("1.0.0"))
    ref = ReleaseRef.of(request)
    release_id = ref.release_id

    first = await stack.start_worker()
    await releases.start(request)
    build = await eventually(lambda: log_events(first, release_id, "build started"),
                             "the build to start")
    first.process.send_signal(signal.SIGTERM)
    # Sent while the worker drains and no other is polling: it waits in the history.
    await releases.signal(ref, "update_config", {
        "actor": "dev", "config": {"basic_info": {"description": "sent while draining"}}})
    exit_code = await asyncio.to_thread(first.process.wait, WORKER_EXIT_SECONDS)

    assert exit_code == 0
    assert log_events(first, release_id, "build finished"), "the build did not finish"
    drained = [line["event"] for line in first.log_lines() if line.get("event") in DRAIN_EVENTS]
    assert drained == ["worker draining", "build finished", "worker stopped"]

    second = await stack.start_worker()
    status = await releases.wait_for_stage(ref, Stage.READY_TO_APPLY, timeout=DEADLINE_SECONDS)
    handle = (await stack.client()).get_workflow_handle(release_id)
    started = await started_activities(handle)
    assert started[build[0]["activity_id"]].attempt == 1, "the drained build was retried"
    assert log_events(second, release_id, "build started") == []

    audit = await releases.audit_log(ref)
    assert [entry.command for entry in audit.entries].count("update_config") == 1
    assert status.package is not None
    bundles = [path.name for path in stack.artifact_dir.rglob("*") if path.is_file()]
    assert bundles == [f"{status.package.sha256}.zip"]
    await releases.command(ref, "cancel_release", {"actor": "owner"})
