"""`mpr login` and `mpr token` against the embedded stack's issuer, and their refusals."""

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mpr.cli.main import main
from mpr.cli.output import refusal_line, sender
from mpr.domain.core.models import LastRejection
from mpr.infra import dev_issuer, settings, tokens
from mpr.infra.dev_issuer import DevIssuer
from mpr.infra.exit_codes import FAILURE, OK, USAGE
from tests.identity import verifier


@pytest.fixture
def stack_issuer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DevIssuer:
    """A stack whose worker verifies the tokens of its own issuer, as `make up` leaves it."""
    for name in ("MPR_TOKEN", "MPR_TOKEN_FILE", "MPR_TOKEN_COMMAND", "MPR_AUTH",
                 "MPR_AUTH_ISSUER", "MPR_AUTH_AUDIENCE", "MPR_AUTH_JWKS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(dev_issuer, "AUTH_DIR", tmp_path / "auth")
    monkeypatch.setattr(tokens, "LOGIN_TOKEN_FILE", tmp_path / "auth" / "mpr-token")
    issuer = DevIssuer.under().ensure()
    stack_env = tmp_path / "stack.env"
    stack_env.write_text("".join(f"{k}={v}\n" for k, v in issuer.settings().items()))
    monkeypatch.setattr(settings, "STACK_ENV_FILE", stack_env)
    monkeypatch.setattr(tokens, "STACK_ENV_FILE", stack_env)
    return issuer


def test_login_stores_a_token_that_mpr_token_prints(
    stack_issuer: DevIssuer, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["login", "--user", "alice", "--minutes", "5"]) == OK
    assert "logged in as alice until" in capsys.readouterr().out
    assert main(["token"]) == OK
    token = capsys.readouterr().out.strip()
    subject = asyncio.run(verifier(stack_issuer).subject(token, datetime.now(UTC)))
    assert subject == "alice"


def test_token_without_login_says_how_to_get_one(
    stack_issuer: DevIssuer, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token"]) == FAILURE
    err = capsys.readouterr().err
    assert err.startswith("mpr: no identity token: `mpr login --user NAME`")
    assert err.count("\n") == 1


def test_login_refuses_another_issuer(
    stack_issuer: DevIssuer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MPR_AUTH_ISSUER", "https://login.example.com")
    assert main(["login", "--user", "alice"]) == FAILURE
    err = capsys.readouterr().err
    assert "signs tokens only for the embedded stack's own issuer" in err
    assert "https://login.example.com" in err and "MPR_TOKEN_COMMAND" in err


def test_login_refuses_a_lifetime_out_of_bounds(
    stack_issuer: DevIssuer, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["login", "--user", "alice", "--minutes", "0"]) == USAGE
    assert "--minutes must be between 1 and 1440" in capsys.readouterr().err


def test_a_refusal_for_identity_blames_nobody_and_shows_the_claim_as_a_claim() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    forged = LastRejection(command="full_release", actor=None, claimed_actor="adam",
                           reason="the identity token had expired", at=at)
    assert refusal_line(forged).startswith(
        "full_release by an unverified sender (claiming adam) at 2026-12-01")
    honest = forged.model_copy(update={"actor": "dev", "claimed_actor": None})
    assert refusal_line(honest).startswith("full_release by dev at")
    assert sender(None) == "the system"
