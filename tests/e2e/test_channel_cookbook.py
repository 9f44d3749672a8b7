"""Runs every `temporal` line of the channel cookbook (docs/channel-cookbook.md) against the
real stack, in the shell its `mpr login` and `TOKEN=$(mpr token)` lines set up, so it cannot
rot; checks that every `tctl` line sends what its `temporal` twin sends, and that every command
line carries the token of a member holding the role it needs (and, for a takedown, the kind of
takedown the cookbook says it is).

The cookbook's commands follow each other on one channel (each is allowed in the state the one
before leaves), so they run in its order: the update lines on one channel, the signal lines on
another, each channel of a fresh mini program with 1.0.0 and 1.1.0 released through the real
worker. A third channel serves the start line (after its workflow is terminated), the queries
and the lists; a fourth, with 1.0.0 only, shows that a command moves the channel's search
attributes, which the lists find. The four are released at once, once for the module."""

import asyncio
import base64
import json
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client, WorkflowHandle

from mpr.catalog.admin import Membership, add_member
from mpr.catalog.channels import channel_events
from mpr.catalog.db import create_pool
from mpr.domain.channel.models import ChannelKey, channel_id
from mpr.domain.channel.rules import CHANNEL, lifters, takedown_kind
from mpr.domain.channel.stages import ChannelState, TakedownKind
from mpr.domain.channel.state import ChannelStatus
from mpr.domain.core.models import Role
from mpr.domain.release.models import StartInput
from starters.channels import ChannelClient
from starters.releases import start_release
from tests.cookbook import (
    CHANNEL_COOKBOOK,
    Shell,
    cookbook,
    logged_in,
    option,
    run_temporal_line,
    setups,
)
from tests.e2e.test_channel_end_to_end import channel_answers, until_stage
from tests.e2e.test_mini_service_end_to_end import eventually_listed
from tests.e2e.test_release_end_to_end import SAMPLES
from tests.stack import TemporalCli, WorkerProcess, signed, token, token_of

WORKSPACE = "ws-channel-cookbook"
APP = "gopay"  # the cookbook's target app: its partner reviewer (gopay-rev) approves releases
# The cookbook's actors and the role each holds (pam's on the mini program at hand).
ROLES = {"pam": Role.PROGRAM_ADMIN, "adam": Role.ADMIN, "priya": Role.PLATFORM_REVIEWER}
RELEASED = ("1.0.0", "1.1.0")
WAIT_SECONDS = 30


@dataclass(frozen=True)
class Example:
    command: str
    sender: str
    state_before: ChannelState
    state_after: ChannelState
    stable_after: str
    kind: TakedownKind | None = None
    """The takedown's kind the channel records (for take_offline and bring_online)."""


# The cookbook's command examples in its order, each on the channel the one before left.
EXAMPLES = {
    "rollback": Example("rollback", "pam", ChannelState.ONLINE, ChannelState.ONLINE, "1.0.0"),
    "rollback with to_version": Example("rollback", "pam", ChannelState.ONLINE,
                                        ChannelState.ONLINE, "1.1.0"),
    "take_offline": Example("take_offline", "adam", ChannelState.ONLINE, ChannelState.OFFLINE,
                            "1.1.0", TakedownKind.ADMIN),
    "bring_online": Example("bring_online", "adam", ChannelState.OFFLINE, ChannelState.ONLINE,
                            "1.1.0", TakedownKind.ADMIN),
    "take_offline by a platform reviewer": Example(
        "take_offline", "priya", ChannelState.ONLINE, ChannelState.OFFLINE, "1.1.0",
        TakedownKind.PLATFORM),
    "bring_online by a platform reviewer": Example(
        "bring_online", "priya", ChannelState.OFFLINE, ChannelState.ONLINE, "1.1.0",
        TakedownKind.PLATFORM),
}
KINDS = ["temporal workflow update", "temporal workflow signal", "tctl workflow signal"]

COOKBOOK = cookbook(CHANNEL_COOKBOOK)
SETUP = setups(CHANNEL_COOKBOOK)
SHELL = Shell()


