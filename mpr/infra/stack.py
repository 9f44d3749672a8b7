"""The embedded stack behind `make up` / `make down`: `python -m mpr.infra.stack up|down|status`.

`up` starts what the environment does not already provide (the Temporal dev server unless
TEMPORAL_ADDRESS is set, PostgreSQL unless DATABASE_URL is set), applies the migrations,
starts a worker in the background and writes .data/stack.env. Everything lives under .data/.

Commands are verified as in production (MPR_AUTH=required): against the identity provider
MPR_AUTH_ISSUER names when it is exported, else against the stack's own issuer, whose signing
key is made on the first `up` (.data/auth, mode 0600) and whose tokens `mpr login` hands out.

Payloads are encrypted with MPR_PAYLOAD_KEYS when it is exported, else with a key made on the
first `up` and kept in .data/payload-keys (mode 0600) until `make clean`: releases started
earlier must stay readable. A codec server decrypts them for the Web UI and the `temporal` CLI.
MPR_PAYLOAD_ENCRYPTION=off runs without keys, encryption or codec server.

Before starting anything, `up` checks what it can (exported servers answer, its ports are
free), so that a failed `up` leaves nothing running and says in one line what to change.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from mpr.catalog.db import CONNECT_TIMEOUT_SECONDS
from mpr.catalog.migrate import migrate
from mpr.infra.codec import KeyRing, PayloadKeyError, new_key_entry
from mpr.infra.dev_issuer import DevIssuer
from mpr.infra.entrypoint import EntryPointError, reaching_database, run_and_exit, socket_dirs
from mpr.infra.exit_codes import FAILURE, OK
from mpr.infra.servers import (
    port_in_use,
    process_alive,
    start_postgres,
    start_temporal_dev_server,
    stop_postgres,
    stop_process,
    wait_for_temporal,
)
from mpr.infra.settings import (
    DATA_DIR,
    DEFAULT_TASK_QUEUE,
    STACK_ENV_FILE,
    Settings,
    auth_required,
    encryption_off,
    read_env_file,
    read_port,
)
from mpr.infra.temporal import TemporalUnreachable, connect

PGDATA = DATA_DIR / "postgres"
TEMPORAL_PID = DATA_DIR / "temporal.pid"
WORKER_PID = DATA_DIR / "worker.pid"
CODEC_SERVER_PID = DATA_DIR / "codec-server.pid"
PAYLOAD_KEYS_FILE = DATA_DIR / "payload-keys"
PRIVATE = 0o600


@dataclass(frozen=True)
class Ports:
    """The ports of the servers `up` starts on 127.0.0.1 (SettingsError when unusable)."""

    temporal: int
    temporal_ui: int
    codec_server: int

    @classmethod
    def from_env(cls) -> "Ports":
        return cls(read_port("TEMPORAL_PORT", 7233), read_port("TEMPORAL_UI_PORT", 8233),
                   read_port("CODEC_SERVER_PORT", 8234))

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal}"


def up() -> dict[str, str]:
    ports = Ports.from_env()
    try:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EntryPointError(f"cannot create {DATA_DIR}: {error.strerror} (MPR_DATA_DIR "
                              "chooses another directory)", FAILURE) from None
    if _running(WORKER_PID):
        print(f"the stack is already up ({STACK_ENV_FILE}); `make down` stops it")
        return _read_stack_env()

    keys = _payload_keys()
    _preflight(ports, keys)
    codec_endpoint = _start_codec_server(ports, keys) if keys else ""
    stack = {
        "TEMPORAL_ADDRESS": os.environ.get("TEMPORAL_ADDRESS")
        or _start_temporal(ports, codec_endpoint),
        "TEMPORAL_NAMESPACE": os.environ.get("TEMPORAL_NAMESPACE") or "default",
        "TEMPORAL_TASK_QUEUE": os.environ.get("TEMPORAL_TASK_QUEUE") or DEFAULT_TASK_QUEUE,
        "DATABASE_URL": os.environ.get("DATABASE_URL") or _start_postgres(),
        "TEMPORAL_UI_URL": os.environ.get("TEMPORAL_UI_URL")
        or (f"http://localhost:{ports.temporal_ui}" if _running(TEMPORAL_PID) else ""),
        "ARTIFACT_DIR": os.environ.get("ARTIFACT_DIR") or str((DATA_DIR / "artifacts").resolve()),
        "METRICS_ADDRESS": os.environ.get("METRICS_ADDRESS") or "127.0.0.1:9464",
        "BUILD_SOURCE_ROOTS": os.environ.get("BUILD_SOURCE_ROOTS") or str(Path.cwd().resolve()),
        "MPR_PAYLOAD_KEYS": keys,
        "MPR_PAYLOAD_ENCRYPTION": "on" if keys else "off",
        # Read by the `temporal` CLI, for whoever exports this file.
        "TEMPORAL_CODEC_ENDPOINT": codec_endpoint,
        **_identity_settings(),
    }
    asyncio.run(migrate(stack["DATABASE_URL"]))
    # It holds the payload keys.
    _write_private(STACK_ENV_FILE, "".join(f"{key}={value}\n" for key, value in stack.items()))
    _start_worker(stack)
    for key, value in stack.items():
        shown = f"(keys {', '.join(KeyRing.parse(value).key_ids)})" if (
            key == "MPR_PAYLOAD_KEYS" and value) else value
        print(f"{key}={shown}")
    print(f"logs: {DATA_DIR}/temporal.log, {DATA_DIR}/worker.log, {DATA_DIR}/codec-server.log; "
          "`make down` stops the stack")
    return stack


def _identity_settings() -> dict[str, str]:
    """Verification is on here as in production: against the identity provider the
    environment names, else against the stack's own issuer (`mpr login`)."""
    if not auth_required(os.environ.get("MPR_AUTH")):
        return {"MPR_AUTH": "off"}
    if os.environ.get("MPR_AUTH_ISSUER"):
        return {name: value for name, value in os.environ.items()
                if name.startswith("MPR_AUTH")}
    return DevIssuer.under().ensure().settings()


