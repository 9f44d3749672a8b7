"""The worked example of docs/changing-workflows.md: changing MiniProgramRelease while releases
are in flight.

The change: before building, a release now runs one more activity, `scan_source`. Each variant
below is registered under the real workflow type name, as the changed code would be on a
deployed worker, and is replayed against the recorded histories in tests/histories/ (the
releases in flight, as far as the new code can tell):

- `UnguardedRelease` makes the change as is: releases recorded before it no longer replay.
- `PatchedRelease` puts it behind `workflow.patched(PATCH_ID)`: every recorded release replays
  on the old branch, and new releases take the new one and record the patch marker.
- `DeprecatedRelease` is the next step, `workflow.deprecate_patch(PATCH_ID)`, once no release
  recorded without the patch can still be running.
- `CleanedUpRelease` is the last one, without any patch call, once no release recorded before
  the deprecation can still be running.
"""

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker
from temporalio.workflow import NondeterminismError

# The sandbox re-imports this module (it defines workflows): share these modules with it.
with workflow.unsafe.imports_passed_through():
    import pytest

    from mpr.domain.core.models import Role
    from mpr.domain.release.release_id import release_id
    from mpr.domain.release.state import ReleaseStatus
    from tests.stack import TEST_CONVERTER
    from tests.workflows.driving import command, start_input, wait_for_stage
    from tests.workflows.release_fakes import FakeCatalog
from workflows.release import WORKFLOW_TYPE, MiniProgramRelease

HISTORIES = Path(__file__).parents[1] / "histories"
def of_releases(path: Path) -> bool:
    """A recording of a release (a path that starts a release's channel records that too)."""
    start = json.loads(path.read_text())["events"][0]["workflowExecutionStartedEventAttributes"]
    return bool(start["workflowType"]["name"] == WORKFLOW_TYPE)


RELEASE_HISTORIES = [path for path in sorted(HISTORIES.glob("release_*.json"))
                     if of_releases(path)]
# Paths that build, so the changed step is on them.
BUILDING_HISTORIES = ["release_full.json", "release_build_failure_rebuild.json"]
PATCH_ID = "scan-source-before-build"


async def scan_source_first(release: MiniProgramRelease) -> None:
    await workflow.execute_activity(
        "scan_source", release.state.release_id, start_to_close_timeout=timedelta(minutes=5)
    )


@workflow.defn(name=WORKFLOW_TYPE)
class UnguardedRelease(MiniProgramRelease):
    """The change made naively: not replay-safe."""

    @workflow.run
    async def run(self, request: Any, carried: Any = None) -> ReleaseStatus:
        return await super().run(request, carried)

    async def _build(self) -> None:
        await scan_source_first(self)
        await super()._build()


@workflow.defn(name=WORKFLOW_TYPE)
class PatchedRelease(MiniProgramRelease):
    """The change made safely: old releases keep the old path when replayed."""

    @workflow.run
    async def run(self, request: Any, carried: Any = None) -> ReleaseStatus:
        return await super().run(request, carried)

    async def _build(self) -> None:
        if workflow.patched(PATCH_ID):
            await scan_source_first(self)
        await super()._build()


@workflow.defn(name=WORKFLOW_TYPE)
class DeprecatedRelease(MiniProgramRelease):
    """After every release that predates the patch has closed: the old branch is gone."""

    @workflow.run
    async def run(self, request: Any, carried: Any = None) -> ReleaseStatus:
        return await super().run(request, carried)

    async def _build(self) -> None:
        workflow.deprecate_patch(PATCH_ID)
        await scan_source_first(self)
        await super()._build()


@workflow.defn(name=WORKFLOW_TYPE)
class CleanedUpRelease(MiniProgramRelease):
    """Last step, once no release started before the deprecation can be running: no patch call.
    The same code as UnguardedRelease; what makes it safe now is which releases are running."""

    @workflow.run
    async def run(self, request: Any, carried: Any = None) -> ReleaseStatus:
        return await super().run(request, carried)

    async def _build(self) -> None:
        await scan_source_first(self)
        await super()._build()


