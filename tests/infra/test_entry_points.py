"""Every entry point fails as a new user needs it to: ONE line on stderr saying what failed and
what to do (the variable to set or unset), an exit code of mpr.infra.exit_codes, and no
traceback. Each runs as a subprocess, in an environment of its own: its own data directory
(so no `.data/stack.env` of a developer's stack), free ports, no Temporal or PostgreSQL
settings but those of the test.

The tests that run `make up` or the worker are in the e2e lane (tests/conftest.py counts any
such process as a server), though only those marked so below with a comment start one."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpr.infra.codec import new_key_entry
from mpr.infra.exit_codes import FAILURE, USAGE
from mpr.infra.servers import free_port
from tests.identity import auth_env

REPO = Path(__file__).resolve().parents[2]
# What a developer's shell may export that would change what these entry points do.
CLEARED_PREFIXES = ("TEMPORAL_", "MPR_", "WORKER_", "LOG_")
CLEARED = {"DATABASE_URL", "METRICS_ADDRESS", "ARTIFACT_DIR", "BUILD_SOURCE_ROOTS",
           "CODEC_SERVER_PORT"}


def environment(data_dir: Path, **settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name not in CLEARED and not name.startswith(CLEARED_PREFIXES)}
    return {
        **env,
        "MPR_DATA_DIR": str(data_dir),
        # No Temporal profile of the developer's either.
        "TEMPORAL_CONFIG_FILE": str(data_dir.parent / "absent-temporal.toml"),
        **settings,
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def one_line(result: subprocess.CompletedProcess[str], code: int, *hints: str) -> str:
    """The one line a failed run printed on stderr, checked for the exit code and hints."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == code, result
    for hint in hints:
        assert hint in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def dead_database_url() -> str:
    return f"postgresql://postgres:secret@127.0.0.1:{free_port()}/mpr"


# --- make up (python -m mpr.infra.stack) ----------------------------------------------------


def stack_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """`make up` on free ports, without payload keys or codec server."""
    ports = {"TEMPORAL_PORT": str(free_port()), "TEMPORAL_UI_PORT": str(free_port())}
    return environment(data_dir, MPR_PAYLOAD_ENCRYPTION="off", **{**ports, **settings})


def assert_nothing_started(data_dir: Path) -> None:
    started = sorted(str(path.relative_to(data_dir)) for pattern in ("*.pid", "*/*.pid")
                     for path in data_dir.glob(pattern))
    assert started == [], f"left running: {started}"


@pytest.mark.e2e
def test_up_with_an_unreachable_database(data_dir: Path) -> None:
    url = dead_database_url()
    result = run(stack_env(data_dir, DATABASE_URL=url), "mpr.infra.stack", "up")

    line = one_line(result, FAILURE, "cannot reach PostgreSQL", "connection refused",
                    "unset DATABASE_URL")
    assert "secret" not in line, "the password stays out of the message"
    assert_nothing_started(data_dir)


@pytest.mark.e2e
def test_up_with_the_temporal_port_taken(data_dir: Path, taken_port: int) -> None:
    env = stack_env(data_dir)
    result = run({**env, "TEMPORAL_PORT": str(taken_port)}, "mpr.infra.stack", "up")

    one_line(result, FAILURE, f"port {taken_port}", "already in use", "TEMPORAL_PORT",
             f"TEMPORAL_ADDRESS=127.0.0.1:{taken_port}")
    assert_nothing_started(data_dir)


@pytest.mark.e2e
def test_up_with_the_exports_of_a_stopped_stack(data_dir: Path) -> None:
    """A shell that exported .data/stack.env keeps its values after `make down`."""
    data_dir.mkdir()
    (data_dir / "temporal.db").touch()  # the dev server of that stack was here
    temporal_port = free_port()
    stale = {
        "TEMPORAL_PORT": str(temporal_port),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "DATABASE_URL": f"postgresql://postgres:@/mini_program_release?host={data_dir}/postgres",
    }
    result = run(stack_env(data_dir, **stale), "mpr.infra.stack", "up")

    one_line(result, FAILURE, "not running", "unset TEMPORAL_ADDRESS DATABASE_URL", "make up")
    assert_nothing_started(data_dir)


