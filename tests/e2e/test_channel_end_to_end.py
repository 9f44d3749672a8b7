"""A channel end to end: real dev server, PostgreSQL, worker process, the `temporal` CLI and
`mpr`, through release, rollback, takedown, back online and a new release. Every command
carries its sender's identity token, which the worker verifies."""

import asyncio
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowHandle

from mpr.catalog.rollout import resolve_version_detail
from mpr.infra.exit_codes import REFUSED, USAGE
from starters.releases import start_release
from tests.e2e.test_release_end_to_end import SAMPLES, request
from tests.mpr_runner import Mpr
from tests.stack import TemporalCli, WorkerProcess, signed, token


def sample(version: str, under: Path) -> Path:
    """The sample's package of `version`: 1.0.0 and 1.1.0 as shipped, a later one as 1.1.0's
    files with its own version in app.json."""
    if (SAMPLES / version).is_dir():
        return SAMPLES / version
    copy = under / version
    shutil.copytree(SAMPLES / "1.1.0", copy)
    manifest = json.loads((copy / "app.json").read_text())
    (copy / "app.json").write_text(json.dumps({**manifest, "version": version}))
    return copy


async def released(client: Client, queue: str, program: str, version: str,
                   under: Path) -> None:
    source = sample(version, under)
    handle = await start_release(client, request(program, version, source=str(source)), queue,
                                 identity_token=token("dev"))
    await until_stage(handle, "READY_TO_APPLY")
    for name, payload in [("apply_release", signed("dev")),
                          ("approve_review", signed("gopay-rev", reviewer="partner_app")),
                          ("full_release", signed("admin"))]:
        await handle.execute_update(name, payload)
    await handle.result()


async def until_stage(handle: WorkflowHandle[Any, Any], stage: str) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if (await handle.query("status"))["stage"] == stage:
                return
        except Exception as error:  # still starting
            assert "still starting" in str(error), error
        assert time.monotonic() < deadline, f"{handle.id} did not reach {stage}"
        await asyncio.sleep(0.2)


async def channel_answers(cli: TemporalCli, channel_id: str, stable: str) -> dict[str, Any]:
    """The channel's status through the CLI, once it serves `stable` (the release that went
    live started the channel or told it; it reads the catalog then)."""
    deadline = time.monotonic() + 60
    while True:
        result = cli.run("workflow", "query", "--workflow-id", channel_id, "--name", "status",
                         "--output", "json", check=False)
        if result.returncode == 0:
            status: dict[str, Any] = json.loads(result.stdout)["queryResult"][0]
            if status["stable_version"] == stable:
                return status
        assert time.monotonic() < deadline, f"{channel_id} did not serve {stable}"
        await asyncio.sleep(0.3)


def cli_update(cli: TemporalCli, channel_id: str, name: str, user: str,
               **payload: Any) -> Any:
    result = cli.run("workflow", "update", "execute", "--workflow-id", channel_id,
                     "--name", name, "--input", json.dumps(signed(user, payload)),
                     "--output", "json", check=False)
    return result


async def served(db: asyncpg.Pool, program: str) -> tuple[str | None, str]:
    resolution = await resolve_version_detail(db, program, "gopay", "someone")
    return resolution.version, resolution.source


async def test_rollback_offline_online_and_a_new_release(
    worker: WorkerProcess, client: Client, temporal_cli: TemporalCli,
    catalog_db: asyncpg.Pool, mpr: Mpr, tmp_path: Path,
) -> None:
    program = f"coffee-{uuid.uuid4().hex[:8]}"
    channel_id = f"channel:{program}:gopay:production"
    queue = worker.env["TEMPORAL_TASK_QUEUE"]
    await released(client, queue, program, "1.0.0", tmp_path)
    await released(client, queue, program, "1.1.0", tmp_path)
    await channel_answers(temporal_cli, channel_id, "1.1.0")

    refused = cli_update(temporal_cli, channel_id, "rollback", "dev", reason="crash")
    assert refused.returncode != 0 and "dev is not authorised to rollback" in refused.stderr
    rolled = cli_update(temporal_cli, channel_id, "rollback", "admin", reason="checkout crash")
    assert rolled.returncode == 0, rolled.stderr
    assert await served(catalog_db, program) == ("1.0.0", "stable")

    offline = await mpr("offline", program, "--app", "gopay", "--reason", "fraud report",
                        as_user="platform-rev")
    assert offline.code == 0, offline.err
    assert "OFFLINE" in offline.out
    assert await served(catalog_db, program) == (None, "offline")
    refused_online = await mpr("online", program, "--app", "gopay", as_user="admin")
    assert "platform takedown" in refused_online.error(REFUSED)
    online = await mpr("online", program, "--app", "gopay", "--json", as_user="platform-rev")
    assert online.code == 0, online.err
    assert online.json()["stable_version"] == "1.0.0"
    assert await served(catalog_db, program) == ("1.0.0", "stable")

    await released(client, queue, program, "1.2.0", tmp_path)
    status = await channel_answers(temporal_cli, channel_id, "1.2.0")
    assert status["state"] == "ONLINE"
    versions = await mpr("channel", "versions", program, "--app", "gopay", "--json")
    assert [(v["version"], v["status"]) for v in versions.json()["versions"]] == [
        ("1.2.0", "RELEASED"), ("1.1.0", "ROLLED_BACK"), ("1.0.0", "ARCHIVED")]
    listed = temporal_cli.json("workflow", "list", "--query",
                               f"WorkflowType='MiniProgramChannel' AND MiniProgramId='{program}'"
                               " AND ChannelState='ONLINE' AND StableVersion='1.2.0'")
    assert [row["execution"]["workflowId"] for row in listed] == [channel_id]


