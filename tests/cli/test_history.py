"""`mpr history` and `mpr replay` against a real dev server and worker: a release driven the
way operators drive it, read back, compared with the `temporal` CLI and replayed."""

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError

from mpr.domain.release.models import StartInput
from mpr.infra.exit_codes import NOT_FOUND
from mpr.infra.servers import free_port
from starters.releases import start_release
from tests.e2e.test_release_end_to_end import SAMPLES, wait_for_stage
from tests.mpr_runner import Mpr
from tests.stack import TemporalCli, WorkerProcess, signed, token


def sent_as(user: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A payload as `user` sends it by hand: their token, and their name as the actor."""
    return signed(user, {"actor": user, **fields})


def start_input(program: str) -> StartInput:
    return StartInput(mini_program_id=program, version="1.0.0", target_app="gopay",
                      workspace_id="ws-e2e", requested_by="dev", source=str(SAMPLES / "1.0.0"),
                      config={"basic_info": {"name": "Coffee Shop"}})


@dataclass
class Release:
    program: str
    workflow_id: str


@pytest.fixture(scope="module")
async def released(worker: WorkerProcess, client: Client) -> Release:
    """A first release to GoPay, commands sent as signals, one of them malformed, one update
    refused; the workflow has completed, so its history no longer changes."""
    program = f"coffee-{uuid.uuid4().hex[:8]}"
    handle = await start_release(client, start_input(program), worker.env["TEMPORAL_TASK_QUEUE"],
                                 identity_token=token("dev"))
    await wait_for_stage(handle, "READY_TO_APPLY")
    await handle.signal("set_grayscale", sent_as("admin", {"percent": "fifty"}))
    await handle.signal("apply_release", sent_as("dev", {}))
    await wait_for_stage(handle, "UNDER_REVIEW")
    await handle.signal("approve_review", sent_as("gopay-rev", {"reviewer": "partner_app"}))
    await wait_for_stage(handle, "RELEASE_PREPARATION")
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("start_whitelist_test", sent_as("admin", {"user_ids": ["u"]}))
    await handle.signal("full_release", sent_as("admin", {}))
    assert (await handle.result())["stage"] == "RELEASED"
    return Release(program, handle.id)


@dataclass
class Continued:
    workflow_id: str
    first_run: str
    latest_run: str


@pytest.fixture(scope="module")
async def continued(worker: WorkerProcess, client: Client) -> Continued:
    """A release that took enough commands to continue as new (the e2e dev server suggests it
    after a few hundred events), then was canceled."""
    handle = await start_release(client, start_input(f"coffee-{uuid.uuid4().hex[:8]}"),
                                 worker.env["TEMPORAL_TASK_QUEUE"], identity_token=token("dev"))
    await wait_for_stage(handle, "READY_TO_APPLY")
    first_run = (await handle.describe()).run_id
    edits = 100  # some eight events a command, its identity check a local activity
    for n in range(edits):
        await handle.signal("update_config", sent_as("dev", {"config": {
            "basic_info": {"description": f"edit {n}"}}}))
    deadline = time.monotonic() + 120
    # start, build and compatibility testing are the first three audit entries
    while (await handle.query("status"))["audit_count"] < 3 + edits:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.3)
    await handle.execute_update("cancel_release", sent_as("owner", {}))
    await handle.result()
    latest_run = (await handle.describe()).run_id
    assert latest_run != first_run, "the release continued as new"
    return Continued(handle.id, first_run, latest_run)


def lines_with(output: str, *parts: str) -> list[str]:
    return [line for line in output.splitlines() if all(part in line for part in parts)]


# --- mpr history -----------------------------------------------------------------------------


async def test_readable_history_shows_commands_and_stage_changes(
    mpr: Mpr, released: Release
) -> None:
    run = await mpr("history", released.workflow_id)

    assert run.code == 0, run.err
    header, *events = run.out.splitlines()
    assert header.startswith(f"{released.workflow_id}  run ")
    assert "continued as new" not in run.out
    assert [line.split()[0] for line in events] == [str(n) for n in range(1, len(events) + 1)]
    signals = lines_with(run.out, "WorkflowExecutionSignaled")
    assert [line.split()[3] for line in signals] == [
        "set_grayscale", "apply_release", "approve_review", "full_release"]
    assert signals[0].endswith('set_grayscale {"identity_token":"<identity token>",'
                               '"actor":"admin","percent":"fifty"}')
    assert not any(issued in run.out for issued in token.issued), "no token is shown"
    for change in ("build_succeeded by the system: BUILDING -> COMPATIBILITY_TESTING",
                   "compatibility_tested by the system: COMPATIBILITY_TESTING -> READY_TO_APPLY",
                   "apply_release by dev: READY_TO_APPLY -> UNDER_REVIEW",
                   "approve_review by gopay-rev: UNDER_REVIEW -> RELEASE_PREPARATION",
                   "full_release by admin: RELEASE_PREPARATION -> RELEASED"):
        assert lines_with(run.out, "ActivityTaskScheduled", "record_transition", change), change
    assert lines_with(run.out, "MarkerRecorded", "local activity authenticate_release_actor",
                      '"subject":"dev"')
    assert lines_with(run.out, "MarkerRecorded", "patch local-catalog-reads")
    assert lines_with(run.out, "ActivityTaskScheduled", "build_package")
    assert lines_with(run.out, "record_transition", "set_grayscale by admin", "refused: ")
    assert lines_with(run.out, "WorkflowExecutionUpdateAccepted",
                      'start_whitelist_test {"identity_token":"<identity token>","actor":"admin",'
                      '"user_ids":"<1 user ids>"}')
    assert lines_with(run.out, "WorkflowExecutionUpdateCompleted",
                      "start_whitelist_test failed: CommandRejected: the first release to gopay")
    assert lines_with(run.out, "UpsertWorkflowSearchAttributes", "GrayscalePercent=100",
                      "ReleaseStage=RELEASED")
    assert "WorkflowExecutionCompleted" in events[-1]


async def test_release_can_be_named_by_program_version_and_app(
    mpr: Mpr, released: Release
) -> None:
    by_id = await mpr("history", released.workflow_id)
    by_parts = await mpr("history", "--program", released.program, "--version", "1.0.0",
                         "--app", "gopay")
    assert by_parts.code == 0, by_parts.err
    assert by_parts.out == by_id.out


async def test_json_is_exactly_what_temporal_workflow_show_writes(
    mpr: Mpr, released: Release, temporal_cli: TemporalCli, tmp_path: Path
) -> None:
    # Without the codec server: `mpr history --json` keeps payloads as the server holds them.
    theirs = temporal_cli.run("workflow", "show", "--workflow-id", released.workflow_id,
                              "--output", "json", codec=False).stdout
    to_stdout = await mpr("history", released.workflow_id, "--json")
    file = tmp_path / "history.json"
    to_file = await mpr("history", released.workflow_id, "--json", "--output", str(file))

    assert to_stdout.code == 0, to_stdout.err
    assert json.loads(to_stdout.out) == json.loads(theirs)
    assert to_stdout.out == theirs, "byte for byte"
    assert (to_file.code, file.read_text()) == (0, theirs)
    assert to_file.out.startswith("wrote the history of run ")


async def test_unknown_release_is_not_found(mpr: Mpr) -> None:
    missing = f"release:nothing-{uuid.uuid4().hex[:6]}:1.0.0:gopay:production"
    error = (await mpr("history", missing)).error(NOT_FOUND)
    assert missing in error and "namespace default" in error


async def test_unreachable_server_is_named(mpr: Mpr, monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    error = (await mpr("history", "release:x:1.0.0:gopay:production")).error(1)
    assert f"cannot reach Temporal at {address}" in error


async def test_release_must_be_named_one_way(mpr: Mpr) -> None:
    (await mpr("history")).error(2)
    (await mpr("history", "release:x:1.0.0:gopay:production", "--program", "x")).error(2)
    (await mpr("history", "--program", "x", "--app", "gopay")).error(2)
    (await mpr("history", "release:x:1.0.0:gopay:production", "--json",
                             "--all-runs")).error(2)


# --- continue-as-new -------------------------------------------------------------------------


async def test_continued_release_names_its_runs(mpr: Mpr, continued: Continued) -> None:
    release = continued.workflow_id
    first_run, latest_run = continued.first_run, continued.latest_run

    latest = await mpr("history", release)
    assert latest.code == 0, latest.err
    header = latest.out.splitlines()[:2]
    assert header[0].startswith(f"{release}  run {latest_run}")
    assert "continued as new: this is run " in header[1]
    assert first_run in header[1] and latest_run in header[1]
    assert "(continued as new from run " in latest.out.splitlines()[2]

    first = await mpr("history", release, "--run-id", first_run)
    assert first.code == 0, first.err
    assert "this is run 1 of " in first.out
    assert "WorkflowExecutionContinuedAsNew" in first.out.splitlines()[-1]

    every = await mpr("history", release, "--all-runs")
    assert every.code == 0, every.err
    headers = lines_with(every.out, f"{release}  run ")
    assert headers[0].startswith(f"{release}  run {first_run}")
    assert headers[-1].startswith(f"{release}  run {latest_run}")
    continuations = lines_with(every.out, "WorkflowExecutionContinuedAsNew")
    assert len(continuations) == len(headers) - 1


async def test_every_run_of_a_continued_release_replays(
    mpr: Mpr, continued: Continued, tmp_path: Path
) -> None:
    for run_id in (continued.first_run, continued.latest_run):
        file = tmp_path / f"{run_id}.json"
        written = await mpr("history", continued.workflow_id, "--run-id", run_id, "--json",
                            "--output", str(file))
        assert written.code == 0, written.err
        replayed = await mpr("replay", str(file))
        assert replayed.code == 0, replayed.err
        assert replayed.out.startswith("deterministic: ")


# --- mpr replay ------------------------------------------------------------------------------


@pytest.fixture
async def history_file(mpr: Mpr, released: Release, tmp_path: Path) -> Path:
    file = tmp_path / "history.json"
    run = await mpr("history", released.workflow_id, "--json", "--output", str(file))
    assert run.code == 0, run.err
    return file


def read_history(file: Path) -> dict[str, Any]:
    history: dict[str, Any] = json.loads(file.read_text())
    return history


def rewrite(file: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    history = read_history(file)
    change(history)
    changed = file.with_name(f"changed-{file.name}")
    changed.write_text(json.dumps(history))
    return changed


def started(history: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = history["events"][0]["workflowExecutionStartedEventAttributes"]
    return attributes


async def test_history_replays_deterministically(mpr: Mpr, history_file: Path) -> None:
    events = read_history(history_file)["events"]
    run = await mpr("replay", str(history_file))
    assert (run.code, run.out) == (0, f"deterministic: {len(events)} events replayed\n"), run.err


async def test_replay_finds_the_workflow_id_without_the_file_naming_it(
    mpr: Mpr, history_file: Path, released: Release
) -> None:
    """Older servers do not record the workflow id in the start event; a release checks its
    id against its input, so replaying under a wrong id must fail."""
    anonymous = rewrite(history_file, lambda history: started(history).pop("workflowId"))
    assert (await mpr("replay", str(anonymous))).code == 0
    named = await mpr("replay", str(anonymous), "--workflow-id", released.workflow_id)
    assert named.code == 0, named.err
    error = (await mpr("replay", str(anonymous), "--workflow-id", "other")).error(1)
    assert "not deterministic" in error


async def test_tampered_history_is_not_deterministic(mpr: Mpr, history_file: Path) -> None:
    def rename_first_activity(history: dict[str, Any]) -> None:
        scheduled = next(event["activityTaskScheduledEventAttributes"]
                         for event in history["events"]
                         if "activityTaskScheduledEventAttributes" in event)
        scheduled["activityType"]["name"] = "load_release_context_v0"

    tampered = rewrite(history_file, rename_first_activity)
    error = (await mpr("replay", str(tampered))).error(1)
    assert error.startswith("mpr: not deterministic: ")
    assert "Nondeterminism" in error and "load_release_context_v0" in error


async def test_replay_refuses_what_is_not_a_release_history(
    mpr: Mpr, history_file: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.json"
    assert str(missing) in (await mpr("replay", str(missing))).error(1)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("Progress:\n  ID  Time  Type\n")
    assert "is not JSON" in (await mpr("replay", str(garbage))).error(1)
    other_json = tmp_path / "other.json"
    other_json.write_text('{"workflowExecutionInfo": {}}')
    assert "is not a workflow history" in (await mpr("replay", str(other_json))).error(1)
    other_type = rewrite(history_file,
                         lambda history: started(history)["workflowType"].update(name="Other"))
    error = (await mpr("replay", str(other_type))).error(1)
    assert "is a history of Other, not MiniProgramRelease" in error
