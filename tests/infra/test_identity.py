"""The identity verifier (mpr.infra.identity), its key sources and its settings."""

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from activities.identity import Authenticator
from mpr.domain.core.identity import IdentityCheck
from mpr.infra.dev_issuer import DevIssuer
from mpr.infra.identity import (
    NO_TOKEN,
    IdentityRefused,
    IdentityVerifier,
    JwksFile,
    JwksUrl,
    KeysUnavailable,
    verifier_from,
)
from mpr.infra.settings import Settings, SettingsError
from tests.identity import ISSUER, verifier


def at(seconds_from_now: float = 0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds_from_now)


async def test_a_valid_token_names_its_subject() -> None:
    assert await verifier().subject(ISSUER.token("alice"), at()) == "alice"


async def test_the_subject_comes_from_the_configured_claim() -> None:
    by_email = IdentityVerifier(issuer=ISSUER.issuer, audience=ISSUER.audience,
                                keys=JwksFile(ISSUER.jwks_file), subject_claim="email",
                                leeway_seconds=0)
    token = ISSUER.token("alice", email="alice@example.com")
    assert await by_email.subject(token, at()) == "alice@example.com"
    with pytest.raises(IdentityRefused, match="has no email claim"):
        await by_email.subject(ISSUER.token("bob"), at())


async def test_expiry_is_judged_at_the_time_the_command_was_received() -> None:
    """A command sent with a valid token during an outage stays valid when its activity
    runs hours later; one received after expiry is refused, with the leeway's grace."""
    issued = time.time() - 3 * 3600
    token = ISSUER.token("alice", now=issued, lifetime_seconds=3600)
    received_in_time = datetime.fromtimestamp(issued + 1800, UTC)
    assert await verifier().subject(token, received_in_time) == "alice"
    within_leeway = datetime.fromtimestamp(issued + 3600 + 30, UTC)
    assert await verifier().subject(token, within_leeway) == "alice"
    with pytest.raises(IdentityRefused, match="had expired when the command arrived"):
        await verifier().subject(token, datetime.fromtimestamp(issued + 3600 + 120, UTC))


async def test_a_token_not_yet_valid_when_received_is_refused() -> None:
    token = ISSUER.token("alice", nbf=int(time.time()) + 600)
    with pytest.raises(IdentityRefused, match="not yet valid"):
        await verifier().subject(token, at())
    assert await verifier().subject(token, at(600)) == "alice"


@pytest.mark.parametrize(("token", "reason"), [
    (None, NO_TOKEN),
    ("", NO_TOKEN),
    (42, "not a token"),
    ("x" * 20_000, "not a token"),
    ("a.b.c", "malformed"),
    (ISSUER.token("alice", iss="https://evil.example"), "another issuer"),
    (ISSUER.token("alice", aud="someone-else"), "another audience"),
    (ISSUER.token("alice", preferred_username=""), "has no preferred_username claim"),
])
async def test_bad_tokens_are_refused_with_what_was_wrong(token: object, reason: str) -> None:
    with pytest.raises(IdentityRefused) as refused:
        await verifier().subject(token, at())
    assert reason in str(refused.value)
    assert "alice" not in str(refused.value) and "evil" not in str(refused.value)


async def test_a_token_without_an_expiry_is_refused() -> None:
    token = ISSUER.token("alice", exp=None)
    with pytest.raises(IdentityRefused, match="has no exp claim"):
        await verifier().subject(token, at())


async def test_rotated_keys_are_fetched_again_for_an_unknown_key_id(tmp_path: Path) -> None:
    issuer = DevIssuer.under(tmp_path / "before").ensure()
    now = [10_000.0]
    checking = IdentityVerifier(issuer=issuer.issuer, audience=issuer.audience,
                                keys=JwksFile(issuer.jwks_file), subject_claim="sub",
                                leeway_seconds=0, clock=lambda: now[0])
    assert await checking.subject(issuer.token("alice"), at()) == "alice"
    rotated = DevIssuer.under(tmp_path / "after").ensure()
    issuer.jwks_file.write_text(rotated.jwks_file.read_text())  # the issuer publishes new keys
    now[0] += 31
    assert await checking.subject(rotated.token("bob"), at()) == "bob"
    with pytest.raises(IdentityRefused, match="a key the issuer does not publish"):
        await checking.subject(issuer.token("alice"), at())  # the retired key