async def test_a_program_live_before_channels_gets_one_with_its_first_command(
    worker: WorkerProcess, client: Client, temporal_cli: TemporalCli,
    catalog_db: asyncpg.Pool, mpr: Mpr, tmp_path: Path,
) -> None:
    program = f"coffee-{uuid.uuid4().hex[:8]}"
    channel_id = f"channel:{program}:gopay:production"
    await released(client, worker.env["TEMPORAL_TASK_QUEUE"], program, "1.0.0", tmp_path)
    await channel_answers(temporal_cli, channel_id, "1.0.0")
    # As if it went live before this change: no channel workflow runs.
    temporal_cli.run("workflow", "terminate", "--workflow-id", channel_id, "--reason", "test")

    offline = await mpr("offline", program, "--app", "gopay", "--reason", "incident",
                        as_user="admin")
    assert offline.code == 0, offline.err
    assert await served(catalog_db, program) == (None, "offline")
    status = await mpr("channel", "status", program, "--app", "gopay")
    assert "admin takedown by admin" in status.out
    watched = await mpr("watch", channel_id, "--until", "offline")
    assert watched.code == 0, watched.err
    assert "OFFLINE  stable version 1.0.0" in watched.out
    refused = await mpr("watch", f"release:{program}:1.0.0:gopay:production", "--until",
                        "OFFLINE")
    assert "unknown stage 'OFFLINE'" in refused.error(USAGE)

    unknown = await mpr("offline", "no-such-program", "--app", "gopay", "--reason", "x",
                        as_user="admin")
    assert unknown.code != 0
    assert "not in the catalog" in unknown.err


async def test_commands_in_flight_survive_continue_as_new(
    worker: WorkerProcess, client: Client, temporal_cli: TemporalCli,
    catalog_db: asyncpg.Pool, tmp_path: Path,
) -> None:
    """Batches of concurrent commands until the dev server (suggesting continue-as-new at 400
    events) has the channel continue as new: every command is answered, and every one is
    recorded once, in the workflow's count and in the catalog."""
    program = f"coffee-{uuid.uuid4().hex[:8]}"
    channel_id = f"channel:{program}:gopay:production"
    await released(client, worker.env["TEMPORAL_TASK_QUEUE"], program, "1.0.0", tmp_path)
    await channel_answers(temporal_cli, channel_id, "1.0.0")
    handle = client.get_workflow_handle(channel_id)
    first_run = (await handle.describe()).run_id
    sent = 0
    for _ in range(30):
        batch = [("take_offline", {"reason": "drill"}) if n % 2 == 0 else ("bring_online", {})
                 for n in range(10)]
        answers = await asyncio.gather(*(
            handle.execute_update(name, signed("admin", payload)) for name, payload in batch),
            return_exceptions=True)
        sent += len(batch)
        for answer in answers:  # accepted, or refused by the rules: never lost
            assert isinstance(answer, dict) or "CommandRejected" in repr(answer.__cause__), answer
        if (await handle.describe()).run_id != first_run:
            break
    assert (await handle.describe()).run_id != first_run, "the channel continued as new"
    status = await handle.query("status")
    assert status["audit_count"] == sent
    assert await catalog_db.fetchval(
        "SELECT count(*) FROM channel_events WHERE mini_program_id = $1", program) == sent