def down() -> None:
    stopped = []
    if _stop(WORKER_PID, timeout=40):
        stopped.append("worker")
    if _stop(TEMPORAL_PID):
        stopped.append("Temporal dev server")
    if _stop(CODEC_SERVER_PID):
        stopped.append("codec server")
    if stop_postgres(PGDATA):
        stopped.append("PostgreSQL")
    STACK_ENV_FILE.unlink(missing_ok=True)
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def status() -> bool:
    parts = {
        "worker": _running(WORKER_PID),
        "temporal": _running(TEMPORAL_PID),
        "postgres": (PGDATA / "postmaster.pid").exists(),
    }
    if _read_stack_env().get("TEMPORAL_CODEC_ENDPOINT"):
        parts["codec-server"] = _running(CODEC_SERVER_PID)
    for name, alive in parts.items():
        print(f"{name}: {'running' if alive else 'stopped'}")
    return all(parts.values())


def _preflight(ports: Ports, keys: str) -> None:
    """What `up` can find wrong before it starts anything: exported servers that do not
    answer (the values of a stopped stack, often), ports of its own servers in use."""
    stale = []
    exported_temporal = os.environ.get("TEMPORAL_ADDRESS")
    if exported_temporal:
        try:
            asyncio.run(_reach_temporal(exported_temporal))
        except EntryPointError:
            if not _names_own_temporal(exported_temporal, ports):
                raise
            stale.append("TEMPORAL_ADDRESS")
    exported_database = os.environ.get("DATABASE_URL")
    if exported_database:
        try:
            asyncio.run(_reach_database(exported_database))
        except EntryPointError:
            if not _names_own_postgres(exported_database):
                raise
            stale.append("DATABASE_URL")
    if stale:
        names = " ".join(stale)
        raise EntryPointError(
            f"this shell exports {' and '.join(stale)} of a stack that is not running (from "
            f"an old {STACK_ENV_FILE}; `make down` stopped that stack): run `unset {names}`, "
            "then `make up` starts a new one", FAILURE)
    if not exported_temporal and not _running(TEMPORAL_PID):
        _require_free(ports.temporal, "TEMPORAL_PORT", "the Temporal dev server",
                      f"or, if that program is the Temporal server to use, export "
                      f"TEMPORAL_ADDRESS=127.0.0.1:{ports.temporal}")
        _require_free(ports.temporal_ui, "TEMPORAL_UI_PORT", "the Temporal Web UI")
    if keys and not _running(CODEC_SERVER_PID):
        _require_free(ports.codec_server, "CODEC_SERVER_PORT", "the codec server")


async def _reach_temporal(address: str) -> None:
    try:
        await connect(Settings.from_env())
    except TemporalUnreachable as error:
        raise EntryPointError(
            f"TEMPORAL_ADDRESS={address} is exported, but Temporal does not answer there "
            f"({error.reason}): start that server, or run `unset TEMPORAL_ADDRESS` and `make up` "
            "starts a dev server of its own"
        ) from error


async def _reach_database(url: str) -> None:
    with reaching_database(url, "DATABASE_URL is exported: start that server, or run `unset "
                                "DATABASE_URL` and `make up` starts a PostgreSQL of its own"):
        connection = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_SECONDS)
    await connection.close()


def _names_own_temporal(address: str, ports: Ports) -> bool:
    """Whether `address` is that of the dev server this data directory had (not running)."""
    return (address == ports.temporal_address and not _running(TEMPORAL_PID)
            and (DATA_DIR / "temporal.db").exists())


def _names_own_postgres(url: str) -> bool:
    """Whether `url` is that of this stack's PostgreSQL (its socket is in PGDATA)."""
    own = PGDATA.resolve()
    return any(Path(directory).resolve() == own for directory in socket_dirs(url))


def _require_free(port: int, variable: str, server: str, alternative: str = "") -> None:
    if port_in_use(port):
        instead = f", {alternative}" if alternative else ""
        raise EntryPointError(
            f"port {port} on 127.0.0.1, which {server} would listen on, is already in use by "
            f"another program: set {variable} to a free port{instead}", FAILURE)


