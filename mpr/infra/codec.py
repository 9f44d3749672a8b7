"""Encryption of Temporal payloads: personal data (whitelisted user ids, tester emails,
reviewer comments) never reaches the Temporal server in plain text.

Keys come from MPR_PAYLOAD_KEYS, `key_id:base64(32 random bytes)` entries separated by commas.
The first key encrypts; every listed key decrypts, so a key is rotated by putting a new one
first and keeping the old ones until no open release has payloads encrypted with them.

Each payload is encrypted whole (data and metadata, serialized) with AES-256-GCM under a fresh
random 96-bit nonce; the result's metadata says `encoding: binary/encrypted` and names the key
(`encryption-key-id`), which is also the cipher's associated data, so a payload cannot be
passed off as encrypted with another key. Payloads that are not `binary/encrypted` are passed
through on decode: plain JSON sent by tctl or `temporal workflow signal` still works.

    python -m mpr.infra.codec new-key KEY_ID    # prints a new MPR_PAYLOAD_KEYS entry
"""

import base64
import binascii
import os
import re
import sys
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import CompositePayloadConverter, EncodingPayloadConverter, PayloadCodec

from mpr.domain.core.commands import Undecryptable
from mpr.infra.exit_codes import OK, USAGE
from mpr.infra.logging import get_logger

log = get_logger(__name__)

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEYS_VARIABLE = "MPR_PAYLOAD_KEYS"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96 bits, as GCM is designed for
# Key ids travel in payload metadata and error messages: a plain, bounded alphabet.
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class PayloadKeyError(ValueError):
    """MPR_PAYLOAD_KEYS is malformed, or lacks the key a payload needs. Messages name key ids,
    never key material."""


