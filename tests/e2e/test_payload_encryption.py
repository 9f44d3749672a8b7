"""Personal data on the real stack: whitelisted user ids, tester emails and reviewer comments
appear nowhere in what the Temporal server holds, yet those with the keys read them through the
codec server; nor do the identity tokens `mpr`, the client library and `temporal` send with
every command; plain JSON from tctl-style clients is still accepted; the worker refuses to run
without keys unless encryption is explicitly off."""

import asyncio
import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent, MarkerRecordedEventAttributes
from temporalio.client import Client, WorkflowUpdateFailedError

from mpr.catalog.admin import Membership, add_member, set_target_app
from mpr.domain.core.models import Role
from mpr.domain.mini_service.models import mini_service_id
from mpr.domain.release.models import Reviewer, StartInput, TargetAppPolicy
from mpr.infra.codec import new_key_entry
from starters.releases import ReleaseRef, start_release
from tests import identity
from tests.e2e.test_mini_service_end_to_end import new_super_app
from tests.e2e.test_release_end_to_end import SAMPLES, wait_for_stage
from tests.mpr_runner import Mpr
from tests.stack import (
    PAYLOAD_KEYS,
    ActingReleases,
    ActingServices,
    CodecServerProcess,
    TemporalCli,
    WorkerProcess,
    signed,
    start_worker,
    token,
    wait_until_started,
)

ONE_CELL = {"operating_systems": ["ios"], "networks": ["wifi"], "device_tiers": ["high"]}


def marker(kind: str) -> str:
    """A string found only where this test put it."""
    return f"{kind}-{uuid.uuid4().hex}"


async def whitelist_app(db: asyncpg.Pool) -> tuple[str, str]:
    """A target app with partner review and whitelist tests on a first release, and its
    reviewer."""
    app, reviewer = f"crypt-{uuid.uuid4().hex[:8]}", f"rev-{uuid.uuid4().hex[:6]}"
    await set_target_app(db, TargetAppPolicy(target_app=app,
                                             required_reviewers=[Reviewer.PARTNER_APP],
                                             first_release_full_only=False,
                                             whitelist_allowed=True))
    await add_member(db, Membership(workspace_id="ops", user_id=reviewer,
                                    role=Role.PARTNER_REVIEWER, target_app=app))
    return app, reviewer


def readable(output: str) -> str:
    """The JSON text with every payload's data and metadata decoded from base64 after it, as
    anyone reading the server's store would decode them."""
    decoded: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if "data" in node and "metadata" in node and isinstance(node["data"], str):
                values = [node["data"], *node["metadata"].values()]
                decoded.extend(base64.b64decode(value).decode(errors="replace")
                               for value in values)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(json.loads(output))
    return "\n".join([output, *decoded])


def show(cli: TemporalCli, workflow_id: str, *, codec: bool) -> str:
    return readable(cli.run("workflow", "show", "--workflow-id", workflow_id, "--output",
                            "json", codec=codec).stdout)


def assert_held_encrypted(cli: TemporalCli, workflow_id: str, secrets: list[str]) -> None:
    """The raw history and description (what the server stores, what tctl and a UI without
    the codec server see) carry none of `secrets`; through the codec server all of them."""
    raw = show(cli, workflow_id, codec=False)
    described = readable(cli.run("workflow", "describe", "--workflow-id", workflow_id,
                                 "--output", "json", codec=False).stdout)
    assert "binary/encrypted" in raw and "json/plain" in raw
    for secret in secrets:
        assert secret not in raw, f"{secret} is in the raw history"
        assert secret not in described, f"{secret} is in the description"
    decoded = show(cli, workflow_id, codec=True)
    for secret in secrets:
        assert secret in decoded, f"{secret} not readable through the codec server"


