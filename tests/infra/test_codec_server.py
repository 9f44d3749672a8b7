"""The codec server over real HTTP on a free port: Temporal's remote codec protocol, CORS for the
Web UI, the bearer token, and clear refusals."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict, ParseDict
from temporalio.api.common.v1 import Payload, Payloads

from mpr.infra.codec import PayloadKeyError, new_key_entry
from mpr.infra.codec_server import CodecServer, build_server
from mpr.infra.servers import free_port, port_in_use
from mpr.infra.settings import Settings
from mpr.infra.temporal import PAYLOAD_CONVERTER

UI = "http://localhost:8233"
TOKEN = "s3cret-token"
PERSONAL = {"actor": "adam", "testers": ["qa@example.com"]}


@pytest.fixture(autouse=True)
def no_stack_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's `make up` keys (.data/stack.env) must not leak into these tests."""
    monkeypatch.setattr("mpr.infra.settings.STACK_ENV_FILE", tmp_path / "stack.env")



def start(env: dict[str, str]) -> CodecServer:
    settings = Settings.from_env({"MPR_CODEC_SERVER_ADDRESS": "127.0.0.1:0", **env})
    server = build_server(settings)
    # A short poll interval: shutdown() waits for the next poll.
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
def keys() -> str:
    return new_key_entry("k1")


@pytest.fixture
def server(keys: str) -> Iterator[CodecServer]:
    running = start({"MPR_PAYLOAD_KEYS": keys, "MPR_CODEC_CORS_ORIGINS": f"{UI}/"})
    yield running
    running.shutdown()
    running.server_close()


def call(server: CodecServer, path: str, body: Any = None, *, method: str = "POST",
         headers: dict[str, str] | None = None, raw: bytes | None = None,
         ) -> tuple[int, dict[str, str], str]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        server.url + path, data=data, method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def wire(*values: Any) -> dict[str, Any]:
    """Payloads as the Web UI and the `temporal` CLI send them: protobuf JSON."""
    return MessageToDict(Payloads(payloads=PAYLOAD_CONVERTER.to_payloads(list(values))))


def values(body: str) -> list[Any]:
    return PAYLOAD_CONVERTER.from_payloads(list(ParseDict(json.loads(body), Payloads()).payloads))


def test_encode_then_decode(server: CodecServer) -> None:
    status, headers, encoded = call(server, "/encode", wire(PERSONAL, "second"))
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert "qa@example.com" not in encoded
    payloads = json.loads(encoded)["payloads"]
    assert len(payloads) == 2
    assert {p["metadata"]["encoding"] for p in payloads} == {"YmluYXJ5L2VuY3J5cHRlZA=="}

    status, headers, decoded = call(server, "/decode", json.loads(encoded))
    assert status == 200 and values(decoded) == [PERSONAL, "second"]
    assert headers["Cache-Control"] == "no-store"


def test_a_namespace_prefix_and_plain_payloads_are_accepted(server: CodecServer) -> None:
    status, _, encoded = call(server, "/default/encode", wire(PERSONAL))
    assert status == 200
    mixed = {"payloads": [*json.loads(encoded)["payloads"], *wire("plain")["payloads"]]}
    status, _, decoded = call(server, "/default/decode", mixed,
                              headers={"X-Namespace": "default"})
    assert status == 200 and values(decoded) == [PERSONAL, "plain"]
    assert call(server, "/decode", {"payloads": []})[2] == "{}", "no payloads, none back"


