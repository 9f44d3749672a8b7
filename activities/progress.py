"""Progress of blocking activity work running in a thread, reported through heartbeats.

The work runs off the event loop (asyncio.to_thread), so a heartbeat task on the loop keeps
the activity alive whatever the thread is doing. Cancellation flows the other way: when the
activity is cancelled the thread cannot be killed, so it checks `Progress.check()` between
chunks of work and stops there.
"""

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio import activity


class Cancelled(Exception):
    """The activity was cancelled; raised in the worker thread at its next check."""


class Progress:
    """Counters written by the worker thread and read by the heartbeat task."""

    def __init__(self) -> None:
        self.stage = "starting"
        self.files = 0
        self.bytes = 0
        self._cancelled = threading.Event()

    def file_done(self, size: int) -> None:
        self.files += 1
        self.bytes += size

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled()

    def details(self) -> dict[str, str | int]:
        return {"stage": self.stage, "files": self.files, "bytes": self.bytes}


@asynccontextmanager
async def heartbeating(progress: Progress, every_seconds: float) -> AsyncIterator[None]:
    """Heartbeat now and every `every_seconds` until the block exits; stop the thread's work
    if the block is cancelled."""
    activity.heartbeat(progress.details())
    beat = asyncio.create_task(_beat(progress, every_seconds))
    try:
        yield
    except asyncio.CancelledError:
        progress.cancel()
        raise
    finally:
        beat.cancel()


async def _beat(progress: Progress, every_seconds: float) -> None:
    while True:
        await asyncio.sleep(every_seconds)
        activity.heartbeat(progress.details())
