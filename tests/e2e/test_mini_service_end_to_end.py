"""A super app's mini service page (seed 004) on the real stack: the worker process, the
catalog in PostgreSQL, and operators typing the real `temporal` CLI.

One version is created, edited, tested, rolled out and released; its duplicate is released
in turn and archives it. Which version a user is shown is asked of the catalog at each step.
"""

import asyncio
import json
import uuid
from subprocess import CompletedProcess
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client

from mpr.catalog.admin import Membership, add_member, set_target_app
from mpr.catalog.db import create_pool
from mpr.catalog.mini_services import (
    get_service_version,
    resolve_mini_service,
    resolve_mini_service_detail,
)
from mpr.domain.core.models import Role
from mpr.domain.mini_service.models import ServiceStart, mini_service_id
from mpr.domain.mini_service.stages import ServiceStatus
from mpr.domain.release.models import Reviewer, TargetAppPolicy
from starters.mini_services import (
    CatalogNeeded,
    MiniServiceClient,
    ServiceCommandRefused,
    ServiceFailed,
    ServiceFinished,
    ServiceNotFound,
)
from tests.catalog.readers import list_service_events
from tests.stack import TemporalCli, WorkerProcess

APP = "gopay"
OPERATOR, ADMIN = "olly", "ada"
USERS = [f"user-{n}" for n in range(400)]
TITLE = {"default_language": "en", "texts": {"en": "Services", "id": "Layanan"}}
WAIT_SECONDS = 30.0


async def grant_service_roles(db: asyncpg.Pool | asyncpg.Connection, super_app: str) -> None:
    """`olly` operates the super app's page, `ada` administers it (and alone may release)."""
    for user, role in ((OPERATOR, Role.SERVICE_OPERATOR), (ADMIN, Role.SERVICE_ADMIN)):
        await add_member(db, Membership(workspace_id="ops", user_id=user, role=role,
                                        target_app=super_app))


async def new_super_app(db: asyncpg.Pool | asyncpg.Connection) -> str:
    """A super app of its own, so that its one TESTING/RELEASING slot is this test's alone."""
    super_app = f"svc-{uuid.uuid4().hex[:8]}"
    await set_target_app(db, TargetAppPolicy(target_app=super_app,
                                             required_reviewers=[Reviewer.PARTNER_APP]))
    await grant_service_roles(db, super_app)
    return super_app


def mini_services(client: Client, worker: WorkerProcess,
                  db: asyncpg.Pool) -> MiniServiceClient:
    return MiniServiceClient(client, db, worker.env["TEMPORAL_TASK_QUEUE"])


@pytest.fixture(scope="module")
async def gopay_roles(e2e_database_url: str) -> None:
    pool = await create_pool(e2e_database_url)
    await grant_service_roles(pool, APP)
    await pool.close()


@pytest.fixture
def services(client: Client, worker: WorkerProcess, catalog_db: asyncpg.Pool) -> MiniServiceClient:
    return mini_services(client, worker, catalog_db)


# --- the `temporal` CLI, as an operator types it -------------------------------------------


def update(cli: TemporalCli, workflow_id: str, name: str, payload: Any) -> CompletedProcess[str]:
    return cli.run("workflow", "update", "execute", "--workflow-id", workflow_id, "--name", name,
                   "--input", json.dumps(payload), check=False)


def signal(cli: TemporalCli, workflow_id: str, name: str, payload: Any) -> None:
    cli.run("workflow", "signal", "--workflow-id", workflow_id, "--name", name,
            "--input", json.dumps(payload))


def query(cli: TemporalCli, workflow_id: str, name: str, *args: str) -> Any:
    answer = cli.json("workflow", "query", "--workflow-id", workflow_id, "--name", name, *args)
    return answer["queryResult"][0]


def listed(cli: TemporalCli, visibility_query: str) -> set[str]:
    executions = cli.json("workflow", "list", "--query", visibility_query)
    return {execution["execution"]["workflowId"] for execution in executions}


async def eventually_listed(cli: TemporalCli, visibility_query: str, workflow_id: str) -> None:
    """Visibility lags the workflow a little."""
    for _ in range(100):
        if workflow_id in listed(cli, visibility_query):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} never matched {visibility_query}")


async def until_events(services: MiniServiceClient, super_app: str, version_no: int,
                       count: int) -> dict[str, Any]:
    """The status once the version has recorded `count` events (signals are asynchronous)."""
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            status = await services.status(super_app, version_no)
            if status.audit_count >= count:
                assert status.audit_count == count
                return status.model_dump(mode="json")
            await asyncio.sleep(0.05)


async def shown(db: asyncpg.Pool, super_app: str) -> dict[str, int | None]:
    return {user: await resolve_mini_service(db, super_app, user) for user in USERS}


