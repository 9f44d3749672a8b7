"""`mpr replay FILE`, the check before a deploy, without a server: it replays every workflow
type the worker runs, needs no payload keys for a history of plain payloads (replaying sends
nothing anywhere), and names the key an encrypted history needs when it is missing."""

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from mpr.cli.history import show_json
from mpr.infra.codec import EncryptionCodec, KeyRing, new_key_entry, payloads_in
from mpr.infra.exit_codes import FAILURE
from tests.mpr_runner import Mpr, mpr_runner
from workflows import worker_workflows

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
KEY_ID = "ops-2026"
# What the SDK sends through no payload codec: search attributes, headers, and the markers
# its core records itself (patches).
NOT_ENCODED = {"search_attributes", "header", "marker_recorded_event_attributes"}


@pytest.fixture
def offline_mpr(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                tmp_path: Path) -> Mpr:
    """`mpr` with no payload keys, no server and no stack.env."""
    for name in ("MPR_PAYLOAD_KEYS", "MPR_PAYLOAD_ENCRYPTION", "TEMPORAL_ADDRESS",
                 "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return mpr_runner({}, monkeypatch, capsys, tmp_path)


def event_count(path: Path) -> int:
    return len(json.loads(path.read_text())["events"])


@pytest.mark.parametrize("name", ["release_full.json", "mini_service_lifecycle.json"])
async def test_a_history_of_plain_payloads_replays_without_keys(offline_mpr: Mpr,
                                                                 name: str) -> None:
    path = HISTORIES / name
    run = await offline_mpr("replay", str(path))
    assert (run.code, run.out, run.err) == (
        0, f"deterministic: {event_count(path)} events replayed\n", "")


async def test_replay_knows_every_workflow_type_the_worker_runs(offline_mpr: Mpr,
                                                                tmp_path: Path) -> None:
    document = json.loads((HISTORIES / "mini_service_lifecycle.json").read_text())
    document["events"][0]["workflowExecutionStartedEventAttributes"]["workflowType"] = {
        "name": "Other"}
    other = tmp_path / "other.json"
    other.write_text(json.dumps(document))

    error = (await offline_mpr("replay", str(other))).error(FAILURE)
    assert f"is a history of Other, not {' or '.join(worker_workflows())}" in error
    assert {"MiniProgramRelease", "MiniServiceRelease"} <= set(worker_workflows())


@pytest.fixture
def encrypted_history(tmp_path: Path) -> tuple[Path, str]:
    """release_full.json as the server would hold it from a worker encrypting with KEY_ID;
    and that key's MPR_PAYLOAD_KEYS entry."""
    key = new_key_entry(KEY_ID)
    codec = EncryptionCodec(KeyRing.parse(key))
    history = WorkflowHistory.from_json("any", (HISTORIES / "release_full.json").read_text())
    encrypted = 0
    for event in history.events:
        for payload in payloads_in(event, skipping=NOT_ENCODED):
            payload.CopyFrom(codec.encrypt(payload))
            encrypted += 1
    assert encrypted, "no payload to encrypt"
    path = tmp_path / "release_full.encrypted.json"
    path.write_text(show_json(history.events))
    return path, key


async def test_an_encrypted_history_without_its_key_fails_naming_the_key(
    offline_mpr: Mpr, encrypted_history: tuple[Path, str]
) -> None:
    path, _ = encrypted_history
    error = (await offline_mpr("replay", str(path))).error(FAILURE)
    assert f"cannot replay {path}: " in error
    assert f"encrypted with key '{KEY_ID}' but MPR_PAYLOAD_KEYS is not set" in error


async def test_an_encrypted_history_with_other_keys_fails_naming_the_key(
    offline_mpr: Mpr, encrypted_history: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = encrypted_history
    monkeypatch.setenv("MPR_PAYLOAD_KEYS", new_key_entry("other"))
    error = (await offline_mpr("replay", str(path))).error(FAILURE)
    assert f"key '{KEY_ID}', which MPR_PAYLOAD_KEYS does not hold (it holds other)" in error


async def test_an_encrypted_history_replays_with_its_key(
    offline_mpr: Mpr, encrypted_history: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With keys, the replay runs the worker's own converter, codec included."""
    path, key = encrypted_history
    monkeypatch.setenv("MPR_PAYLOAD_KEYS", f"{new_key_entry('newer')},{key}")
    run = await offline_mpr("replay", str(path))
    assert (run.code, run.out) == (0, f"deterministic: {event_count(path)} events replayed\n"), \
        run.err