class KeyRing:
    """The payload keys, in order: the first encrypts, all decrypt."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}
        self.key_ids = [key_id for key_id, _ in keys]

    @classmethod
    def parse(cls, spec: str | None) -> "KeyRing":
        """The keys of an MPR_PAYLOAD_KEYS value; None or blank is an empty ring."""
        if not spec or not spec.strip():
            return cls([])
        keys: list[tuple[str, bytes]] = []
        entries = [entry.strip() for entry in spec.split(",")]
        for number, entry in enumerate(entries, start=1):
            if not entry:
                continue  # a trailing comma, say
            keys.append(_parse_entry(number, entry, {key_id for key_id, _ in keys}))
        if not keys:
            raise PayloadKeyError(f"{KEYS_VARIABLE} is set but lists no key")
        return cls(keys)

    def __bool__(self) -> bool:
        return bool(self.key_ids)

    @property
    def primary(self) -> str:
        return self.key_ids[0]

    def cipher(self, key_id: str) -> AESGCM:
        found = self._ciphers.get(key_id)
        if found is not None:
            return found
        if not self:
            raise PayloadKeyError(
                f"a payload is encrypted with key {key_id!r} but {KEYS_VARIABLE} is not set: "
                "export the payload keys to read it (see docs/security.md)"
            )
        raise PayloadKeyError(
            f"a payload is encrypted with key {key_id!r}, which {KEYS_VARIABLE} does not hold "
            f"(it holds {', '.join(self.key_ids)}): add that key back to read it"
        )


def _parse_entry(number: int, entry: str, seen: set[str]) -> tuple[str, bytes]:
    # Messages name the entry by position and key id only: the entry holds the key.
    where = f"{KEYS_VARIABLE} entry {number}"
    key_id, sep, encoded = entry.partition(":")
    key_id = key_id.strip()
    if not sep:
        raise PayloadKeyError(f"{where} is not key_id:base64_key")
    if not key_id:
        raise PayloadKeyError(f"{where} has an empty key id")
    if not KEY_ID.match(key_id):
        raise PayloadKeyError(f"{where}: a key id has 1 to 64 letters, digits, '.', '_' or '-'")
    if key_id in seen:
        raise PayloadKeyError(f"{where}: key id {key_id!r} is listed twice")
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise PayloadKeyError(f"{where} (key {key_id!r}): the key is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise PayloadKeyError(
            f"{where} (key {key_id!r}): the key is {len(key)} bytes, AES-256 needs {KEY_BYTES}"
        )
    return key_id, key


def new_key_entry(key_id: str) -> str:
    """A new MPR_PAYLOAD_KEYS entry: `key_id:` and 32 random bytes in base64."""
    if not KEY_ID.match(key_id):
        raise PayloadKeyError(f"{key_id!r} is not a key id (1 to 64 of A-Z a-z 0-9 . _ -)")
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads. With `encrypt=False` (MPR_PAYLOAD_ENCRYPTION=off)
    payloads go out as they are, and encrypted ones are still read with the keys at hand.

    `pass_undecryptable` is the worker's: a payload it cannot decrypt (unknown key, altered)
    is handed on still encrypted instead of failing the whole workflow task, and
    `WorkerPayloadConverter` turns it into `Undecryptable`. A command sent that way becomes a
    recorded refusal instead of wedging its workflow; the workflow's own state and activity
    results still fail loudly, since their types do not admit it. Everywhere else (clients,
    the replayer) such a payload is an error naming the key."""

    def __init__(self, keys: KeyRing, *, encrypt: bool = True,
                 pass_undecryptable: bool = False) -> None:
        super().__init__()
        self.keys = keys
        self.encrypts = encrypt
        self.passes_undecryptable = pass_undecryptable

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.encrypt_all(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.decrypt_all(payloads)

    def encrypt_all(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    def decrypt_all(self, payloads: Iterable[Payload]) -> list[Payload]:
        if self.passes_undecryptable:
            return [self._decrypt_or_pass(payload) for payload in payloads]
        return [self.decrypt(payload) for payload in payloads]

    def _decrypt_or_pass(self, payload: Payload) -> Payload:
        try:
            return self.decrypt(payload)
        except PayloadKeyError as error:
            log.warning("payload not decrypted: handed on for the workflow to refuse",
                        reason=str(error))
            return payload

    def encrypt(self, payload: Payload) -> Payload:
        if not self.encrypts:
            return payload
        if not self.keys:
            raise PayloadKeyError(
                f"{KEYS_VARIABLE} is not set: refusing to send payloads unencrypted (export "
                "the payload keys, or MPR_PAYLOAD_ENCRYPTION=off to run without encryption)"
            )
        key_id = self.keys.primary
        nonce = os.urandom(NONCE_BYTES)
        sealed = self.keys.cipher(key_id).encrypt(
            nonce, payload.SerializeToString(), key_id.encode()
        )
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        if not key_id:
            raise PayloadKeyError(f"an encrypted payload has no {KEY_ID_METADATA}")
        cipher = self.keys.cipher(key_id)
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, key_id.encode())
        except (InvalidTag, ValueError):
            raise PayloadKeyError(
                f"a payload encrypted with key {key_id!r} fails authentication: it was altered "
                "or its key id was changed"
            ) from None
        return Payload.FromString(plain)


class UndecryptablePayloadConverter(EncodingPayloadConverter):
    """Reads a payload the worker's codec could not decrypt as `Undecryptable` where any
    value is expected (a command's or start's raw arguments); where a type is expected (the
    carried state, activity results) it stays an error."""

    @property
    def encoding(self) -> str:
        return ENCODING.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return None  # never writes: only the codec encrypts

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace") or None
        undecryptable = Undecryptable(key_id)
        if type_hint is None or type_hint is Any:
            return undecryptable
        raise PayloadKeyError(undecryptable.reason("a payload"))


class WorkerPayloadConverter(PydanticPayloadConverter):
    """The worker's payload converter: pydantic JSON, and `UndecryptablePayloadConverter`."""

    def __init__(self) -> None:
        super().__init__()
        CompositePayloadConverter.__init__(
            self, *self.converters.values(), UndecryptablePayloadConverter())


def payloads_in(
    message: Message, skipping: Collection[str] = ()
) -> Iterator[Payload]:
    """Every Payload inside a protobuf message (a history event, say), depth first, but for
    those under a field named in `skipping`."""
    for field, value in message.ListFields():
        if field.message_type is None or field.name in skipping:
            continue
        if field.message_type.GetOptions().map_entry:
            items = list(value.values())
        elif field.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            if isinstance(item, Payload):
                yield item
            elif isinstance(item, Message):
                yield from payloads_in(item, skipping)


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] != "new-key" or len(argv) > 2:
        print("usage: python -m mpr.infra.codec new-key [KEY_ID]", file=sys.stderr)
        return USAGE
    key_id = argv[1] if len(argv) == 2 else datetime.now(UTC).strftime("key-%Y%m%d")
    try:
        print(new_key_entry(key_id))
    except PayloadKeyError as error:
        print(error, file=sys.stderr)
        return USAGE
    return OK


if __name__ == "__main__":
    # Here, not at the top: infra.entrypoint imports this module.
    from mpr.infra.entrypoint import run_and_exit

    run_and_exit(lambda: main(sys.argv[1:]))
