"""What one update costs in a workflow, read from its history: the activities it scheduled, the
workflow tasks it took, and where its time went between the server's events.

An update's span runs from the workflow task that accepted it (its WorkflowTaskScheduled event)
to its WorkflowExecutionUpdateCompleted event. Everything scheduled and every workflow task
completed in between is counted against it, so the workflow must run one update at a time and
nothing else meanwhile (a parked release or floor does; the benchmarks send one command at a
time to a workflow).
"""

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

LOCAL_ACTIVITY_MARKER = "core_local_activity"
"""The marker the SDK records for a local activity (no ActivityTaskScheduled event)."""

# Segment names: the gap between two consecutive events of an update's span, by their kinds.
WORKFLOW_TASK_QUEUED = "workflow task: scheduled to started (matching, dispatch)"
WORKFLOW_TASK_RUN = "workflow task {n}: started to completed (worker{what})"
"""The first is the one that accepts the update: it replays the history first if the workflow
is not in the worker's cache."""
ACTIVITY_QUEUED = "activity: scheduled to started (matching, dispatch)"
ACTIVITY_RUN = "activity: started to completed (worker: {name})"
BETWEEN = "between events (server: recording, transferring)"

_ET = EventType
_SEGMENT_OF: dict[tuple[int, int], str] = {
    (_ET.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, _ET.EVENT_TYPE_WORKFLOW_TASK_STARTED):
        WORKFLOW_TASK_QUEUED,
    (_ET.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, _ET.EVENT_TYPE_ACTIVITY_TASK_STARTED):
        ACTIVITY_QUEUED,
}


def workflow_task_run(n: int) -> str:
    """The segment name of the update's `n`th workflow task's run on the worker."""
    return WORKFLOW_TASK_RUN.format(
        n=n, what=": replay if evicted, handler" if n == 1 else "")


@dataclass(frozen=True)
class UpdateCost:
    name: str
    update_id: str
    activities: tuple[str, ...]
    """The activity types it scheduled, in order."""
    local_activities: int
    workflow_tasks: int
    """Workflow tasks completed, from the one that accepted it to the one that completed it."""
    span_ms: float
    """From the accepting workflow task's scheduling to the update's completion."""
    segments: dict[str, float] = field(default_factory=dict)
    """Milliseconds of the span, by segment (they add up to span_ms)."""


def _ms(event: HistoryEvent) -> float:
    return event.event_time.ToMicroseconds() / 1000


@dataclass
class _Open:
    name: str
    update_id: str
    start: HistoryEvent
    previous: HistoryEvent
    activities: list[str]
    local_activities: int = 0
    segments: dict[str, float] = field(default_factory=dict)
    scheduled: dict[int, str] = field(default_factory=dict)
    """Activity type by the event id of its ActivityTaskScheduled event."""
    workflow_tasks: int = 0
    """Workflow tasks run (started, then completed) so far, the accepting one first."""

    def step(self, event: HistoryEvent) -> None:
        label = _SEGMENT_OF.get((self.previous.event_type, event.event_type))
        if (self.previous.event_type == _ET.EVENT_TYPE_WORKFLOW_TASK_STARTED
                and event.event_type == _ET.EVENT_TYPE_WORKFLOW_TASK_COMPLETED):
            self.workflow_tasks += 1
            label = workflow_task_run(self.workflow_tasks)
        if label is None and event.event_type in (_ET.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
                                                  _ET.EVENT_TYPE_ACTIVITY_TASK_FAILED):
            scheduled_id = (
                event.activity_task_completed_event_attributes.scheduled_event_id
                if event.event_type == _ET.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
                else event.activity_task_failed_event_attributes.scheduled_event_id)
            if self.previous.event_type == _ET.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                label = ACTIVITY_RUN.format(name=self.scheduled.get(scheduled_id, "?"))
        label = label or BETWEEN
        self.segments[label] = self.segments.get(label, 0.0) + _ms(event) - _ms(self.previous)
        self.previous = event