def test_cors_preflight_for_the_web_ui(server: CodecServer) -> None:
    status, headers, _ = call(server, "/decode", method="OPTIONS", headers={
        "Origin": UI, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace,authorization"})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == UI
    assert set(headers["Access-Control-Allow-Headers"].replace(" ", "").split(",")) == {
        "content-type", "x-namespace", "authorization"}
    assert "POST" in headers["Access-Control-Allow-Methods"]

    status, _, decoded = call(server, "/decode", wire("x"), headers={"Origin": UI})
    assert status == 200 and values(decoded) == ["x"]


def test_other_origins_are_refused(server: CodecServer) -> None:
    evil = "https://evil.example"
    status, headers, _ = call(server, "/decode", method="OPTIONS", headers={"Origin": evil})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    status, headers, message = call(server, "/decode", wire("x"), headers={"Origin": evil})
    assert status == 403 and "not allowed" in message
    assert "Access-Control-Allow-Origin" not in headers


def test_the_token_is_required_when_set(keys: str) -> None:
    server = start({"MPR_PAYLOAD_KEYS": keys, "MPR_CODEC_SERVER_TOKEN": TOKEN})
    try:
        _, _, encoded = call(server, "/encode", wire(PERSONAL),
                             headers={"Authorization": f"Bearer {TOKEN}"})
        for refused in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                        {"Authorization": f"Basic {TOKEN}"}):
            status, headers, message = call(server, "/decode", json.loads(encoded),
                                            headers=refused)
            assert status == 401, refused
            assert headers["WWW-Authenticate"] == "Bearer" and "--codec-auth" in message
            assert "qa@example.com" not in message
        status, _, decoded = call(server, "/decode", json.loads(encoded),
                                  headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and values(decoded) == [PERSONAL]
        # A browser's preflight carries no credentials.
        assert call(server, "/decode", method="OPTIONS")[0] == 204
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("body", [
    b"not json", b'{"payloads": "x"}', b'{"payloads": [{"data": 5}]}', b"[1]",
    b'{"payload": []}', b"\xff\xfe",
])
def test_a_malformed_body_is_400_with_a_clear_message(server: CodecServer, body: bytes) -> None:
    status, _, message = call(server, "/decode", raw=body)
    assert status == 400, message
    assert message.startswith('malformed body: expected {"payloads": [')


def test_a_payload_of_an_unknown_key_is_422_naming_it(server: CodecServer) -> None:
    other = start({"MPR_PAYLOAD_KEYS": new_key_entry("k0")})
    try:
        _, _, encoded = call(other, "/encode", wire(PERSONAL))
    finally:
        other.shutdown()
        other.server_close()
    status, _, message = call(server, "/decode", json.loads(encoded))
    assert status == 422 and "'k0'" in message and "holds k1" in message


def test_unknown_paths_and_methods(server: CodecServer) -> None:
    assert call(server, "/decrypt", wire("x"))[0] == 404
    assert call(server, "/a/b/decode", wire("x"))[0] == 404
    assert call(server, "/decode", method="GET")[0] == 501


def test_no_keys_no_server() -> None:
    with pytest.raises(PayloadKeyError, match="needs MPR_PAYLOAD_KEYS"):
        build_server(Settings.from_env({"MPR_CODEC_SERVER_ADDRESS": "127.0.0.1:0"}))


def test_encode_encrypts_even_where_encryption_is_off(keys: str) -> None:
    server = start({"MPR_PAYLOAD_KEYS": keys, "MPR_PAYLOAD_ENCRYPTION": "off"})
    try:
        _, _, encoded = call(server, "/encode", wire(PERSONAL))
    finally:
        server.shutdown()
        server.server_close()
    [payload] = ParseDict(json.loads(encoded), Payloads()).payloads
    assert isinstance(payload, Payload) and payload.metadata["encoding"] == b"binary/encrypted"


def run_mpr_codec_server(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mpr.cli.main", "codec-server", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_mpr_codec_server(keys: str, tmp_path: Path) -> None:
    env = {**os.environ, "MPR_DATA_DIR": str(tmp_path), "MPR_PAYLOAD_KEYS": keys}
    port = free_port()
    process = run_mpr_codec_server(env, "--address", f"127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while not port_in_use(port):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr
            time.sleep(0.05)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/encode", method="POST",
                                         data=json.dumps(wire(PERSONAL)).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            assert "qa@example.com" not in response.read().decode()
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130, "Ctrl-C"

    env.pop("MPR_PAYLOAD_KEYS")
    without_keys = run_mpr_codec_server(env)
    _, err = without_keys.communicate(timeout=30)
    assert without_keys.returncode == 1 and "needs MPR_PAYLOAD_KEYS" in err