def localise(line: str, program: str) -> str:
    return line.replace("coffee-shop", program)


def run(line: str, program: str, worker: WorkerProcess,
        group: str) -> subprocess.CompletedProcess[str]:
    """`line` of `group`, in the shell the cookbook has set up by then, on `program`'s
    channel."""
    variables = {**SHELL.state(SETUP[group], worker), "CHANNEL": channel_of(program)}
    return run_temporal_line(localise(line, program), worker, variables)


def channel_of(program: str) -> str:
    return channel_id(program, APP, "production")


def key_of(program: str) -> ChannelKey:
    return ChannelKey(mini_program_id=program, target_app=APP)


def payload_of(line: str) -> Any:
    return json.loads(option(line, "--input"))


async def released(client: Client, queue: str, program: str, version: str) -> None:
    """`version` of the sample released on `program`'s GoPay channel, by the workspace's
    developer (alice), GoPay's partner reviewer and adam."""
    request = StartInput(mini_program_id=program, version=version, target_app=APP,
                         workspace_id=WORKSPACE, source=str(SAMPLES / version),
                         config={"basic_info": {"name": "Coffee Shop"}})
    handle: WorkflowHandle[Any, Any] = await start_release(client, request, queue,
                                                           identity_token=token("alice"))
    await until_stage(handle, "READY_TO_APPLY")
    for name, payload in [("apply_release", signed("alice")),
                          ("approve_review", signed("gopay-rev", reviewer="partner_app")),
                          ("full_release", signed("adam"))]:
        await handle.execute_update(name, payload)
    await handle.result()


async def live_channel(client: Client, queue: str, cli: TemporalCli, program: str,
                       versions: tuple[str, ...]) -> None:
    for version in versions:
        await released(client, queue, program, version)
    await channel_answers(cli, channel_of(program), versions[-1])


@pytest.fixture(scope="module")
async def channels(client: Client, worker: WorkerProcess, temporal_cli: TemporalCli,
                   e2e_database_url: str) -> dict[str, str]:
    """The programs whose GoPay channels the tests use, each ONLINE with 1.1.0 stable after
    1.0.0 ("update", "signal", "queries") or with 1.0.0 ("attributes"), and the cookbook's
    actors given their roles."""
    uses = {"update": RELEASED, "signal": RELEASED, "queries": RELEASED,
            "attributes": RELEASED[:1]}
    programs = {use: f"chcook-{uuid.uuid4().hex[:8]}" for use in uses}
    pool = await create_pool(e2e_database_url)
    try:
        for user, role in (("alice", Role.DEVELOPER), ("adam", ROLES["adam"])):
            await add_member(pool, Membership(workspace_id=WORKSPACE, user_id=user, role=role))
        await add_member(pool, Membership(workspace_id="ops", user_id="priya",
                                          role=ROLES["priya"]))
        for program in programs.values():
            await add_member(pool, Membership(workspace_id=WORKSPACE, user_id="pam",
                                              role=ROLES["pam"], mini_program_id=program))
    finally:
        await pool.close()
    queue = worker.env["TEMPORAL_TASK_QUEUE"]
    await asyncio.gather(*(live_channel(client, queue, temporal_cli, program, uses[use])
                           for use, program in programs.items()))
    return programs


def channel_client(client: Client, worker: WorkerProcess, user: str) -> ChannelClient:
    return ChannelClient(client, worker.env["TEMPORAL_TASK_QUEUE"], token=token_of(user))


async def recorded(channels: ChannelClient, program: str, seq: int) -> ChannelStatus:
    """The channel's status once it has recorded its command number `seq` (signals are
    asynchronous)."""
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            status = await channels.status(key_of(program))
            if status.audit_count >= seq:
                return status
            await asyncio.sleep(0.1)


