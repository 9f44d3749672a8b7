"""`mpr history`'s lines for a recorded history (no server): local activities, patches, a mini
service's and a channel's catalog writes read as the operator needs them; `mpr replay` of a
channel's recording."""

import json
from pathlib import Path

from mpr.cli.history import readable
from tests.mpr_runner import Mpr, catalog_mpr  # noqa: F401 (the module's `mpr`)
from tests.workflows.test_replay_histories import HISTORIES, load


def lines_of(name: str) -> list[str]:
    history = load(HISTORIES / name)
    return readable(history.workflow_id, "run-1", ["run-1"], history).splitlines()


def with_all(lines: list[str], *parts: str) -> list[str]:
    return [line for line in lines if all(part in line for part in parts)]


def test_a_mini_service_history_shows_its_reads_patches_and_writes() -> None:
    lines = lines_of("mini_service_local_catalog_reads.v2.json")

    assert with_all(lines, "MarkerRecorded", "patch local-catalog-reads")
    assert with_all(lines, "MarkerRecorded", "local activity authenticate_service_actor #1",
                    'result={"subject":"olly","roles":["service_operator"]')
    assert with_all(lines, "MarkerRecorded", "local activity load_service_context")
    assert with_all(lines, "ActivityTaskScheduled", "record_service_transition",
                    "create by olly: DRAFT -> DRAFT")
    assert with_all(lines, "ActivityTaskScheduled", "record_service_transition",
                    "release by olly: DRAFT -> DRAFT refused: olly is not authorised")
    assert with_all(lines, "ActivityTaskScheduled", "record_service_transition",
                    "release by ada: TESTING -> RELEASED")


def test_a_history_from_before_the_patch_shows_its_reads_as_activities() -> None:
    lines = lines_of("release_verified_identity.json")

    assert not with_all(lines, "local activity")
    assert not with_all(lines, "patch local-catalog-reads")
    assert with_all(lines, "ActivityTaskScheduled", "authenticate_release_actor")


def test_a_channel_history_shows_its_commands_and_refusals() -> None:
    lines = lines_of("channel_commands.json")

    assert with_all(lines, "ActivityTaskScheduled", "record_channel_transition",
                    "take_offline by platform-rev: ONLINE -> OFFLINE")
    assert with_all(lines, "ActivityTaskScheduled", "record_channel_transition",
                    "bring_online by admin: OFFLINE -> OFFLINE refused: the channel was taken "
                    "offline by platform-rev (platform takedown")
    assert with_all(lines, "MarkerRecorded", "local activity authenticate_channel_actor")


def test_a_release_withdrawn_by_its_channel_says_why() -> None:
    lines = lines_of("channel_withdraw.release.json")

    assert with_all(lines, "WorkflowExecutionSignaled", "withdraw_by_channel", "data leak")
    assert with_all(lines, "ActivityTaskScheduled", "record_transition",
                    "withdrawn_by_channel by the system: GRAYSCALE -> CANCELED")


async def test_mpr_replays_a_channel_history_with_or_without_its_workflow_id(
    mpr: Mpr, tmp_path: Path
) -> None:
    recorded = HISTORIES / "channel_commands.json"
    run = await mpr("replay", str(recorded))
    assert run.code == 0 and run.out.startswith("deterministic: "), run.err

    history = json.loads(recorded.read_text())
    history["events"][0]["workflowExecutionStartedEventAttributes"].pop("workflowId")
    anonymous = tmp_path / "anonymous.json"
    anonymous.write_text(json.dumps(history))
    run = await mpr("replay", str(anonymous))  # the id follows from the channel's start input
    assert run.code == 0, run.err
