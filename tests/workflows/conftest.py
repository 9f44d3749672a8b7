"""A time-skipping Temporal test server shared by the workflow tests, and a worker per test
running the release workflow with in-memory activities."""

import shutil
import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.models import Role
from infra.temporal import DATA_CONVERTER, add_search_attributes, search_attribute_types
from tests.workflows.driving import Releases
from tests.workflows.fakes import FakeCatalog
from workflows.release import MiniProgramRelease

MEMBERS = {
    "dev": {Role.DEVELOPER},
    "owner": {Role.OWNER},
    "admin": {Role.ADMIN},
    "pa": {Role.PROGRAM_ADMIN},
    "platform-rev": {Role.PLATFORM_REVIEWER},
    "partner-rev": {Role.PARTNER_REVIEWER},
}


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    server = shutil.which("temporal-test-server") or ".venv/bin/temporal-test-server"
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER, test_server_existing_path=server
    )
    # The test server cannot list search attributes, only add them.
    await add_search_attributes(environment.client, list(search_attribute_types()))
    yield environment
    await environment.shutdown()


@pytest.fixture
def catalog() -> FakeCatalog:
    return FakeCatalog(roles={user: set(roles) for user, roles in MEMBERS.items()})


@pytest.fixture
async def releases(env: WorkflowEnvironment, catalog: FakeCatalog) -> AsyncIterator[Releases]:
    queue = f"release-test-{uuid.uuid4()}"
    async with Worker(
        env.client, task_queue=queue, workflows=[MiniProgramRelease],
        activities=catalog.activities,
    ):
        yield Releases(env.client, queue)