def test_the_cookbook_covers_every_command() -> None:
    assert {example.command for example in EXAMPLES.values()} == set(CHANNEL.rules)
    groups = list(COOKBOOK)
    assert [group for group in groups if group in EXAMPLES] == list(EXAMPLES), (
        "the examples follow each other in the cookbook's order")
    for group, example in EXAMPLES.items():
        lines = COOKBOOK[group]
        assert [" ".join(line.split()[:3]) for line in lines] == KINDS, group
        assert {option(line, "--name") for line in lines} == {example.command}, group
        assert [payload_of(line) for line in lines[1:]] == [payload_of(lines[0])] * 2, (
            f"{group}: update, signal and tctl lines send the same payload")
    assert "to_version" in payload_of(COOKBOOK["rollback with to_version"][0])
    assert "to_version" not in payload_of(COOKBOOK["rollback"][0])

    start, tctl_start = COOKBOOK["start"]
    assert start.startswith("temporal workflow start --type MiniProgramChannel ")
    assert tctl_start.startswith("tctl workflow start ")
    assert payload_of(start) == payload_of(tctl_start)
    assert "identity_token" not in payload_of(start), "starting a channel carries no identity"
    assert option(tctl_start, "--workflow_type") == option(start, "--type")
    queries = {option(line, "--name") for line in COOKBOOK["queries"]
               if line.startswith("temporal ")}
    assert queries == {"status", "versions"}
    assert {option(line, "--query_type") for line in COOKBOOK["queries"]
            if line.startswith("tctl ")} == queries
    tctl_lists = [line for line in COOKBOOK["list"] if line.startswith("tctl ")]
    assert [option(line, "--query") for line in tctl_lists] == [
        option(COOKBOOK["list"][0], "--query")], "tctl lists what the first temporal line lists"


def test_every_command_carries_the_token_of_a_member_with_the_role() -> None:
    for group, example in EXAMPLES.items():
        assert logged_in(SETUP[group]) == example.sender, f"{group} is not sent by {example.sender}"
        assert "TOKEN=$(mpr token)" in SETUP[group][-1], f"{group}: TOKEN is another's token"
        role = ROLES[example.sender]
        sent = {name: value for name, value in payload_of(COOKBOOK[group][0]).items()
                if name != "identity_token"}
        command = CHANNEL.parse(example.command, [sent])  # the payload is valid, too
        assert role in CHANNEL.rules[example.command].roles_for(command), (
            f"{example.sender} ({role}) may not send {example.command}")
        if example.command == "take_offline":
            assert takedown_kind(frozenset({role})) is example.kind, group
        if example.command == "bring_online":
            assert role in lifters(example.kind or TakedownKind.ADMIN), group
        for line in COOKBOOK[group]:
            payload = payload_of(line)
            assert payload["identity_token"] == "$TOKEN" and "actor" not in payload, line


def refused(line: str, program: str, worker: WorkerProcess, group: str,
                  reason: str) -> None:
    result = run(line, program, worker, group)
    assert result.returncode != 0, f"{line} was not refused"
    assert reason in result.stderr, result.stderr


@pytest.mark.parametrize("sent_as", ["update", "signal"])
async def test_cookbook_commands(sent_as: str, worker: WorkerProcess, client: Client,
                                 channels: dict[str, str], catalog_db: asyncpg.Pool) -> None:
    program = channels[sent_as]
    reader = channel_client(client, worker, "adam")
    for group, example in EXAMPLES.items():
        before = await reader.status(key_of(program))
        assert before.state is example.state_before, f"{group} needs {example.state_before}"
        line = COOKBOOK[group][0 if sent_as == "update" else 1]
        result = run(line, program, worker, group)
        assert result.returncode == 0, f"{group}: {line}\n{result.stderr}"
        status = await recorded(reader, program, before.audit_count + 1)

        entry = next(e for e in status.recent_audit if e.seq == before.audit_count + 1)
        assert entry.command == example.command, group
        assert entry.accepted, f"{group}: {entry.reason}"
        assert entry.actor == example.sender, f"{group}: the token's user is the actor"
        assert (status.state, status.stable_version) == (example.state_after,
                                                         example.stable_after), group
        if example.state_after is ChannelState.OFFLINE:
            assert status.offline is not None
            assert (status.offline.kind, status.offline.by) == (example.kind, example.sender)
        else:
            assert status.offline is None, group
        event = (await channel_events(catalog_db, key_of(program), limit=1))[0]
        assert (event["seq"], event["command"], event["actor"], event["accepted"]) == (
            entry.seq, example.command, example.sender, True), group
        assert event["actor_kind"] == (example.kind.value if example.kind else None), group

        if sent_as != "update":
            continue
        # What the cookbook says besides, refused as it says (refusals change nothing).
        if group == "rollback with to_version":
            refused(COOKBOOK["rollback"][0], program, worker, "rollback",
                          "every version stable before 1.1.0 was rolled back")
        if group == "take_offline by a platform reviewer":
            refused(COOKBOOK["bring_online"][0], program, worker, "bring_online",
                          "only platform_reviewer can bring it online")
            assert (await reader.status(key_of(program))).state is ChannelState.OFFLINE


