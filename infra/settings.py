"""The one place configuration is read.

Environment variables win; when one is unset, the value `make up` wrote to `.data/stack.env`
is used, so the CLI and the worker find the embedded stack without any exports.
Temporal's own settings (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TLS
variables, TEMPORAL_PROFILE and its config file) are read by the SDK's env config loader.
"""

import os
from pathlib import Path

from pydantic import BaseModel, SecretStr

DEFAULT_TASK_QUEUE = "mini-program-release"
DEFAULT_CODEC_SERVER = "127.0.0.1:8234"
DATA_DIR = Path(os.environ.get("MPR_DATA_DIR", ".data"))
STACK_ENV_FILE = DATA_DIR / "stack.env"


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


def _secret(value: str | None) -> SecretStr | None:
    """Secrets stay out of reprs and logs of Settings."""
    return SecretStr(value.strip()) if value and value.strip() else None


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
        )

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError(
                "DATABASE_URL is not set and no embedded stack is running "
                f"({STACK_ENV_FILE} not found): run `make up` or export DATABASE_URL"
            )
        return self.database_url
