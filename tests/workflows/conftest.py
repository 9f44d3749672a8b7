"""A worker per test running the release workflow with in-memory activities, on the
time-skipping server of the root conftest (`env`)."""

import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.workflows.driving import Releases
from tests.workflows.handover import Handover
from tests.workflows.release_fakes import MEMBERS, FakeCatalog
from workflows.release import MiniProgramRelease


@pytest.fixture
def catalog() -> FakeCatalog:
    return FakeCatalog(roles={user: set(roles) for user, roles in MEMBERS.items()})


@pytest.fixture
async def releases(env: WorkflowEnvironment, catalog: FakeCatalog) -> AsyncIterator[Releases]:
    queue = f"release-test-{uuid.uuid4()}"
    async with Worker(
        env.client, task_queue=queue, workflows=[MiniProgramRelease, Handover],
        activities=catalog.activities,
    ):
        yield Releases(env.client, queue)


