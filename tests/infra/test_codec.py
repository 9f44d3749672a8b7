"""The payload codec: AES-256-GCM, key ids in metadata, rotation, plain payloads passed through,
and MPR_PAYLOAD_KEYS parsing. Keys are made here, at run time."""

import base64
import os
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent

from mpr.infra.codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    KeyRing,
    PayloadKeyError,
    main,
    new_key_entry,
    payloads_in,
)
from mpr.infra.settings import Settings
from mpr.infra.temporal import PAYLOAD_CONVERTER, data_converter

PERSONAL = {"actor": "adam", "user_ids": ["user-4711", "user-0815"]}


@pytest.fixture(autouse=True)
def no_stack_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's `make up` keys (.data/stack.env) must not leak into these tests."""
    monkeypatch.setattr("mpr.infra.settings.STACK_ENV_FILE", tmp_path / "stack.env")



def json_payload(value: object = PERSONAL) -> Payload:
    return PAYLOAD_CONVERTER.to_payloads([value])[0]


def codec(*key_ids: str) -> EncryptionCodec:
    """A codec with new random keys under these ids."""
    return EncryptionCodec(KeyRing.parse(",".join(new_key_entry(key_id) for key_id in key_ids)))


async def test_round_trip_hides_the_data_and_names_the_key() -> None:
    original = json_payload()
    ring = codec("k1")
    [encrypted] = await ring.encode([original])
    assert encrypted.metadata["encoding"] == ENCODING == b"binary/encrypted"
    assert encrypted.metadata[KEY_ID_METADATA] == b"k1"
    assert b"user-4711" not in encrypted.SerializeToString()
    assert b"json/plain" not in encrypted.SerializeToString(), "metadata is encrypted too"
    assert await ring.decode([encrypted]) == [original]


async def test_every_payload_gets_its_own_nonce() -> None:
    ring = codec("k1")
    first, second = await ring.encode([json_payload(), json_payload()])
    assert first.data != second.data
    assert first.data[:12] != second.data[:12]


async def test_rotation_old_payloads_still_decrypt() -> None:
    old, new = new_key_entry("2025-01"), new_key_entry("2026-01")
    before = EncryptionCodec(KeyRing.parse(old))
    [written_before] = await before.encode([json_payload()])

    rotated = EncryptionCodec(KeyRing.parse(f"{new},{old}"))
    [written_after] = await rotated.encode([json_payload()])

    assert written_after.metadata[KEY_ID_METADATA] == b"2026-01", "the first key encrypts"
    assert await rotated.decode([written_before, written_after]) == [json_payload()] * 2
    with pytest.raises(PayloadKeyError, match="'2026-01', which MPR_PAYLOAD_KEYS does not hold"):
        await before.decode([written_after])


async def test_unknown_key_id_is_named() -> None:
    [encrypted] = await codec("gone").encode([json_payload()])
    with pytest.raises(PayloadKeyError) as unknown:
        await codec("k2", "k3").decode([encrypted])
    assert "'gone'" in str(unknown.value) and "holds k2, k3" in str(unknown.value)


async def test_without_keys_plain_payloads_pass_and_encrypted_ones_are_refused() -> None:
    [encrypted] = await codec("k1").encode([json_payload()])
    no_keys = EncryptionCodec(KeyRing.parse(None))
    assert await no_keys.decode([json_payload()]) == [json_payload()]
    with pytest.raises(PayloadKeyError, match="key 'k1' but MPR_PAYLOAD_KEYS is not set"):
        await no_keys.decode([encrypted])
    with pytest.raises(PayloadKeyError, match="refusing to send payloads unencrypted"):
        await no_keys.encode([json_payload()])
    assert await no_keys.encode([]) == [], "a call without arguments sends nothing"


async def test_encryption_off_sends_plain_and_still_reads_encrypted() -> None:
    entry = new_key_entry("k1")
    [encrypted] = await EncryptionCodec(KeyRing.parse(entry)).encode([json_payload()])
    off = EncryptionCodec(KeyRing.parse(entry), encrypt=False)
    assert await off.encode([json_payload()]) == [json_payload()]
    assert await off.decode([encrypted]) == [json_payload()]


async def test_plain_json_passes_through() -> None:
    # What tctl and `temporal workflow signal --input` send.
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"actor": "adam"}')
    assert await codec("k1").decode([plain]) == [plain]


