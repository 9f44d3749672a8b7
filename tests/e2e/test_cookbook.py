"""Runs every `temporal` line of the release cookbook (docs/release-cookbook.md) against a real
dev server, in the shell its `mpr login` and `TOKEN=$(mpr token)` lines set up, so the cookbook
cannot rot; checks that every `tctl` line sends what its `temporal` twin sends, and that every
line that starts or commands carries the token of the member whose role it needs."""

import asyncio
import json
import subprocess
import uuid
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from mpr.catalog.admin import Membership, add_member, set_target_app
from mpr.catalog.db import create_pool
from mpr.domain.core.models import Role
from mpr.domain.release.models import Reviewer, StartInput, TargetAppPolicy
from starters.releases import start_release
from tests.cookbook import (
    RELEASE_COOKBOOK,
    Shell,
    cookbook,
    logged_in,
    option,
    run_temporal_line,
    setups,
)
from tests.e2e.test_release_end_to_end import SAMPLES, wait_for_stage
from tests.stack import WorkerProcess, signed, token

# Cookbook releases go to an app that allows everything on a first release, so that each
# example can be tried on a fresh release; the lines themselves name GoPay.
APP = "cookbook-app"
WORKSPACE = "ws-cookbook"
ONE_CELL = {"operating_systems": ["ios"], "networks": ["wifi"], "device_tiers": ["high"]}
STAGE_NEEDED = {
    "update_config": "READY_TO_APPLY",
    "rebuild": "READY_TO_APPLY",
    "retest_compatibility": "READY_TO_APPLY",
    "apply_release": "READY_TO_APPLY",
    "approve_review": "UNDER_REVIEW",
    "reject_review": "UNDER_REVIEW",
    "start_whitelist_test": "RELEASE_PREPARATION",
    "set_grayscale": "RELEASE_PREPARATION",
    "full_release": "RELEASE_PREPARATION",
    "cancel_grayscale": "GRAYSCALE",
    "reset_grayscale": "GRAYSCALE",
    "cancel_release": "READY_TO_APPLY",
}
ROUTE: list[tuple[str, str | None, str | None, dict[str, Any]]] = [
    # how a fresh release is brought to each stage, and by whom
    ("READY_TO_APPLY", None, None, {}),
    ("UNDER_REVIEW", "apply_release", "alice", {}),
    ("RELEASE_PREPARATION", "approve_review", "petra", {"reviewer": "partner_app"}),
    ("GRAYSCALE", "set_grayscale", "adam", {"percent": 2}),
]
# Who holds the role each command needs, among the cookbook's members.
SENDER = {
    "start": "alice", "update_config": "alice", "rebuild": "alice",
    "retest_compatibility": "alice", "apply_release": "alice", "approve_review": "petra",
    "reject_review": "petra", "start_whitelist_test": "adam", "set_grayscale": "adam",
    "full_release": "adam", "cancel_grayscale": "adam", "reset_grayscale": "adam",
    "cancel_release": "olga",
}


COOKBOOK = cookbook(RELEASE_COOKBOOK)
SETUP = setups(RELEASE_COOKBOOK)
SHELL = Shell()


def localise(line: str, program: str) -> str:
    """The cookbook's example names, made to point at this test's release and samples."""
    source = "\0source\0"  # keeps the samples path out of the program id replacement
    return (line.replace("/srv/mini-programs/coffee-shop", source)
            .replace("coffee-shop", program)
            .replace("demo-workspace", WORKSPACE)
            .replace("gopay", APP)
            .replace(source, str(SAMPLES)))


def run(line: str, release: str, worker: WorkerProcess,
        group: str = "start") -> subprocess.CompletedProcess[str]:
    """`line` of `group`, in the shell the cookbook has set up by then, on `release`."""
    variables = {**SHELL.state(SETUP[group], worker), "RELEASE": release}
    return run_temporal_line(line, worker, variables)


@pytest.fixture(scope="module")
async def cookbook_members(e2e_database_url: str) -> None:
    pool = await create_pool(e2e_database_url)
    await set_target_app(pool, TargetAppPolicy(
        target_app=APP, required_reviewers=[Reviewer.PARTNER_APP],
        first_release_full_only=False, whitelist_allowed=True))
    for user, role in (("alice", Role.DEVELOPER), ("adam", Role.ADMIN), ("olga", Role.OWNER)):
        await add_member(pool, Membership(workspace_id=WORKSPACE, user_id=user, role=role))
    await add_member(pool, Membership(workspace_id="ops", user_id="petra",
                                      role=Role.PARTNER_REVIEWER, target_app=APP))
    await pool.close()


