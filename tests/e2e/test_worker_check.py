"""`python -m workers.main --check` against the real stack, configured right and in each of the
ways it is typically configured wrong; and the worker itself refusing to start on them."""

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mpr.infra.dev_issuer import ISSUER as DEV_ISSUER
from mpr.infra.servers import free_port
from mpr.infra.settings import Settings
from tests.stack import WorkerProcess
from workers.check import Finding, failed, run_checks
from workflows import search_attributes

# Temporal's env config reads these from the process environment: none may leak in from the
# developer's shell.
TEMPORAL_CONNECTION = ("TEMPORAL_API_KEY", "TEMPORAL_TLS", "TEMPORAL_TLS_CLIENT_CERT_PATH",
                       "TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
                       "TEMPORAL_TLS_SERVER_NAME", "TEMPORAL_PROFILE")


@pytest.fixture
def clean_connection_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in TEMPORAL_CONNECTION:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "absent.toml"))


def worker_env(worker: WorkerProcess, tmp_path: Path, **changes: str) -> dict[str, str]:
    """The stack worker's settings (its metrics port left to it)."""
    env = {name: value for name, value in worker.env.items()
           if name not in (*TEMPORAL_CONNECTION, "METRICS_ADDRESS")}
    return {**env, "TEMPORAL_CONFIG_FILE": str(tmp_path / "absent.toml"), **changes}


async def findings(env: dict[str, str]) -> dict[str, Finding]:
    return {finding.subject: finding for finding in await run_checks(Settings.from_env(env))}