# --- the life of two versions ----------------------------------------------------------------


async def test_a_version_is_edited_tested_released_and_archived_by_its_duplicate(
    services: MiniServiceClient, temporal_cli: TemporalCli, client: Client,
    catalog_db: asyncpg.Pool, gopay_roles: None,
) -> None:
    first = await services.create(APP, OPERATOR)
    service = mini_service_id(APP, first)
    content = await services.content(APP, first)
    assert [s.section_id for s in content.sections] == [
        "carousel", "banner", "favorite", "recently-used"]
    await eventually_listed(temporal_cli, f"WorkflowType='MiniServiceRelease' AND "
                                          f"TargetApp='{APP}' AND MiniServiceStatus='DRAFT'",
                            service)

    # Edited with the temporal CLI: updates answer at once, signals are recorded.
    for name, payload in [
        ("edit_title", {"actor": OPERATOR, "title": TITLE}),
        ("add_section", {"actor": OPERATOR, "title": {"en": "Food", "id": "Makanan"},
                         "mini_program_ids": ["coffee-shop", "noodle-bar"]}),
    ]:
        result = update(temporal_cli, service, name, payload)
        assert result.returncode == 0, result.stderr
    signal(temporal_cli, service, "add_mini_program", {
        "actor": OPERATOR, "section_id": "section-1", "mini_program_id": "tea-house",
        "position": 0})
    signal(temporal_cli, service, "add_section", {"actor": OPERATOR, "title": "Food"})
    status = await until_events(services, APP, first, 5)
    assert status["last_rejection"]["command"] == "add_section"
    assert "invalid add_section payload" in status["last_rejection"]["reason"]
    events = await list_service_events(catalog_db, APP, first)
    assert [(e.command, e.accepted) for e in events] == [
        ("create", True), ("edit_title", True), ("add_section", True),
        ("add_mini_program", True), ("add_section", False)]

    page = query(temporal_cli, service, "preview", "--input", '{"language": "id"}')
    assert page["title"] == "Layanan"
    food = page["sections"][-1]
    assert (food["title"], food["mini_program_ids"]) == (
        "Makanan", ["tea-house", "coffee-shop", "noodle-bar"])
    assert query(temporal_cli, service, "status")["sections"] == 5

    # Pilot test: testers (by email, in any case) see the TESTING version, nobody else does.
    result = update(temporal_cli, service, "test",
                    {"actor": OPERATOR, "testers": ["QA@Example.com", "pm@example.com"]})
    assert result.returncode == 0, result.stderr
    tester = await resolve_mini_service_detail(catalog_db, APP, "user-1", "qa@example.com")
    assert (tester.version_no, tester.source) == (first, "tester")
    assert await resolve_mini_service(catalog_db, APP, "user-1") is None
    refused = update(temporal_cli, service, "add_section", {"actor": OPERATOR,
                                                            "title": {"en": "Late"}})
    assert refused.returncode != 0 and "only a DRAFT can be edited" in refused.stderr

    # Grayscale: only service admins release; a stable cohort sees the RELEASING version.
    refused = update(temporal_cli, service, "release", {"actor": OPERATOR, "percent": 5})
    assert refused.returncode != 0 and "needs service_admin" in refused.stderr
    result = update(temporal_cli, service, "release", {"actor": ADMIN, "percent": 5})
    assert result.returncode == 0, result.stderr
    at_5 = await shown(catalog_db, APP)
    cohort = {user for user, version in at_5.items() if version == first}
    assert 0 < len(cohort) < len(USERS) * 0.15
    assert set(at_5.values()) == {first, None}, "nothing is released yet"
    await eventually_listed(temporal_cli, f"WorkflowType='MiniServiceRelease' AND "
                                          f"TargetApp='{APP}' AND MiniServiceStatus='RELEASING' "
                                          "AND GrayscalePercent >= 5", service)

    released = await services.command(APP, first, "release", {"actor": ADMIN, "percent": 100})
    assert (released.status, released.percent) == (ServiceStatus.RELEASED, 100)
    assert set((await shown(catalog_db, APP)).values()) == {first}

    # Seed 004: a released version is not edited but duplicated into a new DRAFT.
    with pytest.raises(ServiceCommandRefused, match="duplicate it"):
        await services.command(APP, first, "edit_title", {"actor": OPERATOR, "title": TITLE})
    second = await services.duplicate(APP, first, OPERATOR)
    assert second > first
    assert await services.content(APP, second) == await services.content(APP, first)
    copied = await services.status(APP, second)
    assert (copied.status, copied.duplicated_from) == (ServiceStatus.DRAFT, first)
    with pytest.raises(ServiceCommandRefused, match="only a RELEASED or ARCHIVED"):
        await services.duplicate(APP, second, OPERATOR)
    with pytest.raises(ServiceNotFound):
        await services.duplicate(APP, second + 100, OPERATOR)

    await services.command(APP, second, "add_mini_program", {
        "actor": OPERATOR, "section_id": "section-1", "mini_program_id": "ride-hailing"})
    await services.command(APP, second, "test", {"actor": OPERATOR,
                                                 "testers": ["qa@example.com"]})
    await services.command(APP, second, "release", {"actor": ADMIN, "percent": 5})
    during = await shown(catalog_db, APP)
    new_cohort = {user for user, version in during.items() if version == second}
    assert set(during.values()) == {first, second}, "the rest keep the released version"
    await services.command(APP, second, "release", {"actor": ADMIN, "percent": 20})
    wider = {user for user, version in (await shown(catalog_db, APP)).items()
             if version == second}
    assert new_cohort < wider, "a user in the rollout at 5% stays in it at 20%"

    result = update(temporal_cli, mini_service_id(APP, second), "release",
                    {"actor": ADMIN, "percent": 100})
    assert result.returncode == 0, result.stderr
    ended = await client.get_workflow_handle(service).result()
    assert ended["status"] == "ARCHIVED"
    stored = await get_service_version(catalog_db, APP, first)
    assert stored is not None and stored.status is ServiceStatus.ARCHIVED
    assert stored.archived_at is not None
    assert set((await shown(catalog_db, APP)).values()) == {second}

    history = query(temporal_cli, mini_service_id(APP, second), "history")
    assert [(v["version_no"], v["status"]) for v in history["versions"][:2]] == [
        (second, "RELEASED"), (first, "ARCHIVED")]
    fresh = await services.history(APP)
    assert [(v.version_no, v.status) for v in fresh[:2]] == [
        (second, ServiceStatus.RELEASED), (first, ServiceStatus.ARCHIVED)]
    assert fresh[0].duplicated_from == first

    with pytest.raises(ServiceFinished) as finished:
        await services.command(APP, first, "revert", {"actor": ADMIN})
    assert finished.value.status is ServiceStatus.ARCHIVED
    refused = update(temporal_cli, service, "revert", {"actor": ADMIN})
    assert refused.returncode != 0


