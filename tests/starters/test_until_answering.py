"""start_release waits until the new release answers `status`: what counts as not yet."""

from types import SimpleNamespace
from typing import Any, cast

import pytest
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from starters.releases import until_answering
from workflows.release import STILL_STARTING


class FakeHandle:
    """Answers queries from a script: an exception to raise, or a value to return."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.queries = 0

    async def query(self, name: str) -> Any:
        assert name == "status"
        self.queries += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def describe(self) -> Any:
        return SimpleNamespace(status=WorkflowExecutionStatus.RUNNING)


def handle(fake: FakeHandle) -> WorkflowHandle[Any, Any]:
    return cast(WorkflowHandle[Any, Any], fake)


async def test_a_query_no_worker_answered_in_time_is_asked_again() -> None:
    fake = FakeHandle(RPCError("Timeout expired", RPCStatusCode.CANCELLED, b""),
                      RPCError("deadline", RPCStatusCode.DEADLINE_EXCEEDED, b""),
                      {"stage": "BUILDING"})
    await until_answering(handle(fake))
    assert fake.queries == 3


async def test_other_server_errors_are_not_hidden() -> None:
    fake = FakeHandle(RPCError("no such workflow", RPCStatusCode.NOT_FOUND, b""))
    with pytest.raises(RPCError, match="no such workflow"):
        await until_answering(handle(fake))


async def test_a_release_still_starting_is_asked_again() -> None:
    starting = WorkflowQueryFailedError(STILL_STARTING)
    fake = FakeHandle(starting, {"stage": "BUILDING"})
    await until_answering(handle(fake))
    assert fake.queries == 2


async def test_the_wait_is_bounded() -> None:
    fake = FakeHandle(*[RPCError("Timeout expired", RPCStatusCode.CANCELLED, b"")] * 1000)
    await until_answering(handle(fake), within=0.2)
    assert 1 <= fake.queries < 1000