def check_process(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.main", "--check"], env=env,
                          capture_output=True, text=True, timeout=120)


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mpr-worker")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "client.pem", tmp_path / "client.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_a_good_deployment_is_reported_line_by_line(worker: WorkerProcess,
                                                    tmp_path: Path) -> None:
    result = check_process(worker_env(worker, tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    subjects = [line[5:23].strip() for line in lines]
    assert subjects == ["payload keys", "identity", "build sources", "build sources",
                        "artifacts", "temporal", "namespace", "search attributes", "task queue",
                        "catalog", "migrations"]
    assert all(line.startswith("ok   ") for line in lines), result.stdout
    text = result.stdout
    assert "encrypts with test-session" in text
    # The worker verifies tokens of the tests' dev issuer, from the keys beside its data.
    assert lines[1] == (
        f"ok   identity           verifies tokens of {DEV_ISSUER} with 1 key(s) from "
        f"{worker.env['MPR_AUTH_JWKS_FILE']}; actor from preferred_username")
    assert worker.env["MPR_AUTH_JWKS_FILE"] == str(
        Path(worker.env["MPR_DATA_DIR"], "auth", "jwks.json").resolve())
    # ... and so does the stack's running worker: verification is on, not MPR_AUTH=off.
    started = next(line for line in worker.log_lines() if line.get("event") == "worker started")
    assert started["identity_issuer"] == DEV_ISSUER and worker.env["MPR_AUTH"] == "required"
    assert f"{worker.env['TEMPORAL_ADDRESS']} (plain text), server " in text
    assert "default (closed releases kept " in text
    assert f"all {len(search_attributes.ALL)} registered" in text
    assert f"{worker.env['TEMPORAL_TASK_QUEUE']}: 1 workflow poller, 1 activity poller" in text
    assert "PostgreSQL" in text and "all applied" in text


async def test_a_wrong_address_is_named(worker: WorkerProcess, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    found = await findings(worker_env(worker, tmp_path, TEMPORAL_ADDRESS=address))

    assert found["temporal"].verdict == "FAIL"
    assert found["temporal"].detail.startswith(f"cannot reach Temporal at {address}: ")
    assert "TEMPORAL_ADDRESS" in found["temporal"].detail
    assert found["namespace"].detail == "not checked: Temporal is not reachable"
    assert found["catalog"].verdict == "ok", "the other checks still run"


async def test_a_wrong_namespace_is_named(worker: WorkerProcess, tmp_path: Path) -> None:
    found = await findings(worker_env(worker, tmp_path, TEMPORAL_NAMESPACE="relases"))

    assert found["temporal"].verdict == "ok"
    assert found["namespace"].verdict == "FAIL"
    assert found["namespace"].detail.startswith(
        f"namespace 'relases' does not exist on {worker.env['TEMPORAL_ADDRESS']} "
        "(TEMPORAL_NAMESPACE)")


async def test_a_certificate_that_cannot_be_read_is_named(
    worker: WorkerProcess, tmp_path: Path, clean_connection_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = tmp_path / "client.pem"
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(missing))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(tmp_path / "client.key"))
    found = await findings(worker_env(worker, tmp_path))

    assert found["temporal"].verdict == "FAIL"
    assert found["temporal"].detail.startswith(
        f"cannot read {missing}: No such file or directory (named by TEMPORAL_TLS_*")


async def test_tls_against_a_server_that_does_not_speak_it_is_told_apart(
    worker: WorkerProcess, tmp_path: Path, clean_connection_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(cert))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(key))
    found = await findings(worker_env(worker, tmp_path))

    detail = found["temporal"].detail
    assert found["temporal"].verdict == "FAIL"
    assert detail.startswith(f"TLS with {worker.env['TEMPORAL_ADDRESS']} failed: "), detail
    assert "TEMPORAL_TLS_CLIENT_CERT_PATH" in detail


async def test_an_unreachable_catalog_is_named_without_its_password(
    worker: WorkerProcess, tmp_path: Path,
) -> None:
    port = free_port()
    url = f"postgresql://mpr:s3cret@127.0.0.1:{port}/mini_program_release"
    found = await findings(worker_env(worker, tmp_path, DATABASE_URL=url))

    detail = found["catalog"].detail
    assert found["catalog"].verdict == "FAIL"
    assert detail.startswith(f"cannot reach PostgreSQL at postgresql://mpr@127.0.0.1:{port}/")
    assert "s3cret" not in detail and "DATABASE_URL" in detail


async def test_missing_keys_and_directories_fail(worker: WorkerProcess, tmp_path: Path) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    env = worker_env(worker, tmp_path, MPR_PAYLOAD_KEYS="",
                     BUILD_SOURCE_ROOTS=str(tmp_path / "nowhere"),
                     ARTIFACT_DIR=str(read_only / "artifacts"))
    found = await findings(env)

    assert found["payload keys"].detail.startswith("MPR_PAYLOAD_KEYS is not set")
    assert found["build sources"].detail == f"{tmp_path / 'nowhere'} is not a directory " \
        "(BUILD_SOURCE_ROOTS)"
    if os.geteuid() != 0:  # root writes anywhere
        assert found["artifacts"].verdict == "FAIL"
    assert failed(list(found.values()))


def test_the_worker_refuses_to_start_where_the_check_fails(worker: WorkerProcess,
                                                          tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    env = worker_env(worker, tmp_path, TEMPORAL_ADDRESS=address,
                     TEMPORAL_TASK_QUEUE="never-polled")
    check = check_process(env)
    started = subprocess.run([sys.executable, "-m", "workers.main"], env=env,
                             capture_output=True, text=True, timeout=120)

    assert check.returncode == 1 and f"FAIL temporal           cannot reach Temporal at {address}" \
        in check.stdout
    assert started.returncode == 1
    assert f"the worker cannot start: cannot reach Temporal at {address}" in started.stderr
    assert "--check" in started.stderr


def test_a_metrics_port_in_use_stops_the_worker_naming_it(worker: WorkerProcess,
                                                         tmp_path: Path) -> None:
    taken = worker.env["METRICS_ADDRESS"]
    env = worker_env(worker, tmp_path, METRICS_ADDRESS=taken, TEMPORAL_TASK_QUEUE="never-polled")
    started = subprocess.run([sys.executable, "-m", "workers.main"], env=env,
                             capture_output=True, text=True, timeout=120)

    assert started.returncode == 1 and "Traceback" not in started.stderr
    assert f"the worker cannot serve metrics on METRICS_ADDRESS={taken}: " in started.stderr


def test_invalid_settings_stop_the_worker_naming_the_variable(worker: WorkerProcess,
                                                              tmp_path: Path) -> None:
    env = worker_env(worker, tmp_path, WORKER_MAX_CACHED_WORKFLOWS="many")
    result = check_process(env)

    assert result.returncode == 1
    assert "WORKER_MAX_CACHED_WORKFLOWS must be a whole number, not 'many'" in result.stderr


# --- identity ----------------------------------------------------------------------------


async def test_the_issuers_keys_are_checked(worker: WorkerProcess, tmp_path: Path) -> None:
    missing = tmp_path / "auth" / "jwks.json"
    not_keys = tmp_path / "not-keys.json"
    not_keys.write_text('{"keys": "none"}')

    absent = await findings(worker_env(worker, tmp_path, MPR_AUTH_JWKS_FILE=str(missing)))
    garbled = await findings(worker_env(worker, tmp_path, MPR_AUTH_JWKS_FILE=str(not_keys)))

    assert absent["identity"].verdict == "FAIL"
    assert absent["identity"].detail.startswith(f"cannot read MPR_AUTH_JWKS_FILE {missing}: ")
    assert garbled["identity"].verdict == "FAIL"
    assert f"MPR_AUTH_JWKS_FILE {not_keys} is not a JWKS" in garbled["identity"].detail
    assert absent["catalog"].verdict == "ok", "the other checks still run"


async def test_verification_required_without_an_issuer_is_named(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    found = await findings(worker_env(worker, tmp_path, MPR_AUTH_ISSUER="",
                                      MPR_AUTH_JWKS_FILE=""))

    assert found["identity"].verdict == "FAIL"
    assert found["identity"].detail.startswith(
        "MPR_AUTH is required but MPR_AUTH_ISSUER, MPR_AUTH_JWKS_URL or MPR_AUTH_JWKS_FILE "
        "is not set")


async def test_verification_off_is_a_warning(worker: WorkerProcess, tmp_path: Path) -> None:
    found = await findings(worker_env(worker, tmp_path, MPR_AUTH="off"))

    assert found["identity"].verdict == "warn"
    assert "actor field is believed" in found["identity"].detail


def test_the_worker_refuses_to_start_without_an_issuer(worker: WorkerProcess,
                                                       tmp_path: Path) -> None:
    env = worker_env(worker, tmp_path, MPR_AUTH_ISSUER="", TEMPORAL_TASK_QUEUE="never-polled")
    started = subprocess.run([sys.executable, "-m", "workers.main"], env=env,
                             capture_output=True, text=True, timeout=120)

    assert started.returncode == 1 and "Traceback" not in started.stderr
    assert "MPR_AUTH is required but MPR_AUTH_ISSUER is not set" in started.stderr
