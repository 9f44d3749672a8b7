"""Runs every `temporal` line of the mini service cookbook (docs/mini-service-cookbook.md)
against the real stack, in the shell its `mpr login` and `TOKEN=$(mpr token)` lines set up, so
it cannot rot; checks that every `tctl` line sends what its `temporal` twin sends, and that
every command line carries the token of the member whose role it needs."""

import asyncio
import json
import subprocess

import asyncpg
import pytest
from temporalio.client import Client

from mpr.catalog.mini_services import RecordedServiceEvent
from mpr.domain.mini_service.models import mini_service_id
from mpr.domain.mini_service.rules import MINI_SERVICE
from starters.mini_services import ServiceRef
from tests.catalog.readers import list_service_events
from tests.cookbook import (
    SERVICE_COOKBOOK,
    Shell,
    cookbook,
    logged_in,
    option,
    run_temporal_line,
    setups,
)
from tests.e2e.test_mini_service_end_to_end import (
    ADMIN,
    OPERATOR,
    TITLE,
    WAIT_SECONDS,
    eventually_listed,
    mini_services,
    new_super_app,
)
from tests.stack import ActingServices, TemporalCli, WorkerProcess

# Each example runs on a fresh version of a super app of its own: one version per super app
# may be TESTING, and each command is tried twice (update, then signal).
STATUS_NEEDED = {
    "edit_title": "DRAFT",
    "add_section": "DRAFT",
    "edit_section": "DRAFT",
    "move_section": "DRAFT",
    "delete_section": "DRAFT",
    "add_mini_program": "DRAFT",
    "remove_mini_program": "DRAFT",
    "move_mini_program": "DRAFT",
    "delete": "DRAFT",
    "test": "DRAFT",
    "retest": "TESTING",
    "revert": "TESTING",
    "release": "TESTING",
}
# The page the cookbook's examples assume.
FOOD = {"title": {"en": "Food", "id": "Makanan"}, "mini_program_ids": ["coffee-shop", "noodle-bar"]}
# Only a service admin releases; the operator does the rest.
SENDER = {name: ADMIN if name == "release" else OPERATOR for name in STATUS_NEEDED}


COOKBOOK = cookbook(SERVICE_COOKBOOK)
SETUP = setups(SERVICE_COOKBOOK)
SHELL = Shell()


def run(line: str, service: str, worker: WorkerProcess, group: str,
        super_app: str = "gopay") -> subprocess.CompletedProcess[str]:
    """The line of `group` in the shell the cookbook has set up by then, with $SERVICE set
    and GoPay replaced by this test's super app."""
    variables = {**SHELL.state(SETUP[group], worker), "SERVICE": service}
    return run_temporal_line(line.replace("'gopay'", f"'{super_app}'"), worker, variables)


async def version_in(services: ActingServices, db: asyncpg.Pool, status: str) -> str:
    """A fresh version of a fresh super app, with the cookbook's section-1, in `status`."""
    super_app = await new_super_app(db)
    operator = services.as_user(OPERATOR)
    version = await operator.create(super_app)
    await operator.command(super_app, version, "add_section", FOOD)
    if status == "TESTING":
        await operator.command(super_app, version, "test", {"testers": ["qa@example.com"]})
    return mini_service_id(super_app, version)


async def recorded(db: asyncpg.Pool, ref: ServiceRef, seq: int) -> RecordedServiceEvent:
    """The version's event number `seq`, once the catalog has it (signals are asynchronous)."""
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            events = await list_service_events(db, ref.super_app, ref.version_no)
            mine = [event for event in events if event.seq == seq]
            if mine:
                return mine[0]
            await asyncio.sleep(0.05)


@pytest.fixture
def services(client: Client, worker: WorkerProcess, catalog_db: asyncpg.Pool) -> ActingServices:
    return mini_services(client, worker, catalog_db)


def test_the_cookbook_covers_every_command() -> None:
    assert set(STATUS_NEEDED) == set(MINI_SERVICE.rules)
    for name in STATUS_NEEDED:
        kinds = [" ".join(line.split()[:3]) for line in COOKBOOK[name]]
        assert kinds == ["temporal workflow update", "temporal workflow signal",
                         "tctl workflow signal"], name


