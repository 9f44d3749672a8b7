"""The worker's liveness: `python -m workers.health` (the image's HEALTHCHECK).

A running worker with WORKER_HEALTH_FILE set rewrites that file every TOUCH_EVERY_SECONDS from
its event loop, so a fresh file shows that the process is up and its loop is not stalled (a
loop blocked by work that belongs in a thread would stop both polling and touching). It says
nothing about Temporal or PostgreSQL being reachable: the worker waits those out by itself, and
restarting it would not bring them back (`python -m workers.main --check` tells about them).

Exit 0: fresh; 1: stale, missing or unreadable, with the reason on stderr.
"""

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from mpr.infra.exit_codes import FAILURE, OK
from mpr.infra.settings import Settings

TOUCH_EVERY_SECONDS = 5.0
STALE_AFTER_SECONDS = 30.0


def write_health(path: Path, task_queue: str) -> None:
    """Replace the file atomically: a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "task_queue": task_queue, "at": time.time()}
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
    os.replace(temp, path)


async def keep_touching(path: Path, task_queue: str) -> None:
    """Until cancelled; the file is removed then, so a stopped worker is not reported live."""
    try:
        while True:
            await asyncio.to_thread(write_health, path, task_queue)
            await asyncio.sleep(TOUCH_EVERY_SECONDS)
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


def health_problem(path: Path, now: float, stale_after: float = STALE_AFTER_SECONDS) -> str | None:
    """Why the worker behind `path` is not live, or None when it is."""
    try:
        record = json.loads(path.read_text())
        age = now - float(record["at"])
    except FileNotFoundError:
        return f"{path} does not exist: the worker is not running (or has not started yet)"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{path} is unreadable: {error}"
    if age > stale_after:
        return (f"the worker (pid {record.get('pid')}) last showed life {age:.0f} s ago "
                f"(more than {stale_after:.0f} s): its event loop is stalled or it has hung")
    return None


def main() -> int:
    settings = Settings.from_env()
    if settings.health_file is None:
        print("WORKER_HEALTH_FILE is not set: the worker writes no health file",
              file=sys.stderr)
        return FAILURE
    problem = health_problem(settings.health_file, time.time())
    if problem:
        print(problem, file=sys.stderr)
        return FAILURE
    return OK


if __name__ == "__main__":
    sys.exit(main())
