"""Replay the recorded histories in tests/histories/ against the current workflow code.

A failure here means the change is not replay-safe: releases and mini service versions in
flight would fail their next workflow task. Read tests/histories/README.md before touching the
recordings.
"""

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from tests.stack import TEST_CONVERTER
from workflows import worker_workflows

HISTORIES = Path(__file__).parents[1] / "histories"
FILES = sorted(HISTORIES.glob("*.json"))

# Every recorded path (tests/histories/record.py); continued-as-new paths have run1, run2, ...
EXPECTED = [
    "release_full.json",
    "release_grayscale_reset.json",
    "release_cancel.ready_to_apply.json",
    "release_cancel.grayscale.json",
    "release_rejection_reapply.json",
    "release_whitelist.json",
    "release_build_failure_rebuild.json",
    "release_malformed_and_refused.json",
    "release_continue_as_new.run1.json",
    "release_continue_as_new.run2.json",
    # Recorded after the `verified-identity` patch: its new branch.
    "release_verified_identity.json",
    # Recorded after the `local-catalog-reads` patch: catalog reads as local activities.
    "release_local_catalog_reads.json",
    # Recorded after the `channel-notice` (and `prefill-basic-info`) patches: a release that
    # reaches RELEASED starts its channel.
    "release_channel_notice.release.json",
    "release_channel_notice.channel.json",
    "channel_commands.json",
    "channel_withdraw.channel.json",
    "channel_withdraw.release.json",
    "channel_continue_as_new.run1.json",
    "channel_continue_as_new.run2.json",
    "mini_service_lifecycle.json",
    "mini_service_archive.v1.json",
    "mini_service_archive.v2.json",
    "mini_service_revert_delete.json",
    "mini_service_continue_as_new.run1.json",
    "mini_service_continue_as_new.run2.json",
    "mini_service_verified_identity.json",
    "mini_service_local_catalog_reads.v1.json",
    "mini_service_local_catalog_reads.v2.json",
]


def load(path: Path, text: str | None = None) -> WorkflowHistory:
    """The history in `path` (or `text`); its workflow id is in its first (started) event."""
    text = text if text is not None else path.read_text()
    start = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]
    return WorkflowHistory.from_json(start["workflowId"], text)


def replayer() -> Replayer:
    return Replayer(workflows=list(worker_workflows().values()),
                    data_converter=TEST_CONVERTER)


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
async def test_recorded_history_replays(path: Path):
    # replay_workflow raises (NondeterminismError, or the workflow task's error) on failure.
    await replayer().replay_workflow(load(path))


def test_every_path_has_a_recording():
    present = {f.name for f in FILES}
    missing = [name for name in EXPECTED if name not in present]
    assert not missing, f"recorded histories missing (run tests.histories.record): {missing}"
    known_paths = {name.split(".")[0] for name in EXPECTED}
    strays = sorted(name for name in present if name.split(".")[0] not in known_paths)
    assert not strays, f"histories of no known path (add them to EXPECTED): {strays}"


async def test_a_changed_workflow_fails_the_replay():
    """The replay tests can fail: a history whose build activity had another name is not
    what today's code does, and replaying it raises."""
    path = HISTORIES / "release_full.json"
    document = json.loads(path.read_text())
    scheduled = [e["activityTaskScheduledEventAttributes"] for e in document["events"]
                 if "activityTaskScheduledEventAttributes" in e]
    build = next(a for a in scheduled if a["activityType"]["name"] == "build_package")
    build["activityType"]["name"] = "build_package_v0"

    with pytest.raises(NondeterminismError, match="build_package"):
        await replayer().replay_workflow(load(path, json.dumps(document)))