def test_every_command_carries_the_senders_token() -> None:
    for name, sender in SENDER.items():
        assert logged_in(SETUP[name]) == sender, f"{name} is not sent by {sender}"
        assert "TOKEN=$(mpr token)" in SETUP[name][-1], f"{name}: TOKEN is another's token"
        for line in COOKBOOK[name]:
            payload = json.loads(option(line, "--input"))
            assert payload["identity_token"] == "$TOKEN" and "actor" not in payload, line


@pytest.mark.parametrize("name", list(STATUS_NEEDED))
async def test_cookbook_command(name: str, worker: WorkerProcess, services: ActingServices,
                                catalog_db: asyncpg.Pool) -> None:
    update_line, signal_line, tctl_line = COOKBOOK[name]
    payload = json.loads(option(update_line, "--input"))
    assert [json.loads(option(line, "--input")) for line in (signal_line, tctl_line)] == [
        payload, payload], "update, signal and tctl lines send the same payload"
    assert option(update_line, "--name") == option(tctl_line, "--name") == option(
        signal_line, "--name") == name

    for_update, for_signal = [
        await version_in(services, catalog_db, STATUS_NEEDED[name]) for _ in range(2)]
    updated = ServiceRef.parse(for_update)
    before = (await services.status(updated.super_app, updated.version_no)).audit_count
    result = run(update_line, for_update, worker, name)
    assert result.returncode == 0, result.stderr
    event = await recorded(catalog_db, updated, before + 1)
    assert (event.command, event.actor) == (name, SENDER[name])

    ref = ServiceRef.parse(for_signal)
    before = (await services.status(ref.super_app, ref.version_no)).audit_count
    result = run(signal_line, for_signal, worker, name)
    assert result.returncode == 0, result.stderr
    event = await recorded(catalog_db, ref, before + 1)
    assert event.command == name
    assert event.accepted, event.reason
    assert event.actor == SENDER[name], "the token's user is the actor"


async def test_cookbook_queries_and_lists(
    worker: WorkerProcess, services: ActingServices, catalog_db: asyncpg.Pool,
    temporal_cli: TemporalCli,
) -> None:
    super_app = await new_super_app(catalog_db)
    operator = services.as_user(OPERATOR)
    draft = await operator.create(super_app)
    rolling = await operator.create(super_app)
    await operator.command(super_app, rolling, "edit_title", {"title": TITLE})
    await operator.command(super_app, rolling, "test", {"testers": ["qa@example.com"]})
    await services.as_user(ADMIN).command(super_app, rolling, "release", {"percent": 50})
    service = mini_service_id(super_app, rolling)

    answers = {}
    for line in COOKBOOK["queries"]:
        if line.startswith("temporal "):
            result = run(line, service, worker, "queries")
            assert result.returncode == 0, f"{line}\n{result.stderr}"
            answers[option(line, "--name")] = result.stdout
    assert '"RELEASING"' in answers["status"]
    assert '"Layanan"' in answers["preview"] and '"Services"' not in answers["preview"]
    assert '"section_id"' in answers["content"]
    assert f'"version_no":{draft}' in answers["history"].replace(" ", "")
    tctl = {option(line, "--query_type"): line for line in COOKBOOK["queries"]
            if line.startswith("tctl ")}
    assert set(tctl) <= set(answers)
    assert option(tctl["preview"], "--input") == option(
        next(line for line in COOKBOOK["queries"] if "--name preview" in line), "--input")

    drafts, in_flight, past_half, tctl_list = COOKBOOK["list"]
    expected = [(drafts, draft), (in_flight, rolling), (past_half, rolling)]
    for line, version in expected:
        # Visibility lags: wait until the version shows, then run the line as written.
        await eventually_listed(temporal_cli, option(line, "--query").replace(
            "'gopay'", f"'{super_app}'"), mini_service_id(super_app, version))
        result = run(line, service, worker, "list", super_app)
        assert result.returncode == 0, f"{line}\n{result.stderr}"
        assert mini_service_id(super_app, version) in result.stdout, line
    assert tctl_list.startswith("tctl workflow list --query ")
