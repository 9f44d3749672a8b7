"""Releases driven end to end: real dev server, real PostgreSQL, real worker process, and the
real `temporal` CLI sending the signals, updates and queries operators type. Every start and
command carries its sender's identity token, which the worker verifies (MPR_AUTH=required)
against the tests' issuer: the token's user is the actor."""

import asyncio
import json
import re
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError

from mpr.catalog.releases import get_release
from mpr.catalog.rollout import resolve_version
from mpr.domain.core.identity import ACTOR_MISMATCH, TOKEN_FIELD
from mpr.domain.release.models import StartInput
from mpr.infra.dev_issuer import DevIssuer
from starters.releases import start_release
from tests import identity
from tests.catalog.readers import list_events
from tests.stack import TemporalCli, WorkerProcess, signed, token

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "coffee-shop"


def new_program() -> str:
    return f"coffee-{uuid.uuid4().hex[:8]}"


def request(program: str, version: str, target_app: str = "gopay",
            source: str | None = None) -> StartInput:
    """A release of ws-e2e (started by its developer, dev, whose token says who starts it)."""
    return StartInput(mini_program_id=program, version=version, target_app=target_app,
                      workspace_id="ws-e2e", source=source or str(SAMPLES / version),
                      config={"basic_info": {"name": "Coffee Shop"}})


async def start(client: Client, start_input: StartInput, queue: str,
                user: str = "dev") -> WorkflowHandle[Any, Any]:
    return await start_release(client, start_input, queue, identity_token=token(user))


STARTING = "the release is still starting"


