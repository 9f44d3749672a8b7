"""The one place configuration is read.

Environment variables win; when one is unset, the value `make up` wrote to `.data/stack.env`
is used, so the CLI and the worker find the embedded stack without any exports.
Temporal's own settings (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TLS
variables, TEMPORAL_PROFILE and its config file) are read by the SDK's env config loader.
"""

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, SecretStr

DEFAULT_TASK_QUEUE = "mini-program-release"
DEFAULT_CODEC_SERVER = "127.0.0.1:8234"
# The worker's tuning (docs/production.md): the SDK's own defaults unless set.
DEFAULT_MAX_CACHED_WORKFLOWS = 1000
DEFAULT_MAX_CONCURRENT_ACTIVITIES = 100
DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS = 100
DEFAULT_POLLERS = 5
DEFAULT_SUBJECT_CLAIM = "preferred_username"
DEFAULT_AUTH_LEEWAY = 60
DATA_DIR = Path(os.environ.get("MPR_DATA_DIR", ".data"))
STACK_ENV_FILE = DATA_DIR / "stack.env"


class SettingsError(ValueError):
    """A setting cannot be used as it is; the message names the variable to set or unset.
    Entry points exit with FAILURE on it (infra.entrypoint)."""


class DatabaseUrlMissing(SettingsError, RuntimeError):
    """DATABASE_URL is unset and no stack wrote one. Also a RuntimeError, as it was before
    SettingsError existed: callers catching that still catch it."""


def read_env_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def encryption_off(value: str | None) -> bool:
    """MPR_PAYLOAD_ENCRYPTION: only `off` turns payload encryption off, so a typo fails safe."""
    return (value or "").strip().lower() == "off"


def auth_required(value: str | None) -> bool:
    """MPR_AUTH: `required` (the default) or `off`; anything else is a mistake, not a way to
    turn verification off."""
    mode = (value or "required").strip().lower() or "required"
    if mode not in ("required", "off"):
        raise SettingsError(f"MPR_AUTH must be `required` or `off`, not {value!r}")
    return mode == "required"


def _secret(value: str | None) -> SecretStr | None:
    """Secrets stay out of reprs and logs of Settings."""
    return SecretStr(value.strip()) if value and value.strip() else None


def _count(env: dict[str, str], name: str, default: int, minimum: int = 1) -> int:
    value = env.get(name)
    if value is None or not value.strip():
        return default
    try:
        count = int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {value!r}") from None
    if count < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, not {count}")
    return count