async def test_release_personal_data_is_encrypted_in_history(
    client: Client, worker: WorkerProcess, catalog_db: asyncpg.Pool, temporal_cli: TemporalCli,
    mpr: Mpr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, reviewer = await whitelist_app(catalog_db)
    program = f"crypt-{uuid.uuid4().hex[:8]}"
    reason, comment = marker("rejected-because"), marker("approved-with")
    users = [marker("user"), marker("user")]
    handle = await start_release(client, StartInput(
        mini_program_id=program, version="1.1.0", target_app=app, workspace_id="ws-e2e",
        source=str(SAMPLES / "1.1.0"),
        config={"basic_info": {"name": "Coffee Shop"}, "compatibility": ONE_CELL},
    ), worker.env["TEMPORAL_TASK_QUEUE"], identity_token=token("dev"))
    await wait_for_stage(handle, "READY_TO_APPLY")

    await handle.execute_update("apply_release", signed("dev"))
    await handle.execute_update("reject_review", signed(reviewer, reviewer="partner_app",
                                                        reason=reason))
    await handle.execute_update("apply_release", signed("dev"))
    await handle.execute_update("approve_review", signed(reviewer, reviewer="partner_app",
                                                         comment=comment))
    # Refusals are plain text: they must not quote what they refuse.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("start_whitelist_test",
                                    signed("admin", user_ids=[users[0], users[0]]))
    assert "unique" in str(refused.value.cause) and users[0] not in str(refused.value.cause)
    # As an operator sends it: `temporal` with the codec server encrypts it on the way in.
    temporal_cli.run("workflow", "update", "execute", "--workflow-id", handle.id, "--name",
                     "start_whitelist_test", "--input",
                     json.dumps(signed("admin", user_ids=users)))
    await wait_for_stage(handle, "WHITELIST_TESTING")

    # A plain JSON signal, as tctl and a `temporal` without the codec server send it (with a
    # token of its own: what goes in plain text stays readable in the history).
    temporal_cli.run("workflow", "signal", "--workflow-id", handle.id, "--name",
                     "set_grayscale", "--input",
                     json.dumps({"identity_token": identity.token("admin"), "percent": 1}),
                     codec=False)
    await wait_for_stage(handle, "GRAYSCALE")

    assert_held_encrypted(temporal_cli, handle.id, [reason, comment, *users])
    # Those with the keys read the history with `mpr` too (whitelisted users only counted).
    lines = await mpr("history", handle.id)
    assert lines.code == 0 and comment in lines.out and reason in lines.out
    assert "<2 user ids>" in lines.out and users[0] not in lines.out
    assert "left encrypted" not in lines.err

    # A history file keeps the payloads encrypted; replaying it takes the keys.
    history_file = tmp_path / "history.json"
    assert (await mpr("history", handle.id, "--json", "--output", str(history_file))).code == 0
    assert comment not in readable(history_file.read_text())
    assert (await mpr("replay", str(history_file))).code == 0
    monkeypatch.setenv("MPR_PAYLOAD_KEYS", "")
    without_keys = (await mpr("replay", str(history_file))).error(1)
    assert "'test-session'" in without_keys and "MPR_PAYLOAD_KEYS is not set" in without_keys
    shown = await mpr("history", handle.id)
    assert comment not in shown.out and "payloads left encrypted" in shown.err


async def test_mini_service_testers_are_encrypted_in_history(
    client: Client, worker: WorkerProcess, catalog_db: asyncpg.Pool, temporal_cli: TemporalCli,
) -> None:
    super_app = await new_super_app(catalog_db)
    services = ActingServices(client, catalog_db, worker.env["TEMPORAL_TASK_QUEUE"], "olly")
    version = await services.create(super_app)
    handle = client.get_workflow_handle(mini_service_id(super_app, version))
    testers = [f"{marker('qa')}@example.com", f"{marker('pm')}@example.com"]
    not_an_email = marker("almost-an-email")

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("test", signed("olly", testers=[not_an_email]))
    assert "not an email address" in str(refused.value.cause)
    await handle.execute_update("test", signed("olly", testers=testers))

    raw = show(temporal_cli, handle.id, codec=False)
    assert not_an_email not in raw, "a refusal quoted the refused value"
    assert_held_encrypted(temporal_cli, handle.id, testers)


# --- identity tokens -------------------------------------------------------------------------


async def raw_history(address: str, workflow_id: str) -> list[HistoryEvent]:
    """The workflow's history as the server holds it, read by a client without the codec:
    every payload is the bytes that were stored."""
    raw = await Client.connect(address)  # the default converter: nothing is decrypted
    return [event async for event in raw.get_workflow_handle(workflow_id).fetch_history_events()]


def holding(events: list[HistoryEvent], needle: str) -> list[str]:
    """The types of the events whose stored bytes (payloads, metadata, everything) contain
    `needle`."""
    return [EventType.Name(event.event_type) for event in events
            if needle.encode() in event.SerializeToString()]