async def wait_for_stage(handle: WorkflowHandle[Any, Any], stage: str,
                         within: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + within
    status: dict[str, Any] = {"stage": "(starting)"}
    while True:
        try:
            status = await handle.query("status")
        except WorkflowQueryFailedError as error:
            assert STARTING in str(error)
        if status["stage"] == stage:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{handle.id} stayed in {status['stage']}, expected {stage}")
        await asyncio.sleep(0.2)


def cli_query(cli: TemporalCli, workflow_id: str, name: str) -> Any:
    output = cli.json("workflow", "query", "--workflow-id", workflow_id, "--name", name)
    return output["queryResult"][0]


async def cli_wait_for_stage(cli: TemporalCli, workflow_id: str, stage: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    status: dict[str, Any] = {"stage": "(starting)"}
    while True:
        try:
            status = cli_query(cli, workflow_id, "status")
        except AssertionError as error:
            assert STARTING in str(error)
        if status["stage"] == stage:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{workflow_id} stayed in {status['stage']}, expected {stage}")
        await asyncio.sleep(0.3)


def cli_signal(cli: TemporalCli, workflow_id: str, name: str, user: str | None,
               payload: Any) -> None:
    """A signal as `user` sends it (their token in the payload); None sends `payload` as is."""
    sent = signed(user, payload) if user else payload
    cli.run("workflow", "signal", "--workflow-id", workflow_id, "--name", name,
            "--input", sent if isinstance(sent, str) else json.dumps(sent))


def cli_update(cli: TemporalCli, workflow_id: str, name: str, user: str,
               payload: dict[str, Any], check: bool = True) -> Any:
    return cli.run("workflow", "update", "execute", "--workflow-id", workflow_id, "--name", name,
                   "--input", json.dumps(signed(user, payload)), check=check)


async def test_first_release_driven_with_the_temporal_cli(
    worker: WorkerProcess, temporal_cli: TemporalCli, catalog_db: asyncpg.Pool
) -> None:
    program = new_program()
    workflow_id = f"release:{program}:1.0.0:gopay:production"
    start = signed("dev", request(program, "1.0.0").model_dump(mode="json", exclude_none=True))
    temporal_cli.run("workflow", "start", "--type", "MiniProgramRelease",
                     "--task-queue", worker.env["TEMPORAL_TASK_QUEUE"],
                     "--workflow-id", workflow_id, "--input", json.dumps(start))

    status = await cli_wait_for_stage(temporal_cli, workflow_id, "READY_TO_APPLY")
    assert len(status["package"]["sha256"]) == 64
    assert status["package"]["manifest"]["version"] == "1.0.0"
    assert status["compatibility"]["cells"] == 24
    assert status["first_release"] and status["full_release_only"]

    # Malformed signals still reach the workflow and are recorded as refused.
    cli_signal(temporal_cli, workflow_id, "apply_release", None, '"not an object"')
    cli_signal(temporal_cli, workflow_id, "set_grayscale", "admin", {"percent": "fifty"})
    # A refused update says why, synchronously, with a non-zero exit code.
    refused = cli_update(temporal_cli, workflow_id, "set_grayscale", "admin", {"percent": 5},
                         check=False)
    assert refused.returncode != 0
    assert "set_grayscale is not allowed in stage READY_TO_APPLY" in refused.stderr + refused.stdout

    # The actor field may name the sender; naming another is refused like a forged token.
    refused = cli_update(temporal_cli, workflow_id, "apply_release", "dev", {"actor": "admin"},
                         check=False)
    assert refused.returncode != 0 and ACTOR_MISMATCH in refused.stderr + refused.stdout
    applied = cli_update(temporal_cli, workflow_id, "apply_release", "dev", {"actor": "dev"})
    assert "UNDER_REVIEW" in applied.stdout
    cli_signal(temporal_cli, workflow_id, "approve_review", "gopay-rev",
               {"reviewer": "partner_app", "comment": "fine"})
    await cli_wait_for_stage(temporal_cli, workflow_id, "RELEASE_PREPARATION")
    refused = cli_update(temporal_cli, workflow_id, "start_whitelist_test", "admin",
                         {"user_ids": ["u1"]}, check=False)
    assert "can only be a full release" in refused.stderr + refused.stdout
    cli_signal(temporal_cli, workflow_id, "full_release", "admin", {})
    status = await cli_wait_for_stage(temporal_cli, workflow_id, "RELEASED")

    audit = cli_query(temporal_cli, workflow_id, "audit_log")
    refusals = {e["command"]: e["reason"] for e in audit["entries"] if not e["accepted"]}
    assert refusals["apply_release"] == ACTOR_MISMATCH
    assert refusals["set_grayscale"].startswith("set_grayscale is not allowed")
    assert refusals["start_whitelist_test"].startswith("the first release to gopay")
    assert status["last_rejection"]["command"] == "start_whitelist_test"
    malformed, forged = [e for e in audit["entries"] if e["command"] == "apply_release"
                         and not e["accepted"]]
    assert malformed["reason"] == "apply_release payload must be a JSON object, got a string"
    assert (forged["actor"], forged["claimed_actor"]) == (None, "admin")
    assert [(e["command"], e["actor"]) for e in audit["entries"] if e["accepted"]
            and e["actor"]] == [("start_release", "dev"), ("apply_release", "dev"),
                                ("approve_review", "gopay-rev"), ("full_release", "admin")]

    described = temporal_cli.json("workflow", "describe", "--workflow-id", workflow_id)
    assert "COMPLETED" in json.dumps(described["workflowExecutionInfo"]["status"])
    listed = temporal_cli.json("workflow", "list", "--query",
                               f"MiniProgramId='{program}' AND ReleaseStage='RELEASED'")
    assert [w["execution"]["workflowId"] for w in listed] == [workflow_id]

    stored = await get_release(catalog_db, workflow_id)
    assert stored is not None and stored.stage == "RELEASED"
    events = await list_events(catalog_db, workflow_id)
    assert len(events) == audit["total"], "exactly one audit row per command and stage change"
    assert await resolve_version(catalog_db, program, "gopay", "anyone") == "1.0.0"

    lines = [line for line in worker.log_lines() if line.get("workflow_id") == workflow_id]
    assert {line.get("activity") for line in lines} >= {"build_package", "record_transition"}


async def test_second_release_rolls_out_and_archives_the_first(
    worker: WorkerProcess, client: Client, catalog_db: asyncpg.Pool
) -> None:
    program = new_program()
    queue = worker.env["TEMPORAL_TASK_QUEUE"]
    first = await start(client, request(program, "1.0.0"), queue)
    again = await start(client, request(program, "1.0.0"), queue)
    assert again.id == first.id
    assert (await again.describe()).run_id == (await first.describe()).run_id
    await wait_for_stage(first, "READY_TO_APPLY")
    for name, payload in [("apply_release", signed("dev")),
                          ("approve_review", signed("gopay-rev", reviewer="partner_app")),
                          ("full_release", signed("admin"))]:
        await first.execute_update(name, payload)
    await first.result()

    second = await start(client, request(program, "1.1.0"), queue)
    status = await wait_for_stage(second, "READY_TO_APPLY")
    assert status["first_release"] is False and status["previous_stable_version"] == "1.0.0"
    await second.execute_update("apply_release", signed("dev"))
    await second.execute_update("approve_review", signed("gopay-rev", reviewer="partner_app"))
    await second.execute_update("start_whitelist_test", signed("admin", user_ids=["tester-1"]))
    assert await resolve_version(catalog_db, program, "gopay", "tester-1") == "1.1.0"
    assert await resolve_version(catalog_db, program, "gopay", "someone") == "1.0.0"

    users = [f"user-{n}" for n in range(400)]
    included: set[str] = set()
    for percent in (5, 20, 50):
        await second.execute_update("set_grayscale", signed("admin", percent=percent))
        now_included = {u for u in users
                        if await resolve_version(catalog_db, program, "gopay", u) == "1.1.0"}
        assert included <= now_included, "a user in the grayscale stays in it as it grows"
        included = now_included
    assert 0.3 * len(users) < len(included) < 0.7 * len(users)

    await second.execute_update("full_release", signed("admin"))
    await second.result()
    old = await get_release(catalog_db, first.id)
    new = await get_release(catalog_db, second.id)
    assert old is not None and old.stage == "ARCHIVED"
    assert new is not None and new.stage == "RELEASED"
    assert await resolve_version(catalog_db, program, "gopay", "someone") == "1.1.0"


async def test_bad_package_fails_the_build_with_a_clear_message_then_rebuilds(
    worker: WorkerProcess, client: Client
) -> None:
    program = new_program()
    broken = request(program, "1.1.0", source=str(SAMPLES / "1.1.0-broken"))
    handle = await start(client, broken, worker.env["TEMPORAL_TASK_QUEUE"])
    status = await wait_for_stage(handle, "BUILD_FAILED")
    assert "has no file" in status["build_error"]
    await handle.execute_update("rebuild", signed("dev", source=str(SAMPLES / "1.1.0")))
    status = await wait_for_stage(handle, "READY_TO_APPLY")
    assert status["build_error"] is None
    await handle.execute_update("cancel_release", signed("owner"))


async def test_one_release_per_channel_in_review(worker: WorkerProcess, client: Client) -> None:
    program = new_program()
    queue = worker.env["TEMPORAL_TASK_QUEUE"]
    first = await start(client, request(program, "1.0.0", "alipaycn"), queue)
    second = await start(client, request(program, "1.1.0", "alipaycn"), queue)
    await wait_for_stage(first, "READY_TO_APPLY")
    await wait_for_stage(second, "READY_TO_APPLY")
    await first.execute_update("apply_release", signed("dev"))
    await second.signal("apply_release", signed("dev"))
    deadline = time.monotonic() + 30
    while (status := await second.query("status"))["last_rejection"] is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert status["stage"] == "READY_TO_APPLY"
    assert first.id in status["last_rejection"]["reason"]
    for handle in (first, second):
        await handle.execute_update("cancel_release", signed("owner"))


async def test_thousands_of_commands_continue_as_new_without_losing_one(
    worker: WorkerProcess, client: Client
) -> None:
    program = new_program()
    handle = await start(client, request(program, "1.0.0"), worker.env["TEMPORAL_TASK_QUEUE"])
    await wait_for_stage(handle, "READY_TO_APPLY")
    first_run = (await handle.describe()).run_id
    # Batches of edits until the dev server (suggesting continue-as-new at 400 events) has the
    # release continue as new: some 60 edits, fewer events each as commands get cheaper.
    count = 0
    while count < 300 and (await handle.describe()).run_id == first_run:
        for n in range(count, count + 30):
            await handle.signal("update_config", signed("dev", config={
                "basic_info": {"description": f"edit {n}"}}))
        count += 30
    deadline = time.monotonic() + 120
    while (status := await handle.query("status"))["audit_count"] < 3 + count:
        assert time.monotonic() < deadline, status["audit_count"]
        await asyncio.sleep(0.3)
    assert status["config"]["basic_info"]["description"] == f"edit {count - 1}"
    assert (await handle.describe()).run_id != first_run, "the release continued as new"
    status = await handle.execute_update("apply_release", signed("dev"))
    assert status["stage"] == "UNDER_REVIEW" and status["audit_count"] == 4 + count
    await handle.execute_update("cancel_release", signed("owner"))


async def test_worker_exposes_prometheus_metrics(worker: WorkerProcess, client: Client) -> None:
    handle = await start(client, request(new_program(), "1.0.0"),
                         worker.env["TEMPORAL_TASK_QUEUE"])
    await wait_for_stage(handle, "READY_TO_APPLY")
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("full_release", signed("admin"))
    await handle.execute_update("cancel_release", signed("owner"))
    url = f"http://{worker.env['METRICS_ADDRESS']}/metrics"
    metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
    assert 'mpr_release_commands{' in metrics
    assert re.search(r'mpr_release_commands\{[^}]*command="full_release"[^}]*'
                     r'outcome="refused"', metrics)
    assert re.search(r'mpr_release_stage_reached\{[^}]*stage="CANCELED"', metrics)
    assert re.search(r'temporal_activity_execution_latency_bucket\{[^}]*'
                     r'activity_type="build_package"', metrics)


# --- identities --------------------------------------------------------------------------


async def test_only_a_token_of_the_workers_issuer_names_who_sends(
    worker: WorkerProcess, client: Client, tmp_path: Path
) -> None:
    """The worker verifies against the issuer's published keys: a token of another key, an
    expired one, one for another audience, or none at all names nobody, whatever the actor
    field says; starting takes a start role in the workspace besides."""
    queue = worker.env["TEMPORAL_TASK_QUEUE"]
    impostor = DevIssuer.under(tmp_path / "impostor").ensure()  # same issuer name, other key
    expired = identity.ISSUER.token("dev", now=time.time() - 9 * 3600)
    elsewhere = identity.ISSUER.token("dev", aud="another-service")
    forged = [
        (None, "no identity_token"),
        (impostor.token("dev"), "signed with a key the issuer does not publish"),
        (expired, "had expired when the command arrived"),
        (elsewhere, "for another audience"),
    ]

    for sent, reason in [*forged, (token("gopay-rev"), "gopay-rev is not authorised")]:
        handle = await start_release(client, request(new_program(), "1.0.0"), queue,
                                     identity_token=sent)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "InvalidStartInput"
        assert cause.message.startswith("start refused: ") and reason in cause.message

    handle = await start(client, request(new_program(), "1.0.0"), queue)
    await wait_for_stage(handle, "READY_TO_APPLY")
    for sent, reason in forged:
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("apply_release", {TOKEN_FIELD: sent, "actor": "dev"})
        assert reason in str(refused.value.cause)
    status = await handle.execute_update("apply_release", signed("dev"))
    assert status["stage"] == "UNDER_REVIEW"

    audit = (await handle.query("audit_log"))["entries"]
    sent_by = [(e["actor"], e.get("claimed_actor"), e["accepted"]) for e in audit
               if e["command"] == "apply_release"]
    assert sent_by == [(None, "dev", False)] * len(forged) + [("dev", None, True)]
    await handle.execute_update("cancel_release", signed("owner"))
