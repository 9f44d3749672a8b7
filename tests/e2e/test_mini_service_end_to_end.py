"""A super app's mini service page (seed 004) on the real stack: the worker process, the
catalog in PostgreSQL, and operators typing the real `temporal` CLI, each command with its
sender's identity token (verified by the worker; the token's user is the actor).

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
from mpr.domain.core.identity import ACTOR_MISMATCH
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
from tests.stack import ActingServices, TemporalCli, WorkerProcess, signed

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
                  db: asyncpg.Pool) -> ActingServices:
    """The client library on the stack; `.as_user(NAME)` sends NAME's token."""
    return ActingServices(client, db, worker.env["TEMPORAL_TASK_QUEUE"])


@pytest.fixture(scope="module")
async def gopay_roles(e2e_database_url: str) -> None:
    pool = await create_pool(e2e_database_url)
    await grant_service_roles(pool, APP)
    await pool.close()


@pytest.fixture
def services(client: Client, worker: WorkerProcess, catalog_db: asyncpg.Pool) -> ActingServices:
    return mini_services(client, worker, catalog_db)


@pytest.fixture
def operator(services: ActingServices) -> ActingServices:
    return services.as_user(OPERATOR)


@pytest.fixture
def admin(services: ActingServices) -> ActingServices:
    return services.as_user(ADMIN)


# --- the `temporal` CLI, as an operator types it: the payload and the sender's token ---------


def update(cli: TemporalCli, workflow_id: str, name: str, user: str,
           payload: dict[str, Any]) -> CompletedProcess[str]:
    return cli.run("workflow", "update", "execute", "--workflow-id", workflow_id, "--name", name,
                   "--input", json.dumps(signed(user, payload)), check=False)