async def test_unknown_key_ids_do_not_hammer_the_issuer(tmp_path: Path) -> None:
    issuer = DevIssuer.under(tmp_path / "issuer").ensure()
    loads = []

    class Counting(JwksFile):
        def load(self):  # type: ignore[no-untyped-def]
            loads.append(1)
            return super().load()

    now = [0.0]
    checking = IdentityVerifier(issuer=issuer.issuer, audience=issuer.audience,
                                keys=Counting(issuer.jwks_file), subject_claim="sub",
                                leeway_seconds=0, clock=lambda: now[0])
    stranger = DevIssuer.under(tmp_path / "stranger").ensure()
    for _ in range(5):
        with pytest.raises(IdentityRefused, match="a key the issuer does not publish"):
            await checking.subject(stranger.token("mallory"), at())
    assert len(loads) == 1, "one load, then refreshes at most every KEY_REFRESH_INTERVAL"
    now[0] = 60.0
    with pytest.raises(IdentityRefused):
        await checking.subject(stranger.token("mallory"), at())
    assert len(loads) == 2


@pytest.fixture
def jwks_server(tmp_path: Path) -> Iterator[tuple[str, DevIssuer]]:
    issuer = DevIssuer.under(tmp_path).ensure()

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = issuer.jwks_file.read_bytes()
            self.send_response(200 if self.path == "/keys" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", issuer
    server.shutdown()


async def test_keys_are_read_from_the_issuer_url(jwks_server: tuple[str, DevIssuer]) -> None:
    url, issuer = jwks_server
    settings = Settings.from_env({"MPR_AUTH_ISSUER": issuer.issuer,
                                  "MPR_AUTH_AUDIENCE": issuer.audience,
                                  "MPR_AUTH_JWKS_URL": f"{url}/keys"})
    checking = verifier_from(settings)
    assert checking is not None and checking.keys_from == f"{url}/keys"
    assert await checking.subject(issuer.token("alice"), at()) == "alice"
    with pytest.raises(KeysUnavailable, match="cannot load the issuer's keys"):
        JwksUrl(f"{url}/nowhere").load()


def test_a_file_that_is_no_jwks_says_so(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text(json.dumps({"keys": "none"}))
    with pytest.raises(KeysUnavailable, match="is not a JWKS"):
        JwksFile(tmp_path / "keys.json").load()
    with pytest.raises(KeysUnavailable, match="cannot read MPR_AUTH_JWKS_FILE"):
        JwksFile(tmp_path / "missing.json").load()


@pytest.mark.parametrize(("env", "message"), [
    ({}, "MPR_AUTH_ISSUER, MPR_AUTH_AUDIENCE, MPR_AUTH_JWKS_URL or MPR_AUTH_JWKS_FILE is not set"),
    ({"MPR_AUTH_ISSUER": "i", "MPR_AUTH_AUDIENCE": "a"}, "MPR_AUTH_JWKS_URL or"),
    ({"MPR_AUTH_ISSUER": "i", "MPR_AUTH_AUDIENCE": "a", "MPR_AUTH_JWKS_URL": "http://x",
      "MPR_AUTH_JWKS_FILE": "/k"}, "not both"),
    ({"MPR_AUTH": "maybe"}, "MPR_AUTH must be `required` or `off`"),
    ({"MPR_AUTH_LEEWAY_SECONDS": "-1"}, "MPR_AUTH_LEEWAY_SECONDS must be at least 0"),
])
def test_incomplete_settings_name_what_to_set(env: dict[str, str], message: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .data/stack.env of a running stack
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        verifier_from(Settings.from_env(env))


def test_verification_is_required_unless_turned_off_explicitly() -> None:
    assert Settings.from_env({}).auth_required
    assert not Settings.from_env({"MPR_AUTH": "off"}).auth_required
    assert verifier_from(Settings.from_env({"MPR_AUTH": "OFF"})) is None


async def test_with_verification_off_the_actor_field_is_believed() -> None:
    believing = Authenticator(None)
    check = IdentityCheck(identity_token=None, claimed_actor="alice", received_at=at())
    assert await believing.subject(check) == "alice"
    with pytest.raises(IdentityRefused, match="names no actor"):
        await believing.subject(IdentityCheck(identity_token="t", received_at=at()))


def test_the_token_never_shows_in_a_check_s_repr() -> None:
    token = ISSUER.token("alice")
    check = IdentityCheck(identity_token=token, claimed_actor="alice", received_at=at())
    assert token not in repr(check) and token not in str(check)


def test_the_dev_issuer_keeps_its_signing_key_private(tmp_path: Path) -> None:
    issuer = DevIssuer.under(tmp_path / "auth").ensure()
    assert issuer.key_file.stat().st_mode & 0o777 == 0o600
    public = json.loads(issuer.jwks_file.read_text())
    assert all("d" not in key for key in public["keys"]), "the JWKS holds no private part"
    again = DevIssuer.under(tmp_path / "auth").ensure()
    assert again.jwks_file.read_text() == issuer.jwks_file.read_text(), "made once"