def load(path: Path) -> WorkflowHistory:
    text = path.read_text()
    start = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]
    return WorkflowHistory.from_json(start["workflowId"], text)


def replayer(workflow_class: type) -> Replayer:
    return Replayer(workflows=[workflow_class], data_converter=TEST_CONVERTER)


def test_the_recordings_cover_the_changed_step() -> None:
    assert len(RELEASE_HISTORIES) >= 10
    for name in BUILDING_HISTORIES:
        assert '"build_package"' in (HISTORIES / name).read_text(), name


@pytest.mark.parametrize("name", BUILDING_HISTORIES)
async def test_the_unguarded_change_breaks_releases_in_flight(name: str) -> None:
    with pytest.raises(NondeterminismError, match="scan_source"):
        await replayer(UnguardedRelease).replay_workflow(load(HISTORIES / name))


@pytest.mark.parametrize("path", RELEASE_HISTORIES, ids=[p.stem for p in RELEASE_HISTORIES])
async def test_the_patched_change_replays_every_recorded_release(path: Path) -> None:
    await replayer(PatchedRelease).replay_workflow(load(path))


# --- new releases take the new branch ------------------------------------------------------


async def run_release(env: WorkflowEnvironment, workflow_class: type) -> WorkflowHistory:
    """Start a release on a worker running `workflow_class`, build it, cancel it."""
    scanned: list[str] = []

    @activity.defn(name="scan_source")
    async def scan_source(release: str) -> None:
        scanned.append(release)

    catalog = FakeCatalog(roles={"dev": {Role.DEVELOPER}, "owner": {Role.OWNER}})
    queue = f"patched-upgrade-{uuid.uuid4()}"
    request = start_input()
    workflow_id = release_id(request["mini_program_id"], request["version"],
                             request["target_app"], "production")
    async with Worker(env.client, task_queue=queue, workflows=[workflow_class],
                      activities=[*catalog.activities, scan_source]):  # type: ignore[list-item]
        handle = await env.client.start_workflow(
            WORKFLOW_TYPE, request, id=workflow_id, task_queue=queue
        )
        await wait_for_stage(handle, "READY_TO_APPLY")
        await command(handle, "cancel_release", actor="owner")
        await handle.result()
        history = await handle.fetch_history()
    assert scanned == [workflow_id], "the new release took the new branch"
    assert catalog.build_started == 1
    activities = [e.activity_task_scheduled_event_attributes.activity_type.name
                  for e in history.events
                  if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert activities.index("scan_source") == activities.index("build_package") - 1
    return history


def patch_markers(history: WorkflowHistory) -> list[bytes]:
    """The markers of the patch under test (the product's own patches leave theirs too)."""
    return [e.marker_recorded_event_attributes.SerializeToString() for e in history.events
            if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            and PATCH_ID.encode() in e.marker_recorded_event_attributes.SerializeToString()]


async def test_a_new_release_takes_the_patched_branch(env: WorkflowEnvironment) -> None:
    history = await run_release(env, PatchedRelease)
    [marker] = patch_markers(history)
    assert b"core_patch" in marker and PATCH_ID.encode() in marker

    # The patched code replays it; so does the code that later deprecates the patch.
    await replayer(PatchedRelease).replay_workflow(history)
    await replayer(DeprecatedRelease).replay_workflow(history)
    # Rolling back to the code before the patch would break the releases started since; so
    # would dropping the patch call without going through deprecate_patch first.
    for old_or_cleaned_up in (MiniProgramRelease, CleanedUpRelease):
        with pytest.raises(NondeterminismError, match=PATCH_ID):
            await replayer(old_or_cleaned_up).replay_workflow(history)


async def test_releases_started_on_the_deprecated_patch_replay_without_it(
    env: WorkflowEnvironment,
) -> None:
    history = await run_release(env, DeprecatedRelease)
    assert len(patch_markers(history)) == 1
    await replayer(DeprecatedRelease).replay_workflow(history)
    await replayer(CleanedUpRelease).replay_workflow(history)
