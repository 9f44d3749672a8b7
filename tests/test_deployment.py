"""docker-compose.yml cannot run here (no Docker engine); these checks keep it true to the code."""

import importlib.util
import re
from pathlib import Path
from typing import Any

import yaml

from infra.settings import DEFAULT_TASK_QUEUE, Settings
from infra.temporal import search_attribute_type_names

ROOT = Path(__file__).resolve().parents[1]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SETTINGS_SOURCE = (ROOT / "infra" / "settings.py").read_text()


def test_worker_environment_matches_the_settings_module() -> None:
    env = SERVICES["worker"]["environment"]
    assert env["TEMPORAL_TASK_QUEUE"] == DEFAULT_TASK_QUEUE
    for name in env:
        assert f'"{name}"' in SETTINGS_SOURCE, f"{name} is not read by infra/settings.py"
    settings = Settings.from_env({key: str(value) for key, value in env.items()})
    assert settings.task_queue == DEFAULT_TASK_QUEUE
    assert settings.database_url is not None
    assert settings.database_url.endswith("@catalog-db:5432/mini_program_release")
    assert env["DATABASE_URL"].split("@")[1].startswith("catalog-db:")


REQUIRED_FROM_ENVIRONMENT = re.compile(r"\$\{MPR_PAYLOAD_KEYS:\?[^}]+\}")
# A `key_id:base64(32 bytes)` entry of MPR_PAYLOAD_KEYS.
KEY_ENTRY = re.compile(r"[\w.-]+:[A-Za-z0-9+/]{43}=")


def test_payload_keys_come_from_the_environment_never_from_the_repository() -> None:
    for service in ("worker", "migrate", "codec-server"):
        value = SERVICES[service]["environment"]["MPR_PAYLOAD_KEYS"]
        assert REQUIRED_FROM_ENVIRONMENT.fullmatch(value), service
    for path in [ROOT / "docker-compose.yml", ROOT / "Dockerfile", ROOT / "Makefile",
                 ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        assert not KEY_ENTRY.search(path.read_text()), f"a payload key in {path.name}"


def test_the_web_ui_decrypts_through_the_codec_server() -> None:
    codec = SERVICES["codec-server"]
    assert codec["command"][:2] == ["python", "-m"]
    assert importlib.util.find_spec(codec["command"][2])
    for name in codec["environment"]:
        assert f'"{name}"' in SETTINGS_SOURCE, f"{name} is not read by infra/settings.py"
    settings = Settings.from_env({key: str(value) for key, value in codec["environment"].items()})
    listen_port = settings.codec_server_address.rpartition(":")[2]
    host, published, port = codec["ports"][0].split(":")
    assert (host, port) == ("127.0.0.1", listen_port), "published on the host's loopback only"

    ui = SERVICES["temporal-ui"]
    ui_port = ui["ports"][0].split(":")[0]
    # The browser calls the codec server: the endpoint is the host's, the origin the UI's.
    assert ui["environment"]["TEMPORAL_CODEC_ENDPOINT"] == f"http://localhost:{published}"
    assert settings.codec_cors_origins == [f"http://localhost:{ui_port}"]


def test_search_attributes_registered_as_the_workflow_expects() -> None:
    command = " ".join(SERVICES["register-search-attributes"]["command"])
    registered = dict(re.findall(r"(\w+):(Keyword|Int|Datetime)", command))
    assert registered == search_attribute_type_names()


def test_migrations_and_worker_entry_points_exist() -> None:
    migrate = SERVICES["migrate"]["command"]
    worker_command = ["python", "-m", "workers.main"]
    assert migrate[:2] == ["python", "-m"] and importlib.util.find_spec(migrate[2])
    assert "CMD " + str(worker_command).replace("'", '"') in (ROOT / "Dockerfile").read_text()
    assert SERVICES["worker"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully")


def test_temporal_persists_in_postgres_and_nothing_is_lost_on_restart() -> None:
    assert SERVICES["temporal"]["environment"]["DB"] == "postgres12"
    for service in ("temporal-db", "catalog-db"):
        assert any("/var/lib/postgresql/data" in v for v in SERVICES[service]["volumes"])
    assert "artifacts:/var/lib/mpr/artifacts" in SERVICES["worker"]["volumes"]
    assert set(COMPOSE["volumes"]) == {"temporal-db", "catalog-db", "artifacts", "sources"}


def test_worker_reads_build_sources_only_from_its_mounted_roots() -> None:
    roots = SERVICES["worker"]["environment"]["BUILD_SOURCE_ROOTS"].split(":")
    mounts = [volume.split(":") for volume in SERVICES["worker"]["volumes"]]
    for root in roots:
        assert [name for name, path, *mode in mounts if path == root and mode == ["ro"]]


def test_admin_tools_offer_tctl_and_the_temporal_cli() -> None:
    tools = SERVICES["temporal-admin-tools"]
    assert "tctl" in tools["image"] and "cli" in tools["image"]
    assert tools["environment"]["TEMPORAL_CLI_ADDRESS"] == "temporal:7233"


def test_worker_image_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)
    assert dockerfile.startswith("# ") and "slim" in dockerfile
