"""MiniServiceRelease on the time-skipping test server, with in-memory catalog activities."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from mpr.domain.core.models import Role
from mpr.domain.mini_service.models import mini_service_id
from tests.stack import TEST_CONVERTER
from tests.workflows.driving import until_answering
from tests.workflows.mini_service_fakes import FakeServiceCatalog
from workflows.mini_service import MiniServiceRelease


@dataclass
class Services:
    client: Client
    task_queue: str
    super_app: str

    async def start(self, version_no: int, **extra: Any) -> WorkflowHandle[Any, Any]:
        request = {"super_app": self.super_app, "version_no": version_no, "created_by": "olly",
                   **extra}
        handle = await self.client.start_workflow(
            "MiniServiceRelease", request, id=mini_service_id(self.super_app, version_no),
            task_queue=self.task_queue)
        await until_answering(handle)
        return handle


@pytest.fixture
def catalog() -> FakeServiceCatalog:
    return FakeServiceCatalog(roles={"olly": {Role.SERVICE_OPERATOR},
                                     "ada": {Role.SERVICE_ADMIN}})


@pytest.fixture
async def services(env: WorkflowEnvironment,
                   catalog: FakeServiceCatalog) -> AsyncIterator[Services]:
    queue = f"service-test-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[MiniServiceRelease],
                      activities=catalog.activities):
        yield Services(env.client, queue, f"app{uuid.uuid4().hex[:6]}")


async def do(handle: WorkflowHandle[Any, Any], name: str, **payload: Any) -> dict[str, Any]:
    result: dict[str, Any] = await handle.execute_update(name, payload)
    return result


async def refused(handle: WorkflowHandle[Any, Any], name: str, **payload: Any) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update(name, payload)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "CommandRejected"
    return cause.message


async def test_draft_edited_tested_released(services: Services, catalog: FakeServiceCatalog):
    handle = await services.start(1)
    content = await handle.query("content")
    assert [s["section_id"] for s in content["sections"]] == [
        "carousel", "banner", "favorite", "recently-used"]

    await do(handle, "edit_title", actor="olly", title={
        "default_language": "en", "texts": {"en": "Services", "id": "Layanan"}})
    await do(handle, "add_section", actor="olly", title={"en": "Food", "id": "Makanan"},
             mini_program_ids=["coffee-shop", "noodle-bar"])
    await do(handle, "add_section", actor="olly", title={"en": "Travel"}, position=0)
    await do(handle, "add_mini_program", actor="olly", section_id="section-1",
             mini_program_id="tea-house", position=0)
    await do(handle, "move_mini_program", actor="olly", section_id="section-1",
             mini_program_id="noodle-bar", position=0)
    await do(handle, "remove_mini_program", actor="olly", section_id="section-1",
             mini_program_id="coffee-shop")
    await do(handle, "move_section", actor="olly", section_id="section-1", position=1)
    await do(handle, "edit_section", actor="olly", section_id="carousel",
             images=["https://cdn.example.com/a.png"])
    content = await handle.query("content")
    assert [s["section_id"] for s in content["sections"]] == [
        "section-2", "section-1", "carousel", "banner", "favorite", "recently-used"]
    assert content["sections"][1]["mini_program_ids"] == ["noodle-bar", "tea-house"]

    page = await handle.query("preview", {"language": "id"})
    assert page["title"] == "Layanan"
    assert [s["title"] for s in page["sections"][:2]] == ["Travel", "Makanan"]
    assert (await handle.query("preview", {"language": "fr"}))["title"] == "Services"

    status = await do(handle, "test", actor="olly", testers=["QA@example.com", "b@example.com"])
    assert (status["status"], status["testers"]) == ("TESTING", 2)
    assert "only a DRAFT can be edited" in await refused(
        handle, "add_section", actor="olly", title={"en": "X"})
    status = await do(handle, "retest", actor="olly", testers=["c@example.com"])
    assert status["testers"] == 1
    assert "needs service_admin" in await refused(handle, "release", actor="olly", percent=5)
    status = await do(handle, "release", actor="ada", percent=5)
    assert (status["status"], status["percent"]) == ("RELEASING", 5)
    assert "only increases" in await refused(handle, "release", actor="ada", percent=1)
    assert "not on" in await refused(handle, "release", actor="ada", percent=7)
    status = await do(handle, "release", actor="ada", percent=100)
    assert status["status"] == "RELEASED"
    assert catalog.transitions[-1].promote
    testers_event = next(t for t in catalog.transitions if t.event.command == "test")
    assert testers_event.event.payload == {"actor": "olly", "testers": "<2 testers>"}
    history = await handle.query("history")
    assert [(v["version_no"], v["status"]) for v in history["versions"]] == [(1, "RELEASED")]


async def test_releasing_a_new_version_archives_the_previous(services: Services):
    first = await services.start(1)
    await do(first, "test", actor="olly", testers=["qa@example.com"])
    await do(first, "release", actor="ada", percent=100)
    second = await services.start(2, content=await first.query("content"), duplicated_from=1)
    assert "not allowed in status DRAFT" in await refused(second, "release", actor="ada",
                                                          percent=100)
    await do(second, "test", actor="olly", testers=["qa@example.com"])
    await do(second, "release", actor="ada", percent=100)

    result = await first.result()
    assert result["status"] == "ARCHIVED"
    history = await second.query("history")
    assert [(v["version_no"], v["status"]) for v in history["versions"]] == [
        (2, "RELEASED"), (1, "ARCHIVED")]
    assert (await second.query("status"))["duplicated_from"] == 1


async def test_one_version_in_testing_at_a_time(services: Services):
    first, second = await services.start(1), await services.start(2)
    await do(first, "test", actor="olly", testers=["qa@example.com"])
    reason = await refused(second, "test", actor="olly", testers=["qa@example.com"])
    assert "version 1 of" in reason and "already TESTING" in reason
    assert (await second.query("status"))["status"] == "DRAFT"
    await do(first, "revert", actor="olly")
    status = await do(second, "test", actor="olly", testers=["qa@example.com"])
    assert status["status"] == "TESTING"


async def test_deleted_things_cannot_come_back(services: Services):
    handle = await services.start(1)
    await do(handle, "add_section", actor="olly", title={"en": "Food"},
             mini_program_ids=["coffee-shop"])
    await do(handle, "remove_mini_program", actor="olly", section_id="section-1",
             mini_program_id="coffee-shop")
    assert "cannot be brought back" in await refused(
        handle, "add_mini_program", actor="olly", section_id="section-1",
        mini_program_id="coffee-shop")
    await do(handle, "delete_section", actor="olly", section_id="section-1")
    assert "was deleted and cannot be brought back" in await refused(
        handle, "edit_section", actor="olly", section_id="section-1", title={"en": "Again"})
    assert "default sections" in await refused(handle, "delete_section", actor="olly",
                                               section_id="favorite")
    status = await do(handle, "add_section", actor="olly", title={"en": "Food"})
    assert status["sections"] == 5
    assert (await handle.query("content"))["sections"][-1]["section_id"] == "section-2"


async def test_refusals_and_malformed_signals_change_nothing(services: Services):
    handle = await services.start(1)
    before = await handle.query("content")
    assert "is not authorised" in await refused(handle, "edit_title", actor="stranger",
                                                title={"default_language": "en",
                                                       "texts": {"en": "Hacked"}})
    assert "is not an email address" in await refused(handle, "test", actor="olly",
                                                      testers=["not-an-email"])
    assert "not allowed in status DRAFT" in await refused(handle, "revert", actor="olly")
    await handle.signal("add_section", "garbage")
    await handle.signal("ad_section", {"actor": "olly"})
    await handle.signal("add_section", {"actor": "olly", "title": {"en": ""}})
    await do(handle, "edit_title", actor="olly", title={"default_language": "en",
                                                        "texts": {"en": "Services"}})
    after = await handle.query("content")
    assert after["sections"] == before["sections"]
    status = await handle.query("status")
    assert status["audit_count"] == 8
    assert status["last_rejection"]["command"] == "add_section"


async def test_delete_ends_a_draft(services: Services):
    handle = await services.start(1)
    status = await do(handle, "delete", actor="olly")
    assert status["status"] == "DELETED"
    assert (await handle.result())["status"] == "DELETED"


async def test_invalid_start_fails_cleanly(services: Services):
    handle = await services.client.start_workflow(
        "MiniServiceRelease", {"super_app": services.super_app, "version_no": 0,
                               "created_by": "olly"},
        id=f"mini-service:{services.super_app}:0", task_queue=services.task_queue)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "version_no" in str(failure.value.cause)


async def test_history_replays(services: Services):
    handle = await services.start(1)
    await do(handle, "add_section", actor="olly", title={"en": "Food"})
    await do(handle, "delete", actor="olly")
    await handle.result()
    replayer = Replayer(workflows=[MiniServiceRelease], data_converter=TEST_CONVERTER)
    await replayer.replay_workflow(await handle.fetch_history())
