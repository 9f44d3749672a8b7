"""The embedded stack behind `make up` / `make down`: `python -m infra.stack up|down|status`.

`up` starts what the environment does not already provide (the Temporal dev server unless
TEMPORAL_ADDRESS is set, PostgreSQL unless DATABASE_URL is set), applies the migrations,
starts a worker in the background and writes .data/stack.env. Everything lives under .data/.
"""

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

from catalog.db import apply_migrations
from infra.entrypoint import run_and_exit
from infra.servers import (
    process_alive,
    start_postgres,
    start_temporal_dev_server,
    stop_postgres,
    stop_process,
    wait_for_temporal,
)
from infra.settings import DATA_DIR, DEFAULT_TASK_QUEUE, STACK_ENV_FILE, read_env_file

TEMPORAL_PORT = int(os.environ.get("TEMPORAL_PORT", "7233"))
TEMPORAL_UI_PORT = int(os.environ.get("TEMPORAL_UI_PORT", "8233"))
PGDATA = DATA_DIR / "postgres"
TEMPORAL_PID = DATA_DIR / "temporal.pid"
WORKER_PID = DATA_DIR / "worker.pid"


def up() -> dict[str, str]:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    if _running(WORKER_PID):
        print(f"the stack is already up ({STACK_ENV_FILE}); `make down` stops it")
        return _read_stack_env()

    stack = {
        "TEMPORAL_ADDRESS": os.environ.get("TEMPORAL_ADDRESS") or _start_temporal(),
        "TEMPORAL_NAMESPACE": os.environ.get("TEMPORAL_NAMESPACE") or "default",
        "TEMPORAL_TASK_QUEUE": os.environ.get("TEMPORAL_TASK_QUEUE") or DEFAULT_TASK_QUEUE,
        "DATABASE_URL": os.environ.get("DATABASE_URL") or start_postgres(PGDATA),
        "TEMPORAL_UI_URL": os.environ.get("TEMPORAL_UI_URL")
        or (f"http://localhost:{TEMPORAL_UI_PORT}" if _running(TEMPORAL_PID) else ""),
        "ARTIFACT_DIR": os.environ.get("ARTIFACT_DIR") or str((DATA_DIR / "artifacts").resolve()),
        "METRICS_ADDRESS": os.environ.get("METRICS_ADDRESS") or "127.0.0.1:9464",
        "BUILD_SOURCE_ROOTS": os.environ.get("BUILD_SOURCE_ROOTS") or str(Path.cwd().resolve()),
    }
    asyncio.run(apply_migrations(stack["DATABASE_URL"]))
    STACK_ENV_FILE.write_text("".join(f"{key}={value}\n" for key, value in stack.items()))
    _start_worker(stack)
    for key, value in stack.items():
        print(f"{key}={value}")
    print(f"logs: {DATA_DIR}/temporal.log, {DATA_DIR}/worker.log; `make down` stops the stack")
    return stack


def down() -> None:
    stopped = []
    if _stop(WORKER_PID, timeout=40):
        stopped.append("worker")
    if _stop(TEMPORAL_PID):
        stopped.append("Temporal dev server")
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
    for name, alive in parts.items():
        print(f"{name}: {'running' if alive else 'stopped'}")
    return all(parts.values())


def _start_temporal() -> str:
    address = f"127.0.0.1:{TEMPORAL_PORT}"
    if _running(TEMPORAL_PID):
        return address
    process = start_temporal_dev_server(
        (DATA_DIR / "temporal.db").resolve(), TEMPORAL_PORT, TEMPORAL_UI_PORT,
        DATA_DIR / "temporal.log",
    )
    TEMPORAL_PID.write_text(str(process.pid))
    asyncio.run(wait_for_temporal(address, process))
    return address


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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    action = parser.parse_args().action
    if action == "up":
        up()
    elif action == "down":
        down()
    elif not status():
        sys.exit(1)


if __name__ == "__main__":
    run_and_exit(main)