async def test_cookbook_start_queries_and_lists(
    worker: WorkerProcess, client: Client, temporal_cli: TemporalCli, channels: dict[str, str],
) -> None:
    program = channels["queries"]
    channel = channel_of(program)
    # Rolled back to 1.0.0, then taken down by a platform reviewer: what the lists look for.
    await channel_client(client, worker, "pam").command(key_of(program), "rollback",
                                                        {"reason": "checkout crashes"})
    await channel_client(client, worker, "priya").command(key_of(program), "take_offline",
                                                          {"reason": "content policy"})
    # Then its workflow is terminated, as if it went live before channels existed.
    temporal_cli.run("workflow", "terminate", "--workflow-id", channel, "--reason", "cookbook")
    assert run(COOKBOOK["rollback"][0], program, worker, "rollback").returncode != 0, (
        "a raw update needs the channel's workflow running")
    for _ in range(2):  # starting a running channel again returns it
        result = run(COOKBOOK["start"][0], program, worker, "start")
        assert result.returncode == 0, result.stderr
    restarted = await channel_answers(temporal_cli, channel, "1.0.0")
    assert restarted["state"] == "OFFLINE", "the started channel read the catalog"

    answers = {}
    for line in COOKBOOK["queries"]:
        if line.startswith("temporal "):
            result = run(line, program, worker, "queries")
            assert result.returncode == 0, f"{line}\n{result.stderr}"
            answers[option(line, "--name")] = result.stdout
    assert "OFFLINE" in answers["status"] and "priya" in answers["status"]
    assert '"platform"' in answers["status"].replace(" ", "")
    assert "ROLLED_BACK" in answers["versions"] and "1.0.0" in answers["versions"]

    for line in COOKBOOK["list"]:
        if line.startswith("tctl "):
            continue
        # Visibility lags: wait until the channel shows, then run the line as written.
        await eventually_listed(temporal_cli, option(localise(line, program), "--query"),
                                channel)
        result = run(line, program, worker, "list")
        assert result.returncode == 0, f"{line}\n{result.stderr}"
        assert channel in result.stdout, line


async def test_a_command_moves_the_channels_search_attributes(
    worker: WorkerProcess, client: Client, temporal_cli: TemporalCli, channels: dict[str, str],
) -> None:
    program = channels["attributes"]
    await channel_client(client, worker, "adam").command(key_of(program), "take_offline",
                                                         {"reason": "fraud report"})
    # Describe answers from the workflow's mutable state: no visibility lag to wait for.
    assert published(temporal_cli, channel_of(program)) == ("OFFLINE", "1.0.0")


def published(cli: TemporalCli, workflow_id: str) -> tuple[str | None, str | None]:
    """The channel's ChannelState and StableVersion as its workflow last upserted them."""
    fields = cli.json("workflow", "describe", "--workflow-id", workflow_id)[
        "workflowExecutionInfo"]["searchAttributes"]["indexedFields"]

    def value(name: str) -> str | None:
        return json.loads(base64.b64decode(fields[name]["data"])) if name in fields else None

    return value("ChannelState"), value("StableVersion")