@pytest.mark.e2e
def test_up_with_an_unreachable_exported_temporal(data_dir: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = run(stack_env(data_dir, TEMPORAL_ADDRESS=address), "mpr.infra.stack", "up")

    one_line(result, FAILURE, f"TEMPORAL_ADDRESS={address}", "Connection refused",
             "unset TEMPORAL_ADDRESS")
    assert_nothing_started(data_dir)


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "value"), [("TEMPORAL_PORT", "seven"),
                                             ("CODEC_SERVER_PORT", "70000")])
def test_up_with_an_unusable_port_setting(data_dir: Path, name: str, value: str) -> None:
    result = run({**stack_env(data_dir), name: value}, "mpr.infra.stack", "up")
    one_line(result, FAILURE, f"{name} must be a port number", repr(value))


@pytest.mark.e2e
def test_up_with_malformed_payload_keys(data_dir: Path) -> None:
    env = {**stack_env(data_dir), "MPR_PAYLOAD_ENCRYPTION": "on", "MPR_PAYLOAD_KEYS": "nope"}
    one_line(run(env, "mpr.infra.stack", "up"), FAILURE, "MPR_PAYLOAD_KEYS")


@pytest.fixture
def traversable_dir() -> Iterator[Path]:
    """Under /tmp and open to all: as root, the embedded PostgreSQL runs as another user."""
    base = Path(tempfile.mkdtemp(prefix="mpr-stack-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.e2e
def test_up_again_after_down_in_a_shell_that_exported_the_stack(traversable_dir: Path) -> None:
    """The real thing, with real servers: `make up`, export .data/stack.env, `make down`,
    `make up`."""
    data_dir = traversable_dir / "data"
    env = stack_env(data_dir, METRICS_ADDRESS=f"127.0.0.1:{free_port()}",
                    BUILD_SOURCE_ROOTS=str(traversable_dir))
    try:
        first = run(env, "mpr.infra.stack", "up")
        assert first.returncode == 0, first.stderr
        exported = dict(line.split("=", 1)
                        for line in (data_dir / "stack.env").read_text().splitlines())
    finally:
        down = run(env, "mpr.infra.stack", "down")
    assert down.returncode == 0 and "PostgreSQL" in down.stdout, down

    again = run({**env, **exported}, "mpr.infra.stack", "up")

    one_line(again, FAILURE, "unset TEMPORAL_ADDRESS DATABASE_URL")
    assert_nothing_started(data_dir)


# --- the worker (python -m workers.main) ----------------------------------------------------


def worker_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """Settings that pass the worker's own checks, so that it goes on to connect."""
    return environment(data_dir, MPR_PAYLOAD_KEYS=new_key_entry("entry-points"),
                       **auth_env(), **settings)


@pytest.mark.e2e
def test_worker_without_an_identity_issuer(data_dir: Path) -> None:
    env = environment(data_dir, MPR_PAYLOAD_KEYS=new_key_entry("entry-points"),
                      DATABASE_URL=dead_database_url())
    one_line(run(env, "workers.main"), FAILURE, "MPR_AUTH is required but MPR_AUTH_ISSUER",
             "make up", "MPR_AUTH=off")


@pytest.mark.e2e
def test_worker_with_unusable_settings(data_dir: Path) -> None:
    env = worker_env(data_dir, WORKER_MAX_CACHED_WORKFLOWS="many")
    one_line(run(env, "workers.main"), FAILURE, "WORKER_MAX_CACHED_WORKFLOWS", "'many'")


@pytest.mark.e2e
def test_worker_without_payload_keys(data_dir: Path) -> None:
    env = environment(data_dir)
    one_line(run(env, "workers.main"), FAILURE, "MPR_PAYLOAD_KEYS is not set",
             "MPR_PAYLOAD_ENCRYPTION=off")


@pytest.mark.e2e
def test_worker_without_a_database_url(data_dir: Path) -> None:
    env = worker_env(data_dir, TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    one_line(run(env, "workers.main"), FAILURE, "DATABASE_URL is not set", "make up")


@pytest.mark.e2e
def test_worker_with_an_unreachable_temporal(data_dir: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    env = worker_env(data_dir, TEMPORAL_ADDRESS=address, DATABASE_URL=dead_database_url())
    one_line(run(env, "workers.main"), FAILURE, f"cannot reach Temporal at {address}",
             "Connection refused", "TEMPORAL_ADDRESS", "--check")


@pytest.mark.e2e  # a real Temporal dev server (temporal_address)
def test_worker_with_an_unreachable_database(data_dir: Path, temporal_address: str) -> None:
    env = worker_env(data_dir, TEMPORAL_ADDRESS=temporal_address,
                     DATABASE_URL=dead_database_url())
    line = one_line(run(env, "workers.main"), FAILURE, "cannot reach PostgreSQL",
                    "DATABASE_URL", "--check")
    assert "secret" not in line


# --- mpr --------------------------------------------------------------------------------------


def test_mpr_with_unusable_settings(data_dir: Path, tmp_path: Path) -> None:
    env = environment(data_dir, WORKER_ACTIVITY_TASK_POLLERS="0")
    history = REPO / "tests" / "histories" / "release_full.json"
    result = run(env, "mpr.cli.main", "replay", str(history))
    assert one_line(result, FAILURE, "WORKER_ACTIVITY_TASK_POLLERS").startswith("mpr: ")


def test_mpr_with_an_unreachable_temporal(data_dir: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = run(environment(data_dir, TEMPORAL_ADDRESS=address), "mpr.cli.main", "history",
                 "some-release")
    one_line(result, FAILURE, f"mpr: cannot reach Temporal at {address}", "TEMPORAL_ADDRESS")


# --- the codec server (python -m mpr.infra.codec_server) -------------------------------------


def test_codec_server_without_keys(data_dir: Path) -> None:
    one_line(run(environment(data_dir), "mpr.infra.codec_server"), FAILURE,
             "needs MPR_PAYLOAD_KEYS")


def test_codec_server_on_a_malformed_address(data_dir: Path) -> None:
    env = worker_env(data_dir, MPR_CODEC_SERVER_ADDRESS="localhost")
    one_line(run(env, "mpr.infra.codec_server"), FAILURE, "'localhost' is not host:port",
             "MPR_CODEC_SERVER_ADDRESS")


def test_codec_server_on_a_port_in_use(data_dir: Path, taken_port: int) -> None:
    env = worker_env(data_dir, MPR_CODEC_SERVER_ADDRESS=f"127.0.0.1:{taken_port}")
    one_line(run(env, "mpr.infra.codec_server"), FAILURE, f"127.0.0.1:{taken_port}",
             "MPR_CODEC_SERVER_ADDRESS")


# --- python -m mpr.catalog.migrate ---------------------------------------------------------


def test_migrate_without_a_database_url(data_dir: Path) -> None:
    one_line(run(environment(data_dir), "mpr.catalog.migrate"), FAILURE,
             "DATABASE_URL is not set")


def test_migrate_with_an_unreachable_database(data_dir: Path) -> None:
    env = environment(data_dir, DATABASE_URL=dead_database_url())
    line = one_line(run(env, "mpr.catalog.migrate"), FAILURE, "cannot reach PostgreSQL",
                    "connection refused", "DATABASE_URL")
    assert "secret" not in line


def test_migrate_with_a_database_url_that_is_not_one(data_dir: Path) -> None:
    env = environment(data_dir, DATABASE_URL="mysql://root@localhost/mpr")
    one_line(run(env, "mpr.catalog.migrate"), FAILURE, "DATABASE_URL is not a PostgreSQL URL")


# --- python -m mpr.infra.codec ---------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["new-key", "not a key id"]], ids=["no-command", "bad-id"])
def test_codec_key_maker_usage(data_dir: Path, args: list[str]) -> None:
    one_line(run(environment(data_dir), "mpr.infra.codec", *args), USAGE)
