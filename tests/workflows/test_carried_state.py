"""What a run hands to the next through continue-as-new, read from the carried inputs of the
recorded continue-as-new histories: today's code reads what earlier workers carried (one flat
object holding `audit`, `audit_count` and `last_rejection` beside the state's fields), and
hands over exactly that shape, so that a worker of the previous version reads it too."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from mpr.domain.channel.models import ChannelAuditEntry
from mpr.domain.channel.state import ChannelWorkflowState
from mpr.domain.core.ledger import Carried
from mpr.domain.mini_service.models import ServiceAuditEntry
from mpr.domain.mini_service.state import MiniServiceState
from mpr.domain.release.models import AuditEntry
from mpr.domain.release.state import ReleaseState

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
CONTINUED = [
    ("release_continue_as_new.run2.json", ReleaseState, AuditEntry),
    ("release_continue_as_new.run3.json", ReleaseState, AuditEntry),
    ("mini_service_continue_as_new.run2.json", MiniServiceState, ServiceAuditEntry),
    ("channel_continue_as_new.run2.json", ChannelWorkflowState, ChannelAuditEntry),
]


def carried_input(name: str) -> dict[str, Any]:
    started = json.loads((HISTORIES / name).read_text())["events"][0]
    payload = started["workflowExecutionStartedEventAttributes"]["input"]["payloads"][1]
    value: dict[str, Any] = json.loads(base64.b64decode(payload["data"]))
    return value


@pytest.mark.parametrize(("name", "state_type", "entry_type"), CONTINUED)
def test_what_earlier_workers_carried_is_read_into_state_and_ledger(
    name: str, state_type: type[BaseModel], entry_type: type[BaseModel]
) -> None:
    raw = carried_input(name)
    assert raw["audit_count"] > 0 and raw["audit"], "the recording carries a ledger"
    carried = Carried.read(raw, state_type, entry_type)
    assert carried.ledger.count == raw["audit_count"]
    assert [entry.model_dump(mode="json") for entry in carried.ledger.entries] == raw["audit"]
    rejection = carried.ledger.last_rejection
    assert (rejection.model_dump(mode="json") if rejection else None) == raw["last_rejection"]
    assert carried.state == state_type.model_validate(raw)


@pytest.mark.parametrize(("name", "state_type", "entry_type"), CONTINUED)
def test_what_this_worker_carries_is_what_earlier_workers_read(
    name: str, state_type: type[BaseModel], entry_type: type[BaseModel]
) -> None:
    """Byte for byte the shape of the recording: no field more, none less, none renamed."""
    raw = carried_input(name)
    assert Carried.read(raw, state_type, entry_type).payload() == raw