async def test_identity_tokens_are_held_encrypted_in_history(
    worker: WorkerProcess, client: Client, releases: ActingReleases, mpr: Mpr,
    temporal_cli: TemporalCli, tmp_path: Path,
) -> None:
    program = f"tokens-{uuid.uuid4().hex[:8]}"
    release = f"release:{program}:1.0.0:gopay:production"
    ref = ReleaseRef.parse(release)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"basic_info": {"name": "Coffee Shop"},
                                  "compatibility": ONE_CELL}))
    # Started with mpr, by the token alone (no --actor)...
    started = await mpr("start", "--program", program, "--version", "1.0.0", "--app", "gopay",
                        "--workspace", "ws-e2e", "--source", str(SAMPLES / "1.0.0"),
                        "--config-file", str(config), "--wait", "ready_to_apply",
                        as_user="dev")
    assert started.code == 0, started.err
    # ... driven with the client library (a signal, an update) and with mpr (--actor, checked
    # against the token), and with `temporal` through the codec server, as the cookbook does.
    await releases.as_user("dev").signal(ref, "update_config", {
        "config": {"basic_info": {"description": "tokens stay encrypted"}}})
    await releases.as_user("dev").command(ref, "apply_release", {})
    approved = await mpr("approve", release, "--as", "partner_app", "--actor", "gopay-rev")
    assert approved.code == 0, approved.err
    typed = identity.token("dev")
    temporal_cli.run("workflow", "update", "execute", "--workflow-id", release, "--name",
                     "update_config", "--input", json.dumps({"identity_token": typed, "config": {
                         "basic_info": {"description": "typed by an operator"}}}))
    await releases.as_user("admin").command(ref, "full_release", {})
    audit = await releases.audit_log(ref)
    assert [(entry.command, entry.actor) for entry in audit.entries if entry.actor] == [
        ("start_release", "dev"), ("update_config", "dev"), ("apply_release", "dev"),
        ("approve_review", "gopay-rev"), ("update_config", "dev"), ("full_release", "admin")]

    events = await raw_history(worker.env["TEMPORAL_ADDRESS"], release)
    # Verification is a local activity: its marker holds the verdict, not the token it read.
    verified = local_activities(events, "authenticate_release_actor")
    assert len(verified) == 6, "the start's token and every command's went to be verified"
    for payload in [*events[0].workflow_execution_started_event_attributes.input.payloads,
                    *(p for marker in verified for p in marker.details["result"].payloads)]:
        assert payload.metadata["encoding"] == b"binary/encrypted"
    assert started.token and approved.token, "mpr ran with the users' tokens"
    sent = {started.token, approved.token, typed, *token.issued}
    assert len(sent) >= 4
    for sent_token in sent:
        assert holding(events, sent_token) == [], "a token is readable in the history"
    assert holding(events, "identity_token") == []

    # What goes in plain JSON (tctl) is stored as sent: the search above would have seen it.
    plain = identity.token("owner")
    second = await releases.as_user("dev").start(StartInput(
        mini_program_id=program, version="1.1.0", target_app="gopay", workspace_id="ws-e2e",
        source=str(SAMPLES / "1.1.0"), config={"compatibility": ONE_CELL}))
    temporal_cli.run("workflow", "signal", "--workflow-id", second.release_id, "--name",
                     "cancel_release", "--input",
                     json.dumps({"identity_token": plain, "reason": "plain"}), codec=False)
    await client.get_workflow_handle(second.release_id).result()
    stored = await raw_history(worker.env["TEMPORAL_ADDRESS"], second.release_id)
    assert holding(stored, plain) == ["EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"]
    assert holding(stored, token("dev")) == []


# --- the worker and its keys -----------------------------------------------------------------


def worker_env(worker: WorkerProcess, tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The stack worker's settings on a task queue of its own (it must not take the stack's
    tasks), without payload keys unless `overrides` give them."""
    env = {name: value for name, value in worker.env.items()
           if not name.startswith("MPR_PAYLOAD_")}
    env.update({"TEMPORAL_TASK_QUEUE": f"keys-{uuid.uuid4().hex[:8]}",
                "MPR_DATA_DIR": str(tmp_path / "data"),
                "METRICS_ADDRESS": "", **overrides})
    return env


def refusal(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.main"], env=env,
                          capture_output=True, text=True, timeout=60)


async def test_the_worker_refuses_to_start_without_keys(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    result = await asyncio.to_thread(refusal, worker_env(worker, tmp_path))
    assert result.returncode == 1
    assert "refuses to start: MPR_PAYLOAD_KEYS is not set" in result.stderr
    assert "MPR_PAYLOAD_ENCRYPTION=off" in result.stderr

    key = new_key_entry("k1").partition(":")[2]
    result = await asyncio.to_thread(
        refusal, worker_env(worker, tmp_path, MPR_PAYLOAD_KEYS=f"k1:{key[:-1]}"))
    assert result.returncode == 1 and "the key is not valid base64" in result.stderr
    assert key[:-1] not in result.stderr + result.stdout


async def test_the_worker_runs_unencrypted_only_when_told(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    log_file = tmp_path / "worker.log"
    env = worker_env(worker, tmp_path, MPR_PAYLOAD_ENCRYPTION="off")
    process = start_worker(env, log_file)
    unencrypted = WorkerProcess(process, log_file, env)
    try:
        await wait_until_started(unencrypted)
        lines = unencrypted.log_lines()
        started = next(line for line in lines if line.get("event") == "worker started")
        assert started["payload_encryption"] is False and started["payload_key_ids"] == []
        assert any("payload encryption is off" in line.get("event", "") for line in lines)
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 60)


def test_the_codec_server_logs_key_ids_never_keys(codec_server: CodecServerProcess) -> None:
    log = codec_server.log_file.read_text()
    assert "codec server started" in log and "test-session" in log
    assert PAYLOAD_KEYS.partition(":")[2] not in log


def local_activities(events: Sequence[HistoryEvent],
                     activity_type: str) -> list[MarkerRecordedEventAttributes]:
    """The markers of the local activities of `activity_type` (the SDK's own marker data is
    plain JSON; the result goes through the codec)."""
    found = []
    for event in events:
        attributes = event.marker_recorded_event_attributes
        if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED or \
                attributes.marker_name != "core_local_activity":
            continue
        data = json.loads(attributes.details["data"].payloads[0].data)
        if data.get("activity_type") == activity_type:
            found.append(attributes)
    return found
