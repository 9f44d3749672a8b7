"""Configuration: the environment first, then what `make up` wrote, then defaults."""

from pathlib import Path

import pytest

from infra import settings as settings_module
from infra.settings import DEFAULT_TASK_QUEUE, Settings
from infra.temporal import DEFAULT_ADDRESS, connect_config


@pytest.fixture
def stack_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "stack.env"
    monkeypatch.setattr(settings_module, "STACK_ENV_FILE", path)
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "DATABASE_URL",
                 "TEMPORAL_TASK_QUEUE", "TEMPORAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "absent.toml"))
    return path


def test_defaults_without_a_stack(stack_env: Path) -> None:
    settings = Settings.from_env({})
    assert settings.task_queue == DEFAULT_TASK_QUEUE == "mini-program-release"
    assert settings.temporal_address is None and settings.database_url is None
    with pytest.raises(RuntimeError, match="run `make up` or export DATABASE_URL"):
        settings.require_database_url()
    assert connect_config(settings)["target_host"] == DEFAULT_ADDRESS


def test_stack_env_fills_in_and_the_environment_wins(stack_env: Path) -> None:
    stack_env.write_text("TEMPORAL_ADDRESS=127.0.0.1:7233\nDATABASE_URL=postgresql://stack/db\n")
    settings = Settings.from_env({"DATABASE_URL": "postgresql://mine/db",
                                  "TEMPORAL_TASK_QUEUE": "other-queue"})
    assert settings.temporal_address == "127.0.0.1:7233"
    assert settings.database_url == "postgresql://mine/db"
    assert settings.task_queue == "other-queue"


def test_temporal_env_config_is_honoured(stack_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "my-ns.a1b2c.tmprl.cloud:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "my-ns.a1b2c")
    monkeypatch.setenv("TEMPORAL_API_KEY", "secret-key")
    config = connect_config(Settings.from_env())
    assert config["target_host"] == "my-ns.a1b2c.tmprl.cloud:7233"
    assert config["namespace"] == "my-ns.a1b2c"
    assert config["api_key"] == "secret-key"
    assert config.get("tls"), "an API key implies TLS"


def test_build_source_roots(stack_env: Path) -> None:
    assert Settings.from_env({}).build_source_roots == [Path.cwd()]
    roots = Settings.from_env({"BUILD_SOURCE_ROOTS": "/srv/a:/srv/b:"}).build_source_roots
    assert roots == [Path("/srv/a"), Path("/srv/b")]
