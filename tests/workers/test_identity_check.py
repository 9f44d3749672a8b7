"""`python -m workers.main --check`: the identity line, and the worker's refusal to start
without what verification needs."""

from pathlib import Path

import pytest

from mpr.infra.settings import Settings, SettingsError
from tests.identity import auth_env
from workers.check import check_identity
from workers.main import run_worker


async def test_the_check_reports_the_issuer_and_its_keys() -> None:
    finding = await check_identity(Settings.from_env(auth_env()))
    assert finding.verdict == "ok", finding
    assert "verifies tokens of urn:mpr:embedded-dev-issuer with 1 key(s)" in finding.line()
    assert "actor from preferred_username" in finding.line()


async def test_the_check_fails_on_keys_it_cannot_load(tmp_path: Path) -> None:
    env = {**auth_env(), "MPR_AUTH_JWKS_FILE": str(tmp_path / "gone.json")}
    finding = await check_identity(Settings.from_env(env))
    assert finding.verdict == "FAIL" and "cannot read MPR_AUTH_JWKS_FILE" in finding.line()


async def test_the_check_fails_on_incomplete_settings_and_warns_when_off() -> None:
    incomplete = await check_identity(Settings.from_env({"MPR_AUTH_AUDIENCE": "mpr"}))
    assert incomplete.verdict == "FAIL" and "MPR_AUTH_ISSUER" in incomplete.line()
    off = await check_identity(Settings.from_env({"MPR_AUTH": "off"}))
    assert off.verdict == "warn" and "actor field is believed" in off.line()


async def test_the_worker_refuses_to_start_without_an_issuer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"MPR_PAYLOAD_ENCRYPTION": "off",
                                  "DATABASE_URL": "postgresql://nowhere/none"})
    with pytest.raises(SettingsError, match="MPR_AUTH is required but MPR_AUTH_ISSUER"):
        await run_worker(settings, stop=None)  # type: ignore[arg-type]