async def test_tampered_ciphertext_is_rejected() -> None:
    [encrypted] = await codec("k1").encode([json_payload()])
    with pytest.raises(PayloadKeyError, match="fails authentication"):
        await codec("k1").decode([encrypted])  # another key under the same id

    entry = new_key_entry("k1")
    right = EncryptionCodec(KeyRing.parse(entry))
    [encrypted] = await right.encode([json_payload()])
    flipped = bytearray(encrypted.data)
    flipped[-1] ^= 1
    tampered = Payload(metadata=dict(encrypted.metadata), data=bytes(flipped))
    with pytest.raises(PayloadKeyError, match="'k1' fails authentication"):
        await right.decode([tampered])
    truncated = Payload(metadata=dict(encrypted.metadata), data=encrypted.data[:5])
    with pytest.raises(PayloadKeyError, match="fails authentication"):
        await right.decode([truncated])


async def test_a_swapped_key_id_is_rejected() -> None:
    """The key id is the cipher's associated data: relabelling a payload breaks it, even when
    both ids name the same key bytes."""
    key = base64.b64encode(os.urandom(32)).decode()
    ring = EncryptionCodec(KeyRing.parse(f"a:{key},b:{key}"))
    [encrypted] = await ring.encode([json_payload()])
    relabelled = Payload(metadata={**encrypted.metadata, KEY_ID_METADATA: b"b"},
                         data=encrypted.data)
    with pytest.raises(PayloadKeyError, match="'b' fails authentication"):
        await ring.decode([relabelled])
    unlabelled = Payload(metadata={"encoding": ENCODING}, data=encrypted.data)
    with pytest.raises(PayloadKeyError, match="no encryption-key-id"):
        await ring.decode([unlabelled])


@pytest.mark.parametrize(("spec", "message"), [
    ("k1", "entry 1 is not key_id:base64_key"),
    (":" + base64.b64encode(os.urandom(32)).decode(), "entry 1 has an empty key id"),
    ("k 1:" + base64.b64encode(os.urandom(32)).decode(), "entry 1: a key id has 1 to 64"),
    ("k1:not*base64!", "entry 1 (key 'k1'): the key is not valid base64"),
    ("k1:" + base64.b64encode(os.urandom(16)).decode(), "16 bytes, AES-256 needs 32"),
    (f"{new_key_entry('k1')},{new_key_entry('k1')}", "entry 2: key id 'k1' is listed twice"),
    (" , ", "is set but lists no key"),
])
def test_malformed_keys_are_refused_without_echoing_them(spec: str, message: str) -> None:
    with pytest.raises(PayloadKeyError, match="MPR_PAYLOAD_KEYS") as refused:
        KeyRing.parse(spec)
    assert message in str(refused.value)
    secret = spec.partition(":")[2]
    if secret.strip(" ,"):
        assert secret not in str(refused.value)


def test_keys_parse_in_order_with_spaces_and_a_trailing_comma() -> None:
    ring = KeyRing.parse(f" {new_key_entry('new')} , {new_key_entry('old')},")
    assert ring.key_ids == ["new", "old"] and ring.primary == "new"
    assert not KeyRing.parse("") and not KeyRing.parse(None)


async def test_the_data_converter_encrypts_with_the_settings_keys() -> None:
    converter = data_converter(Settings.from_env({"MPR_PAYLOAD_KEYS": new_key_entry("k9")}))
    [payload] = await converter.encode([PERSONAL])
    assert payload.metadata[KEY_ID_METADATA] == b"k9"
    assert await converter.decode([payload]) == [PERSONAL]
    with pytest.raises(PayloadKeyError, match="not valid base64"):
        data_converter(Settings.from_env({"MPR_PAYLOAD_KEYS": "k1:???"}))


def test_payloads_in_finds_nested_payloads() -> None:
    event = HistoryEvent()
    signal = event.workflow_execution_signaled_event_attributes
    signal.input.payloads.extend([json_payload(), json_payload("x")])
    signal.header.fields["h"].CopyFrom(json_payload("header"))
    assert [PAYLOAD_CONVERTER.from_payloads([p])[0] for p in payloads_in(event)] == [
        PERSONAL, "x", "header"]


def test_new_key_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new-key", "2026-06"]) == 0
    printed = capsys.readouterr().out.strip()
    assert KeyRing.parse(printed).key_ids == ["2026-06"]
    assert main([]) == 2
    assert main(["new-key", "bad id"]) == 2
    assert "not a key id" in capsys.readouterr().err