async def release_in(client: Client, worker: WorkerProcess, stage: str) -> WorkflowHandle[Any, Any]:
    program = f"cookbook-{uuid.uuid4().hex[:8]}"
    request = StartInput(mini_program_id=program, version="1.1.0", target_app=APP,
                         workspace_id=WORKSPACE, source=str(SAMPLES / "1.1.0"),
                         config={"basic_info": {"name": "Coffee Shop"}, "compatibility": ONE_CELL})
    handle = await start_release(client, request, worker.env["TEMPORAL_TASK_QUEUE"],
                                 identity_token=token("alice"))
    for reached, command, user, payload in ROUTE:
        if command and user:
            await handle.execute_update(command, signed(user, payload))
        await wait_for_stage(handle, reached)
        if reached == stage:
            return handle
    raise AssertionError(f"no route to {stage}")


def test_the_cookbook_covers_every_command() -> None:
    assert set(STAGE_NEEDED) <= set(COOKBOOK)
    for name in STAGE_NEEDED:
        kinds = [" ".join(line.split()[:3]) for line in COOKBOOK[name]]
        assert kinds == ["temporal workflow update", "temporal workflow signal",
                         "tctl workflow signal"], name


def test_every_start_and_command_carries_the_senders_token() -> None:
    assert set(SENDER) == {*STAGE_NEEDED, "start"}
    for name, sender in SENDER.items():
        assert logged_in(SETUP[name]) == sender, f"{name} is not sent by {sender}"
        assert "TOKEN=$(mpr token)" in SETUP[name][-1], f"{name}: TOKEN is another's token"
        for line in COOKBOOK[name]:
            payload = json.loads(option(line, "--input"))
            assert payload["identity_token"] == "$TOKEN", line
            assert "actor" not in payload and "requested_by" not in payload, line


@pytest.mark.parametrize("name", list(STAGE_NEEDED))
async def test_cookbook_command(name: str, worker: WorkerProcess, client: Client,
                                cookbook_members: None) -> None:
    update_line, signal_line, tctl_line = COOKBOOK[name]
    payloads = {json.loads(option(line, "--input")) == json.loads(option(update_line, "--input"))
                for line in (signal_line, tctl_line)}
    assert payloads == {True}, "update, signal and tctl lines send the same payload"
    assert option(tctl_line, "--name") == option(signal_line, "--name") == name

    for_update, for_signal = await asyncio.gather(
        release_in(client, worker, STAGE_NEEDED[name]),
        release_in(client, worker, STAGE_NEEDED[name]),
    )
    result = run(localise(update_line, "x"), for_update.id, worker, name)
    assert result.returncode == 0, result.stderr
    entries = (await for_update.query("audit_log"))["entries"]
    assert [entry["actor"] for entry in entries if entry["command"] == name] == [SENDER[name]]

    result = run(localise(signal_line, "x"), for_signal.id, worker, name)
    assert result.returncode == 0, result.stderr
    for _ in range(100):
        entries = (await for_signal.query("audit_log"))["entries"]
        mine = [entry for entry in entries if entry["command"] == name]
        if mine:
            assert mine[-1]["accepted"], mine[-1]["reason"]
            assert mine[-1]["actor"] == SENDER[name], "the token's user is the actor"
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the {name} signal was never recorded")


async def test_cookbook_start_queries_and_lists(
    worker: WorkerProcess, client: Client, cookbook_members: None
) -> None:
    program = f"cookbook-{uuid.uuid4().hex[:8]}"
    release = f"release:{program}:1.1.0:{APP}:production"
    start_line, tctl_start = COOKBOOK["start"]
    assert json.loads(option(start_line, "--input")) == json.loads(option(tctl_start, "--input"))
    for _ in range(2):  # starting a running release again returns it
        result = run(localise(start_line, program), release, worker)
        assert result.returncode == 0, result.stderr
    handle = client.get_workflow_handle(release)
    await wait_for_stage(handle, "READY_TO_APPLY")
    started = (await handle.query("audit_log"))["entries"][0]
    assert (started["command"], started["actor"]) == ("start_release", SENDER["start"])

    for group in ("queries", "list"):
        for line in COOKBOOK[group]:
            if line.startswith("tctl "):
                continue
            result = run(localise(line, program), release, worker, group)
            assert result.returncode == 0, f"{line}\n{result.stderr}"
    status = run(COOKBOOK["queries"][0], release, worker, "queries").stdout
    assert "READY_TO_APPLY" in status
    listed = run(localise(COOKBOOK["list"][2], program), release, worker, "list").stdout
    assert release in listed
    tctl_queries = {option(line, "--query_type") for line in COOKBOOK["queries"]
                    if line.startswith("tctl ")}
    assert tctl_queries <= {"status", "compatibility_report", "audit_log"}