def _payload_keys() -> str:
    """MPR_PAYLOAD_KEYS as exported, else the stack's own key; "" when encryption is off."""
    exported = (os.environ.get("MPR_PAYLOAD_KEYS") or "").strip()
    if exported:
        try:
            exported_ids = KeyRing.parse(exported).key_ids
        except PayloadKeyError as error:
            raise EntryPointError(f"{error} (or unset MPR_PAYLOAD_KEYS: `make up` makes a "
                                  "key of its own)", FAILURE) from None
        if PAYLOAD_KEYS_FILE.exists():
            own = KeyRing.parse(PAYLOAD_KEYS_FILE.read_text()).key_ids
            if not set(own) <= set(exported_ids):
                print(f"warning: the exported MPR_PAYLOAD_KEYS lacks {', '.join(own)} of "
                      f"{PAYLOAD_KEYS_FILE}: releases encrypted with it cannot be read",
                      file=sys.stderr)
        return exported
    if encryption_off(os.environ.get("MPR_PAYLOAD_ENCRYPTION")):
        return ""
    if not PAYLOAD_KEYS_FILE.exists():
        entry = new_key_entry(datetime.now(UTC).strftime("stack-%Y%m%d"))
        _write_private(PAYLOAD_KEYS_FILE, entry + "\n")
    PAYLOAD_KEYS_FILE.chmod(PRIVATE)
    keys = PAYLOAD_KEYS_FILE.read_text().strip()
    KeyRing.parse(keys)
    return keys


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, also when it existed with a wider mode."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    os.fchmod(descriptor, PRIVATE)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _start_codec_server(ports: Ports, keys: str) -> str:
    """The codec server the dev server's Web UI decrypts payloads with (from the browser: it
    allows the UI's origin)."""
    url = f"http://127.0.0.1:{ports.codec_server}"
    if _running(CODEC_SERVER_PID):
        return url
    _require_free(ports.codec_server, "CODEC_SERVER_PORT", "the codec server")
    env = {
        **os.environ,
        "MPR_PAYLOAD_KEYS": keys,
        "MPR_CODEC_SERVER_ADDRESS": f"127.0.0.1:{ports.codec_server}",
        "MPR_CODEC_CORS_ORIGINS":
            f"http://localhost:{ports.temporal_ui},http://127.0.0.1:{ports.temporal_ui}",
    }
    log_file = DATA_DIR / "codec-server.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mpr.infra.codec_server"], env=env,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    CODEC_SERVER_PID.write_text(str(process.pid))
    deadline = time.monotonic() + 30
    while not port_in_use(ports.codec_server):
        if process.poll() is not None or time.monotonic() > deadline:
            raise EntryPointError(f"the codec server did not start: see {log_file}")
        time.sleep(0.1)
    return url


def _start_temporal(ports: Ports, codec_endpoint: str) -> str:
    address = ports.temporal_address
    if _running(TEMPORAL_PID):
        return address
    codec = ["--ui-codec-endpoint", codec_endpoint] if codec_endpoint else []
    log_file = DATA_DIR / "temporal.log"
    try:
        process = start_temporal_dev_server(
            (DATA_DIR / "temporal.db").resolve(), ports.temporal, ports.temporal_ui,
            log_file, *codec,
        )
        TEMPORAL_PID.write_text(str(process.pid))
        asyncio.run(wait_for_temporal(address, process))
    except (OSError, RuntimeError, TimeoutError) as error:  # e.g. a port taken meanwhile
        raise EntryPointError(f"the Temporal dev server did not start: {error} (see "
                              f"{log_file}; TEMPORAL_PORT and TEMPORAL_UI_PORT choose its "
                              "ports)") from error
    return address


def _start_postgres() -> str:
    try:
        return start_postgres(PGDATA)
    except (OSError, RuntimeError, subprocess.SubprocessError, asyncpg.PostgresError) as error:
        raise EntryPointError(f"the embedded PostgreSQL did not start in {PGDATA}: {error} "
                              "(or export DATABASE_URL to use another server)") from error


def _start_worker(stack: dict[str, str]) -> None:
    with (DATA_DIR / "worker.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.main"],
            env={**os.environ, **stack},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    WORKER_PID.write_text(str(process.pid))


def _running(pid_file: Path) -> bool:
    return pid_file.exists() and process_alive(int(pid_file.read_text()))


def _stop(pid_file: Path, timeout: float = 30) -> bool:
    if not pid_file.exists():
        return False
    stopped = stop_process(int(pid_file.read_text()), timeout=timeout)
    pid_file.unlink()
    return stopped


def _read_stack_env() -> dict[str, str]:
    return read_env_file(STACK_ENV_FILE)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m mpr.infra.stack", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    action = parser.parse_args().action
    if action == "up":
        up()
    elif action == "down":
        down()
    elif not status():
        return FAILURE
    return OK


if __name__ == "__main__":
    run_and_exit(main)