def read_port(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """A TCP port from the environment (e.g. TEMPORAL_PORT for `make up`), else `default`."""
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if not value:
        return default
    port = int(value) if value.isascii() and value.isdecimal() else 0
    if not 0 < port < 65536:
        raise SettingsError(f"{name} must be a port number (1 to 65535), not {value!r}")
    return port


class Settings(BaseModel):
    temporal_address: str | None
    temporal_namespace: str | None
    task_queue: str
    database_url: str | None
    artifact_dir: Path
    log_level: str
    log_format: str
    metrics_address: str | None
    """host:port of the worker's Prometheus endpoint (/metrics); unset means no endpoint."""
    build_source_roots: list[Path]
    """The only directories build sources may be read from (BUILD_SOURCE_ROOTS, separated by
    the OS path separator); unset means the worker's current directory."""
    payload_keys: SecretStr | None
    """MPR_PAYLOAD_KEYS: `key_id:base64_key` entries, the first encrypts (infra.codec)."""
    payload_encryption: bool
    """False only with MPR_PAYLOAD_ENCRYPTION=off (encryption_off)."""
    codec_server_address: str
    """host:port the codec server listens on (MPR_CODEC_SERVER_ADDRESS)."""
    codec_cors_origins: list[str]
    """Web UI origins allowed to call the codec server (MPR_CODEC_CORS_ORIGINS, comma
    separated); none by default: only the `temporal` CLI, which sends no Origin."""
    codec_server_token: SecretStr | None
    """MPR_CODEC_SERVER_TOKEN: when set, the codec server answers only requests carrying
    `Authorization: Bearer <token>`."""
    max_cached_workflows: int
    """WORKER_MAX_CACHED_WORKFLOWS: how many workflows the worker keeps in memory between their
    tasks (the sticky cache); one evicted is replayed from its history when it is next needed.
    Lower it to bound the worker's memory when thousands of releases wait for review; 0 keeps
    none."""
    max_concurrent_activities: int
    """WORKER_MAX_CONCURRENT_ACTIVITIES: activities (builds, cells, catalog writes) one worker
    runs at once."""
    max_concurrent_workflow_tasks: int
    """WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: workflow tasks one worker processes at once."""
    workflow_task_pollers: int
    """WORKER_WORKFLOW_TASK_POLLERS: concurrent long polls for workflow tasks."""
    activity_task_pollers: int
    """WORKER_ACTIVITY_TASK_POLLERS: concurrent long polls for activity tasks."""
    auth_required: bool
    """False only with MPR_AUTH=off: commands are then believed to come from their `actor`."""
    auth_issuer: str | None
    """MPR_AUTH_ISSUER: the `iss` every identity token must carry."""
    auth_audience: str | None
    """MPR_AUTH_AUDIENCE: the `aud` every identity token must name."""
    auth_jwks_url: str | None
    """MPR_AUTH_JWKS_URL: where the issuer publishes its public keys (JWKS)."""
    auth_jwks_file: Path | None
    """MPR_AUTH_JWKS_FILE: the issuer's public keys in a file (the embedded stack's issuer)."""
    auth_subject_claim: str
    """MPR_AUTH_SUBJECT_CLAIM: the claim that names the actor (default preferred_username)."""
    auth_leeway_seconds: int
    """MPR_AUTH_LEEWAY_SECONDS: clock skew allowed on `exp` and `nbf` (default 60)."""
    health_file: Path | None
    """WORKER_HEALTH_FILE: a file the running worker touches every few seconds, for
    `python -m workers.health` (the image's health check); unset means none."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = {**read_env_file(STACK_ENV_FILE), **(environ if environ is not None else os.environ)}
        return cls(
            temporal_address=env.get("TEMPORAL_ADDRESS") or None,
            temporal_namespace=env.get("TEMPORAL_NAMESPACE") or None,
            task_queue=env.get("TEMPORAL_TASK_QUEUE") or DEFAULT_TASK_QUEUE,
            database_url=env.get("DATABASE_URL") or None,
            artifact_dir=Path(env.get("ARTIFACT_DIR") or DATA_DIR / "artifacts"),
            log_level=env.get("LOG_LEVEL") or "INFO",
            log_format=env.get("LOG_FORMAT") or "json",
            metrics_address=env.get("METRICS_ADDRESS") or None,
            build_source_roots=[
                Path(root) for root in (env.get("BUILD_SOURCE_ROOTS") or "").split(os.pathsep)
                if root
            ] or [Path.cwd()],
            payload_keys=_secret(env.get("MPR_PAYLOAD_KEYS")),
            payload_encryption=not encryption_off(env.get("MPR_PAYLOAD_ENCRYPTION")),
            codec_server_address=env.get("MPR_CODEC_SERVER_ADDRESS") or DEFAULT_CODEC_SERVER,
            codec_cors_origins=[
                origin.strip().rstrip("/")
                for origin in (env.get("MPR_CODEC_CORS_ORIGINS") or "").split(",")
                if origin.strip()
            ],
            codec_server_token=_secret(env.get("MPR_CODEC_SERVER_TOKEN")),
            max_cached_workflows=_count(env, "WORKER_MAX_CACHED_WORKFLOWS",
                                        DEFAULT_MAX_CACHED_WORKFLOWS, minimum=0),
            max_concurrent_activities=_count(env, "WORKER_MAX_CONCURRENT_ACTIVITIES",
                                             DEFAULT_MAX_CONCURRENT_ACTIVITIES),
            max_concurrent_workflow_tasks=_count(env, "WORKER_MAX_CONCURRENT_WORKFLOW_TASKS",
                                                 DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS),
            workflow_task_pollers=_count(env, "WORKER_WORKFLOW_TASK_POLLERS", DEFAULT_POLLERS),
            activity_task_pollers=_count(env, "WORKER_ACTIVITY_TASK_POLLERS", DEFAULT_POLLERS),
            auth_required=auth_required(env.get("MPR_AUTH")),
            auth_issuer=env.get("MPR_AUTH_ISSUER") or None,
            auth_audience=env.get("MPR_AUTH_AUDIENCE") or None,
            auth_jwks_url=env.get("MPR_AUTH_JWKS_URL") or None,
            auth_jwks_file=Path(env["MPR_AUTH_JWKS_FILE"]) if env.get("MPR_AUTH_JWKS_FILE")
            else None,
            auth_subject_claim=env.get("MPR_AUTH_SUBJECT_CLAIM") or DEFAULT_SUBJECT_CLAIM,
            auth_leeway_seconds=_count(env, "MPR_AUTH_LEEWAY_SECONDS", DEFAULT_AUTH_LEEWAY,
                                       minimum=0),
            health_file=Path(env["WORKER_HEALTH_FILE"]) if env.get("WORKER_HEALTH_FILE")
            else None,
        )

    def require_database_url(self) -> str:
        if not self.database_url:
            raise DatabaseUrlMissing(
                "DATABASE_URL is not set and no embedded stack is running "
                f"({STACK_ENV_FILE} not found): run `make up` or export DATABASE_URL"
            )
        return self.database_url
