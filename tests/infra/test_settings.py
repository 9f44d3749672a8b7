"""Configuration: the environment first, then what `make up` wrote, then defaults."""

from pathlib import Path

import pytest

from mpr.infra import settings as settings_module
from mpr.infra.codec import new_key_entry
from mpr.infra.settings import DEFAULT_CODEC_SERVER, DEFAULT_TASK_QUEUE, Settings
from mpr.infra.temporal import DEFAULT_ADDRESS, TemporalSettingsError, connect_config


@pytest.fixture
def stack_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "stack.env"
    monkeypatch.setattr(settings_module, "STACK_ENV_FILE", path)
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "DATABASE_URL",
                 "TEMPORAL_TLS", "TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH",
                 "TEMPORAL_TASK_QUEUE", "TEMPORAL_PROFILE", "MPR_PAYLOAD_KEYS",
                 "MPR_PAYLOAD_ENCRYPTION"):
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


def test_payload_keys_from_the_stack_and_kept_secret(stack_env: Path) -> None:
    stacked, mine = new_key_entry("stack"), new_key_entry("mine")
    stack_env.write_text(f"MPR_PAYLOAD_KEYS={stacked}\n")
    settings = Settings.from_env({})
    assert settings.payload_keys is not None and settings.payload_encryption
    assert settings.payload_keys.get_secret_value() == stacked
    assert stacked.partition(":")[2] not in repr(settings) + str(settings)
    overridden = Settings.from_env({"MPR_PAYLOAD_KEYS": mine}).payload_keys
    assert overridden is not None and overridden.get_secret_value() == mine
    assert Settings.from_env({"MPR_PAYLOAD_KEYS": " "}).payload_keys is None, "blank is unset"


def test_only_off_turns_encryption_off(stack_env: Path) -> None:
    assert not Settings.from_env({"MPR_PAYLOAD_ENCRYPTION": " OFF "}).payload_encryption
    for value in ("", "on", "of", "false", "0", "no"):  # a typo fails safe
        assert Settings.from_env({"MPR_PAYLOAD_ENCRYPTION": value}).payload_encryption, value


def test_codec_server_settings(stack_env: Path) -> None:
    default = Settings.from_env({})
    assert default.codec_server_address == DEFAULT_CODEC_SERVER == "127.0.0.1:8234"
    assert default.codec_cors_origins == [] and default.codec_server_token is None
    settings = Settings.from_env({"MPR_CODEC_SERVER_ADDRESS": "0.0.0.0:8081",
                                  "MPR_CODEC_CORS_ORIGINS": "http://localhost:8080/, https://ui",
                                  "MPR_CODEC_SERVER_TOKEN": " t0ken "})
    assert settings.codec_server_address == "0.0.0.0:8081"
    assert settings.codec_cors_origins == ["http://localhost:8080", "https://ui"]
    assert settings.codec_server_token is not None
    assert settings.codec_server_token.get_secret_value() == "t0ken"
    assert "t0ken" not in repr(settings)


def test_a_profile_of_temporals_config_file_is_honoured(
    stack_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("CERT")
    key.write_text("KEY")
    profiles = tmp_path / "temporal.toml"
    profiles.write_text(
        '[profile.default]\naddress = "localhost:7233"\n\n'
        '[profile.prod]\naddress = "temporal.internal:7233"\nnamespace = "releases"\n'
        f'[profile.prod.tls]\nclient_cert_path = "{cert}"\nclient_key_path = "{key}"\n'
    )
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(profiles))
    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    config = connect_config(Settings.from_env({}))
    assert config["target_host"] == "temporal.internal:7233"
    assert config["namespace"] == "releases"
    assert config["tls"].client_cert == b"CERT" and config["tls"].client_private_key == b"KEY"

    # Exported variables win over the profile, as they do for the `temporal` CLI.
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "other")
    assert connect_config(Settings.from_env())["namespace"] == "other"


def test_unusable_temporal_settings_are_named_before_connecting(
    stack_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(tmp_path / "missing.key"))
    with pytest.raises(TemporalSettingsError, match=r"cannot read .*missing\.(pem|key): No such"):
        connect_config(Settings.from_env({}))
    monkeypatch.delenv("TEMPORAL_TLS_CLIENT_CERT_PATH")
    monkeypatch.delenv("TEMPORAL_TLS_CLIENT_KEY_PATH")
    broken = tmp_path / "broken.toml"
    broken.write_text("[profile.default\naddress = ")
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(broken))
    with pytest.raises(TemporalSettingsError, match="env config is invalid"):
        connect_config(Settings.from_env({}))