def signal(cli: TemporalCli, workflow_id: str, name: str, user: str,
           payload: dict[str, Any]) -> None:
    cli.run("workflow", "signal", "--workflow-id", workflow_id, "--name", name,
            "--input", json.dumps(signed(user, payload)))


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
    services: ActingServices, operator: ActingServices, admin: ActingServices,
    temporal_cli: TemporalCli, client: Client, catalog_db: asyncpg.Pool, gopay_roles: None,
) -> None:
    first = await operator.create(APP)
    service = mini_service_id(APP, first)
    content = await services.content(APP, first)
    assert [s.section_id for s in content.sections] == [
        "carousel", "banner", "favorite", "recently-used"]
    await eventually_listed(temporal_cli, f"WorkflowType='MiniServiceRelease' AND "
                                          f"TargetApp='{APP}' AND MiniServiceStatus='DRAFT'",
                            service)

    # Edited with the temporal CLI: updates answer at once, signals are recorded.
    edits: list[tuple[str, dict[str, Any]]] = [
        ("edit_title", {"title": TITLE}),
        ("add_section", {"title": {"en": "Food", "id": "Makanan"},
                         "mini_program_ids": ["coffee-shop", "noodle-bar"]}),
    ]
    for name, payload in edits:
        result = update(temporal_cli, service, name, OPERATOR, payload)
        assert result.returncode == 0, result.stderr
    signal(temporal_cli, service, "add_mini_program", OPERATOR, {
        "actor": OPERATOR, "section_id": "section-1", "mini_program_id": "tea-house",
        "position": 0})
    signal(temporal_cli, service, "add_section", OPERATOR, {"title": "Food"})
    status = await until_events(services, APP, first, 5)
    assert status["last_rejection"]["command"] == "add_section"
    assert "invalid add_section payload" in status["last_rejection"]["reason"]
    events = await list_service_events(catalog_db, APP, first)
    assert [(e.command, e.actor, e.accepted) for e in events] == [
        ("create", OPERATOR, True), ("edit_title", OPERATOR, True),
        ("add_section", OPERATOR, True), ("add_mini_program", OPERATOR, True),
        ("add_section", OPERATOR, False)]

    # Who sends is whom the token names: not a matching actor field, nor a token-less payload.
    refused = update(temporal_cli, service, "edit_title", OPERATOR,
                     {"actor": ADMIN, "title": TITLE})
    assert refused.returncode != 0 and ACTOR_MISMATCH in refused.stderr
    refused = update(temporal_cli, service, "edit_title", OPERATOR, {"identity_token": None,
                                                                     "actor": OPERATOR,
                                                                     "title": TITLE})
    assert refused.returncode != 0 and "no identity_token" in refused.stderr
    status = await until_events(services, APP, first, 7)
    assert (status["last_rejection"]["actor"], status["last_rejection"]["claimed_actor"]) == (
        None, OPERATOR)

    page = query(temporal_cli, service, "preview", "--input", '{"language": "id"}')
    assert page["title"] == "Layanan"
    food = page["sections"][-1]
    assert (food["title"], food["mini_program_ids"]) == (
        "Makanan", ["tea-house", "coffee-shop", "noodle-bar"])
    assert query(temporal_cli, service, "status")["sections"] == 5

    # Pilot test: testers (by email, in any case) see the TESTING version, nobody else does.
    result = update(temporal_cli, service, "test", OPERATOR,
                    {"testers": ["QA@Example.com", "pm@example.com"]})
    assert result.returncode == 0, result.stderr
    tester = await resolve_mini_service_detail(catalog_db, APP, "user-1", "qa@example.com")
    assert (tester.version_no, tester.source) == (first, "tester")
    assert await resolve_mini_service(catalog_db, APP, "user-1") is None
    refused = update(temporal_cli, service, "add_section", OPERATOR, {"title": {"en": "Late"}})
    assert refused.returncode != 0 and "only a DRAFT can be edited" in refused.stderr

    # Grayscale: only service admins release; a stable cohort sees the RELEASING version.
    refused = update(temporal_cli, service, "release", OPERATOR, {"percent": 5})
    assert refused.returncode != 0 and "needs service_admin" in refused.stderr
    result = update(temporal_cli, service, "release", ADMIN, {"percent": 5})
    assert result.returncode == 0, result.stderr
    at_5 = await shown(catalog_db, APP)
    cohort = {user for user, version in at_5.items() if version == first}
    assert 0 < len(cohort) < len(USERS) * 0.15
    assert set(at_5.values()) == {first, None}, "nothing is released yet"
    await eventually_listed(temporal_cli, f"WorkflowType='MiniServiceRelease' AND "
                                          f"TargetApp='{APP}' AND MiniServiceStatus='RELEASING' "
                                          "AND GrayscalePercent >= 5", service)

    released = await admin.command(APP, first, "release", {"percent": 100})
    assert (released.status, released.percent) == (ServiceStatus.RELEASED, 100)
    assert set((await shown(catalog_db, APP)).values()) == {first}

    # Seed 004: a released version is not edited but duplicated into a new DRAFT.
    with pytest.raises(ServiceCommandRefused, match="duplicate it"):
        await operator.command(APP, first, "edit_title", {"title": TITLE})
    second = await operator.duplicate(APP, first)
    assert second > first
    assert await services.content(APP, second) == await services.content(APP, first)
    copied = await services.status(APP, second)
    assert (copied.status, copied.duplicated_from) == (ServiceStatus.DRAFT, first)
    with pytest.raises(ServiceCommandRefused, match="only a RELEASED or ARCHIVED"):
        await operator.duplicate(APP, second)
    with pytest.raises(ServiceNotFound):
        await operator.duplicate(APP, second + 100)

    await operator.command(APP, second, "add_mini_program", {
        "section_id": "section-1", "mini_program_id": "ride-hailing"})
    await operator.command(APP, second, "test", {"testers": ["qa@example.com"]})
    await admin.command(APP, second, "release", {"percent": 5})
    during = await shown(catalog_db, APP)
    new_cohort = {user for user, version in during.items() if version == second}
    assert set(during.values()) == {first, second}, "the rest keep the released version"
    await admin.command(APP, second, "release", {"percent": 20})
    wider = {user for user, version in (await shown(catalog_db, APP)).items()
             if version == second}
    assert new_cohort < wider, "a user in the rollout at 5% stays in it at 20%"

    result = update(temporal_cli, mini_service_id(APP, second), "release", ADMIN,
                    {"percent": 100})
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
        await admin.command(APP, first, "revert", {})
    assert finished.value.status is ServiceStatus.ARCHIVED
    refused = update(temporal_cli, service, "revert", ADMIN, {})
    assert refused.returncode != 0


