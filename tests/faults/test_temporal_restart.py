"""The Temporal server stopped and started again (same SQLite file, same port) while releases
wait for review and one is in GRAYSCALE: each is where it was, in the same run, and goes on to
RELEASED; the worker rode out the outage without a restart."""

from mpr.domain.release.stages import Stage
from starters.releases import ReleaseClient, ReleaseRef
from tests.faults.support import (
    DEADLINE_SECONDS,
    ONE_CELL,
    FaultStack,
    Sources,
    eventually,
    new_program,
    start_input,
)
from tests.stack import WorkerProcess

PARTNER = {"gopay": "gopay-rev", "alipaycn": "alipay-rev"}


async def test_releases_carry_on_after_the_temporal_server_restarts(
    stack: FaultStack, sources: Sources
) -> None:
    worker = await stack.start_worker()
    releases = await stack.releases()
    source = sources.tiny("1.0.0")
    awaiting_partner = start_input(new_program("restart"), "1.0.0", "gopay", source, ONE_CELL)
    half_approved = start_input(new_program("restart"), "1.0.0", "alipaycn", source, ONE_CELL)
    in_grayscale = start_input(new_program("restart"), "1.0.0", "alipaycn", source, ONE_CELL)
    refs = [await releases.start(request)
            for request in (awaiting_partner, half_approved, in_grayscale)]
    for ref in refs:
        await apply(releases, ref)
    await releases.command(refs[1], "approve_review", platform_approval())
    await releases.command(refs[2], "approve_review", platform_approval())
    await releases.command(refs[2], "approve_review", partner_approval("alipaycn"))
    await releases.command(refs[2], "set_grayscale", {"actor": "admin", "percent": 5})
    client = await stack.client()
    before = {ref.release_id: (await releases.status(ref),
                               (await client.get_workflow_handle(ref.release_id).describe()).run_id)
              for ref in refs}
    assert [status.stage for status, _ in before.values()] == [
        Stage.UNDER_REVIEW, Stage.UNDER_REVIEW, Stage.GRAYSCALE]

    stack.temporal.stop()
    await eventually(lambda: polls_failing(worker), "the worker to find Temporal gone")
    await stack.temporal.start()

    assert worker.process.poll() is None, "the worker died with the Temporal server"
    for ref in refs:
        status_before, run_before = before[ref.release_id]
        status = await releases.status(ref)
        run = (await client.get_workflow_handle(ref.release_id).describe()).run_id
        assert (status, run) == (status_before, run_before)

    await releases.command(refs[0], "approve_review", partner_approval("gopay"))
    await releases.command(refs[1], "approve_review", partner_approval("alipaycn"))
    await releases.command(refs[2], "set_grayscale", {"actor": "admin", "percent": 50})
    pool = await stack.catalog()
    for ref in refs:
        status = await releases.command(ref, "full_release", {"actor": "admin"})
        assert status.stage is Stage.RELEASED
        await client.get_workflow_handle(ref.release_id).result()
        assert await pool.fetchval(
            "SELECT stage FROM releases WHERE release_id = $1", ref.release_id) == "RELEASED"
        assert await pool.fetchval(
            "SELECT stable_release_id FROM channels WHERE mini_program_id = $1",
            ref.mini_program_id) == ref.release_id


async def apply(releases: ReleaseClient, ref: ReleaseRef) -> None:
    await releases.wait_for_stage(ref, Stage.READY_TO_APPLY, timeout=DEADLINE_SECONDS)
    await releases.command(ref, "apply_release", {"actor": "dev"})


def polls_failing(worker: WorkerProcess) -> bool:
    """The SDK warns (in its own format, not JSON) once its task polls have failed a few times
    in a row: the worker has been without a server for seconds, and is still running."""
    warnings = [line for line in worker.log_file.read_text().splitlines()
                if "poll_workflow_task_queue retried" in line and "Unavailable" in line]
    return bool(warnings) and worker.process.poll() is None


def platform_approval() -> dict[str, str]:
    return {"actor": "platform-rev", "reviewer": "platform"}


def partner_approval(target_app: str) -> dict[str, str]:
    return {"actor": PARTNER[target_app], "reviewer": "partner_app"}