# --- a long-lived draft ----------------------------------------------------------------------


async def test_a_long_edited_draft_continues_as_new_without_losing_an_edit(
    services: MiniServiceClient, client: Client, catalog_db: asyncpg.Pool,
) -> None:
    super_app = await new_super_app(catalog_db)
    version = await services.create(super_app, OPERATOR)
    handle = client.get_workflow_handle(mini_service_id(super_app, version))
    first_run = (await handle.describe()).run_id
    await services.command(super_app, version, "add_section",
                           {"actor": OPERATOR, "title": {"en": "Everything"}})
    programs = [f"program-{n:02d}" for n in range(60)]
    for program in programs:  # ~12 history events each: the server suggests continuing
        await services.signal(super_app, version, "add_mini_program", {
            "actor": OPERATOR, "section_id": "section-1", "mini_program_id": program})

    status = await until_events(services, super_app, version, 2 + len(programs))
    assert status["last_rejection"] is None
    assert (await handle.describe()).run_id != first_run
    content = await services.content(super_app, version)
    assert content.sections[-1].mini_program_ids == programs
    events = await list_service_events(catalog_db, super_app, version)
    assert [e.seq for e in events] == list(range(1, 63))
    assert all(e.accepted for e in events)


# --- starting ----------------------------------------------------------------------------


async def test_starting_a_number_again_is_one_version(
    services: MiniServiceClient, client: Client, worker: WorkerProcess,
    catalog_db: asyncpg.Pool,
) -> None:
    super_app = await new_super_app(catalog_db)
    version = await services.create(super_app, OPERATOR)
    handle = client.get_workflow_handle(mini_service_id(super_app, version))
    run = (await handle.describe()).run_id
    again = ServiceStart(super_app=super_app, version_no=version, created_by=OPERATOR)
    await services.start(again)
    assert (await handle.describe()).run_id == run
    assert (await services.status(super_app, version)).audit_count == 1

    await services.command(super_app, version, "delete", {"actor": OPERATOR})
    with pytest.raises(ServiceFinished, match="DELETED"):
        await services.start(again)
    with pytest.raises(ServiceFailed, match="unknown target app"):
        await services.start(ServiceStart(super_app=f"{super_app}-gone", version_no=1,
                                          created_by=OPERATOR))
    with pytest.raises(CatalogNeeded):
        await MiniServiceClient(client, None, worker.env["TEMPORAL_TASK_QUEUE"]).create(
            super_app, OPERATOR)