# --- a long-lived draft ----------------------------------------------------------------------


async def test_a_long_edited_draft_continues_as_new_without_losing_an_edit(
    operator: ActingServices, client: Client, catalog_db: asyncpg.Pool,
) -> None:
    super_app = await new_super_app(catalog_db)
    version = await operator.create(super_app)
    handle = client.get_workflow_handle(mini_service_id(super_app, version))
    first_run = (await handle.describe()).run_id
    await operator.command(super_app, version, "add_section", {"title": {"en": "Everything"}})
    # Batches of edits until the dev server (suggesting continue-as-new at 400 events) has the
    # version continue as new: some 60 edits (a section holds at most 100).
    programs: list[str] = []
    while len(programs) < 90 and (await handle.describe()).run_id == first_run:
        for program in [f"program-{n:03d}" for n in range(len(programs), len(programs) + 30)]:
            await operator.signal(super_app, version, "add_mini_program", {
                "section_id": "section-1", "mini_program_id": program})
            programs.append(program)

    status = await until_events(operator, super_app, version, 2 + len(programs))
    assert status["last_rejection"] is None
    assert (await handle.describe()).run_id != first_run
    content = await operator.content(super_app, version)
    assert content.sections[-1].mini_program_ids == programs
    events = await list_service_events(catalog_db, super_app, version)
    assert [e.seq for e in events] == list(range(1, 3 + len(programs)))
    assert all(e.accepted and e.actor == OPERATOR for e in events)


# --- starting ----------------------------------------------------------------------------


async def test_starting_a_number_again_is_one_version(
    services: ActingServices, operator: ActingServices, client: Client, worker: WorkerProcess,
    catalog_db: asyncpg.Pool,
) -> None:
    super_app = await new_super_app(catalog_db)
    version = await operator.create(super_app)
    handle = client.get_workflow_handle(mini_service_id(super_app, version))
    run = (await handle.describe()).run_id
    again = ServiceStart(super_app=super_app, version_no=version)
    await operator.start(again)
    assert (await handle.describe()).run_id == run
    assert (await services.status(super_app, version)).audit_count == 1

    await operator.command(super_app, version, "delete", {})
    with pytest.raises(ServiceFinished, match="DELETED"):
        await operator.start(again)
    # An unknown super app: nobody holds a role there to start a version of it.
    with pytest.raises(ServiceFailed, match=r"start refused: .* \(has no role\)"):
        await operator.start(ServiceStart(super_app=f"{super_app}-gone", version_no=1))
    with pytest.raises(CatalogNeeded):
        await ActingServices(client, None, worker.env["TEMPORAL_TASK_QUEUE"],
                             OPERATOR).create(super_app)


async def test_only_the_super_apps_service_roles_start_a_version(
    services: ActingServices, catalog_db: asyncpg.Pool,
) -> None:
    super_app = await new_super_app(catalog_db)
    with pytest.raises(ServiceFailed, match="start refused: "):
        await services.as_user("dev").create(super_app)  # a developer, but not of this page
    with pytest.raises(ServiceFailed, match=f"start refused: {ACTOR_MISMATCH}"):
        await services.as_user(OPERATOR).create(super_app, ADMIN)
    by_operator = await services.as_user(OPERATOR).create(super_app, OPERATOR)
    by_admin = await services.as_user(ADMIN).create(super_app)
    for version, user in ((by_operator, OPERATOR), (by_admin, ADMIN)):
        events = await list_service_events(catalog_db, super_app, version)
        assert [(e.command, e.actor) for e in events] == [("create", user)]
