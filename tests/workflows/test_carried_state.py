"""What runs in flight carried across continue-as-new before the ledger moved beside the state
(one flat state holding `audit`, `audit_count` and `last_rejection`) is read by today's code,
from the carried inputs of the recorded continue-as-new histories."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from mpr.domain.core.ledger import Carried, Ledger, read_carried
from mpr.domain.mini_service.models import MiniServiceState, ServiceAuditEntry
from mpr.domain.release.models import AuditEntry
from mpr.domain.release.state import ReleaseState

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
CONTINUED = [
    ("release_continue_as_new.run2.json", ReleaseState, AuditEntry),
    ("release_continue_as_new.run3.json", ReleaseState, AuditEntry),
    ("mini_service_continue_as_new.run2.json", MiniServiceState, ServiceAuditEntry),
]


def carried_input(name: str) -> dict[str, Any]:
    started = json.loads((HISTORIES / name).read_text())["events"][0]
    payload = started["workflowExecutionStartedEventAttributes"]["input"]["payloads"][1]
    value: dict[str, Any] = json.loads(base64.b64decode(payload["data"]))
    return value


@pytest.mark.parametrize(("name", "state_type", "entry_type"), CONTINUED)
def test_the_old_flat_shape_is_read_into_state_and_ledger(
    name: str, state_type: type[BaseModel], entry_type: type[BaseModel]
) -> None:
    raw = carried_input(name)
    assert "ledger" not in raw and raw["audit_count"] > 0, "the recording is of the old shape"
    carried = read_carried(raw, state_type, entry_type)
    assert carried.ledger.count == raw["audit_count"]
    assert [entry.model_dump(mode="json") for entry in carried.ledger.entries] == raw["audit"]
    rejection = carried.ledger.last_rejection
    assert (rejection.model_dump(mode="json") if rejection else None) == raw["last_rejection"]
    assert carried.state.model_dump(mode="json").items() <= raw.items(), (
        "every field of the state is taken as it was carried")


@pytest.mark.parametrize(("name", "state_type", "entry_type"), CONTINUED)
def test_the_new_shape_round_trips(
    name: str, state_type: type[BaseModel], entry_type: type[BaseModel]
) -> None:
    old = read_carried(carried_input(name), state_type, entry_type)
    again = read_carried(json.loads(old.model_dump_json()), state_type, entry_type)
    assert again == old
    assert isinstance(again, Carried) and isinstance(again.ledger, Ledger)
