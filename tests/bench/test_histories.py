"""Reading what one update cost from a history: its activities, its workflow tasks, its span."""

from collections.abc import Iterator

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from bench.histories import (
    ACTIVITY_QUEUED,
    ACTIVITY_RUN,
    BETWEEN,
    LOCAL_ACTIVITY_MARKER,
    WORKFLOW_TASK_QUEUED,
    event_counts,
    last_update,
    summary,
    update_costs,
    workflow_task_run,
)

ET = EventType


class History:
    """Events with ids in order and times in milliseconds."""

    def __init__(self) -> None:
        self.events: list[HistoryEvent] = []

    def add(self, kind: "EventType.ValueType", at_ms: int) -> HistoryEvent:
        time = Timestamp()
        time.FromMicroseconds(at_ms * 1000)
        event = HistoryEvent(event_id=len(self.events) + 1, event_type=kind, event_time=time)
        self.events.append(event)
        return event

    def task(self, at_ms: int, queued: int, run: int) -> int:
        """A workflow task: scheduled at `at_ms`, started `queued` later, completed `run`
        after that; the time it completed."""
        self.add(ET.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, at_ms)
        self.add(ET.EVENT_TYPE_WORKFLOW_TASK_STARTED, at_ms + queued)
        self.add(ET.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, at_ms + queued + run)
        return at_ms + queued + run

    def accepted(self, at_ms: int, name: str, update_id: str) -> HistoryEvent:
        event = self.add(ET.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED, at_ms)
        attributes = event.workflow_execution_update_accepted_event_attributes
        attributes.protocol_instance_id = update_id
        attributes.accepted_request.input.name = name
        attributes.accepted_request.meta.update_id = update_id
        return event

    def completed(self, at_ms: int, accepted: HistoryEvent) -> None:
        event = self.add(ET.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED, at_ms)
        event.workflow_execution_update_completed_event_attributes.accepted_event_id = (
            accepted.event_id)

    def activity(self, at_ms: int, name: str, queued: int, run: int) -> int:
        scheduled = self.add(ET.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, at_ms)
        scheduled.activity_task_scheduled_event_attributes.activity_type.name = name
        self.add(ET.EVENT_TYPE_ACTIVITY_TASK_STARTED, at_ms + queued)
        done = self.add(ET.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, at_ms + queued + run)
        done.activity_task_completed_event_attributes.scheduled_event_id = scheduled.event_id
        return at_ms + queued + run

    def __iter__(self) -> Iterator[HistoryEvent]:
        return iter(self.events)


def release_command(history: History, at: int, update_id: str) -> None:
    """A command as a release runs it: accept, authenticate, write, answer."""
    done = history.task(at, queued=2, run=10)
    accepted = history.accepted(done, "update_config", update_id)
    done = history.activity(done, "authenticate_release_actor", queued=3, run=5)
    done = history.task(done + 1, queued=2, run=4)
    done = history.activity(done, "record_transition", queued=3, run=20)
    done = history.task(done + 1, queued=2, run=4)
    history.completed(done, accepted)


def test_a_release_command_costs_two_activities_and_three_workflow_tasks() -> None:
    history = History()
    history.task(0, queued=1, run=1)  # the start, before any update
    release_command(history, 100, "u-1")

    (cost,) = update_costs(history)

    assert cost.name == "update_config" and cost.update_id == "u-1"
    assert cost.activities == ("authenticate_release_actor", "record_transition")
    assert (cost.workflow_tasks, cost.local_activities) == (3, 0)
    assert cost.span_ms == pytest.approx(12 + 8 + 1 + 6 + 23 + 1 + 6)
    assert cost.segments[WORKFLOW_TASK_QUEUED] == pytest.approx(6)
    assert [cost.segments[workflow_task_run(n)] for n in (1, 2, 3)] == [10, 4, 4]
    assert "replay" in workflow_task_run(1) and "replay" not in workflow_task_run(2)
    assert cost.segments[ACTIVITY_QUEUED] == pytest.approx(6)
    assert cost.segments[ACTIVITY_RUN.format(name="authenticate_release_actor")] == 5
    assert cost.segments[ACTIVITY_RUN.format(name="record_transition")] == 20
    assert cost.segments[BETWEEN] == pytest.approx(2)
    assert sum(cost.segments.values()) == pytest.approx(cost.span_ms), "segments add up"


def test_a_floor_command_is_one_workflow_task_and_no_activity() -> None:
    history = History()
    history.task(0, queued=1, run=1)
    done = history.task(50, queued=3, run=2)
    accepted = history.accepted(done, "update_config", "f-1")
    history.completed(done, accepted)

    (cost,) = update_costs(history)

    assert (cost.activities, cost.workflow_tasks, cost.span_ms) == ((), 1, 5)
    assert summary([cost])["activity_types"] == ["none"]


def test_local_activities_count_as_such() -> None:
    history = History()
    done = history.task(0, queued=1, run=1)
    accepted = history.accepted(done, "update_config", "l-1")
    marker = history.add(ET.EVENT_TYPE_MARKER_RECORDED, done)
    marker.marker_recorded_event_attributes.marker_name = LOCAL_ACTIVITY_MARKER
    history.completed(done, accepted)

    (cost,) = update_costs(history)

    assert (cost.activities, cost.local_activities, cost.workflow_tasks) == ((), 1, 1)


def test_the_last_update_of_a_name_is_the_last_one_completed() -> None:
    history = History()
    release_command(history, 0, "first")
    release_command(history, 1000, "second")
    done = history.task(2000, queued=1, run=1)
    history.completed(done, history.accepted(done, "approve_review", "other"))

    assert [cost.update_id for cost in update_costs(history)] == ["first", "second", "other"]
    assert last_update(history, "update_config").update_id == "second"
    with pytest.raises(ValueError):
        last_update(history, "full_release")


def test_the_summary_gives_the_counts_seen_and_medians() -> None:
    history = History()
    release_command(history, 0, "a")
    release_command(history, 1000, "b")
    costs = update_costs(history)

    result = summary(costs)

    assert result["activities"] == [2] and result["workflow_tasks"] == [3]
    assert result["activity_types"] == ["authenticate_release_actor > record_transition"]
    assert result["median_span_ms"] == pytest.approx(costs[0].span_ms)
    with pytest.raises(ValueError):
        summary([])


def test_event_counts_of_a_whole_history() -> None:
    history = History()
    history.task(0, queued=1, run=1)
    release_command(history, 100, "a")

    assert event_counts(history) == {"events": len(history.events), "activities": 2,
                                     "local_activities": 0, "workflow_tasks": 4, "updates": 1}
