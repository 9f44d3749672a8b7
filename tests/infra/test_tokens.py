"""Where clients find their identity token (mpr.infra.tokens)."""

import stat
import sys
import time
from pathlib import Path

import pytest

from mpr.infra import tokens
from mpr.infra.tokens import TokenUnavailable, store_login_token, token_provider
from tests.identity import ISSUER


@pytest.fixture(autouse=True)
def login_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "auth" / "mpr-token"
    monkeypatch.setattr(tokens, "LOGIN_TOKEN_FILE", path)
    monkeypatch.setattr(tokens, "STACK_ENV_FILE", tmp_path / "no-stack.env")
    return path


async def test_the_environment_s_token_comes_first(tmp_path: Path) -> None:
    (tmp_path / "file").write_text(ISSUER.token("from-file"))
    store_login_token(ISSUER.token("from-login"))
    both = {"MPR_TOKEN": ISSUER.token("from-env"), "MPR_TOKEN_FILE": str(tmp_path / "file")}
    assert await token_provider(both)() == both["MPR_TOKEN"]
    assert await token_provider({"MPR_TOKEN_FILE": str(tmp_path / "file")})() == \
        (tmp_path / "file").read_text()
    assert await token_provider({})() == ISSUER.token("from-login")[:0] + \
        (tokens.LOGIN_TOKEN_FILE.read_text().strip())


async def test_a_file_token_is_read_again_for_every_command(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(ISSUER.token("alice") + "\n")
    provider = token_provider({"MPR_TOKEN_FILE": str(path)})
    first = await provider()
    path.write_text(ISSUER.token("alice", jti="refreshed"))
    assert await provider() != first, "a refreshed token is picked up"


async def test_a_command_prints_the_token_and_is_cached_until_near_expiry(
    tmp_path: Path,
) -> None:
    counter = tmp_path / "runs"
    script = tmp_path / "token-command.py"
    script.write_text(
        "import pathlib, sys\n"
        f"runs = pathlib.Path({str(counter)!r})\n"
        "runs.write_text(runs.read_text() + 'x' if runs.exists() else 'x')\n"
        f"print({ISSUER.token('alice')!r})\n")
    provider = token_provider({"MPR_TOKEN_COMMAND": f"{sys.executable} {script}"})
    assert await provider() == await provider()
    assert counter.read_text() == "x", "run once while the token is fresh"


async def test_a_failing_command_says_why(tmp_path: Path) -> None:
    provider = token_provider({"MPR_TOKEN_COMMAND": f"{sys.executable} -c "
                               "\"import sys; sys.exit('login required')\""})
    with pytest.raises(TokenUnavailable, match=r"MPR_TOKEN_COMMAND failed \(exit 1\): login"):
        await provider()


async def test_no_token_anywhere_says_how_to_get_one() -> None:
    with pytest.raises(TokenUnavailable, match="no identity token: `mpr login --user NAME`"):
        await token_provider({})()


async def test_an_expired_token_is_reported_before_it_is_sent(tmp_path: Path) -> None:
    expired = ISSUER.token("alice", now=time.time() - 7200, lifetime_seconds=60)
    with pytest.raises(TokenUnavailable, match="the token from MPR_TOKEN has expired"):
        await token_provider({"MPR_TOKEN": expired})()
    store_login_token(expired)
    with pytest.raises(TokenUnavailable, match=r"`mpr login` stored .* has expired"):
        await token_provider({})()


def test_the_login_token_is_private(login_file: Path) -> None:
    store_login_token(ISSUER.token("alice"))
    assert stat.S_IMODE(login_file.stat().st_mode) == 0o600