def update_costs(events: Iterable[HistoryEvent]) -> list[UpdateCost]:
    """Every completed update of a history, in the order they completed."""
    costs: list[UpdateCost] = []
    opened: dict[int, _Open] = {}
    # The current workflow task's events: the one that accepts an update starts its span.
    task: list[HistoryEvent] = []
    for event in events:
        kind = event.event_type
        if kind == _ET.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            task = [event]
        elif kind in (_ET.EVENT_TYPE_WORKFLOW_TASK_STARTED, _ET.EVENT_TYPE_WORKFLOW_TASK_COMPLETED):
            task.append(event)
        for update in opened.values():
            update.step(event)
            if kind == _ET.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                update.activities.append(name)
                update.scheduled[event.event_id] = name
            elif (kind == _ET.EVENT_TYPE_MARKER_RECORDED
                  and event.marker_recorded_event_attributes.marker_name
                  == LOCAL_ACTIVITY_MARKER):
                update.local_activities += 1
        if kind == _ET.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            accepted = event.workflow_execution_update_accepted_event_attributes
            start = task[0] if task else event
            update = _Open(name=accepted.accepted_request.input.name,
                           update_id=accepted.protocol_instance_id, start=start, previous=start,
                           activities=[])
            for earlier in [*task[1:], event]:
                update.step(earlier)
            opened[event.event_id] = update
        elif kind == _ET.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            done = opened.pop(
                event.workflow_execution_update_completed_event_attributes.accepted_event_id,
                None)
            if done is None:
                continue
            costs.append(UpdateCost(
                name=done.name, update_id=done.update_id, activities=tuple(done.activities),
                local_activities=done.local_activities, workflow_tasks=done.workflow_tasks,
                span_ms=_ms(event) - _ms(done.start), segments=dict(done.segments)))
    return costs


def last_update(events: Iterable[HistoryEvent], name: str) -> UpdateCost:
    """The last completed update named `name` (ValueError when there is none)."""
    matching = [cost for cost in update_costs(events) if cost.name == name]
    if not matching:
        raise ValueError(f"no completed update {name!r} in the history")
    return matching[-1]


def summary(costs: Sequence[UpdateCost]) -> dict[str, object]:
    """What the costs of several updates of one kind have in common, and their typical span:
    the counts (the set of distinct values: one value when every update cost the same), the
    median span and the median of each segment."""
    if not costs:
        raise ValueError("no updates")
    labels = sorted({label for cost in costs for label in cost.segments})
    return {
        "updates": len(costs),
        "activities": sorted({len(cost.activities) for cost in costs}),
        "activity_types": sorted({" > ".join(cost.activities) or "none" for cost in costs}),
        "local_activities": sorted({cost.local_activities for cost in costs}),
        "workflow_tasks": sorted({cost.workflow_tasks for cost in costs}),
        "median_span_ms": statistics.median(cost.span_ms for cost in costs),
        "median_segment_ms": {
            label: statistics.median(cost.segments.get(label, 0.0) for cost in costs)
            for label in labels
        },
    }


def event_counts(events: Iterable[HistoryEvent]) -> dict[str, int]:
    """How many of each kind of event a whole history holds (the activity and workflow task
    counts of a whole lifecycle)."""
    counts: dict[str, int] = {"events": 0, "activities": 0, "local_activities": 0,
                              "workflow_tasks": 0, "updates": 0}
    for event in events:
        counts["events"] += 1
        kind = event.event_type
        if kind == _ET.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            counts["activities"] += 1
        elif kind == _ET.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            counts["workflow_tasks"] += 1
        elif kind == _ET.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            counts["updates"] += 1
        elif (kind == _ET.EVENT_TYPE_MARKER_RECORDED
              and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER):
            counts["local_activities"] += 1
    return counts
