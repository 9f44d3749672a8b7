"""`python -m workers.main --check`: connect to everything the worker needs, say what was found,
and change nothing.

Each finding is one line: `ok`, `warn` (works, but look) or `FAIL` (the worker would not run
as configured), with what was found or why it failed, naming the setting to change. Exit 0
when nothing failed, 1 otherwise. Checks that depend on a failed one are skipped and say so.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import asyncpg
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    DescribeTaskQueueRequest,
    GetSystemInfoRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from mpr.catalog.db import CONNECT_TIMEOUT_SECONDS, MigrationError, pending_migrations
from mpr.infra.codec import PayloadKeyError
from mpr.infra.identity import KeysUnavailable, verifier_from
from mpr.infra.settings import Settings, SettingsError
from mpr.infra.temporal import (
    TemporalSettingsError,
    connect,
    connect_config,
    payload_codec,
    search_attribute_types,
)

Verdict = Literal["ok", "warn", "FAIL"]
# How a failed TLS handshake reads (rustls, through the SDK): a server answering in plain text
# (InvalidContentType), a certificate refused or not trusted, an alert.
TLS_WORDS = ("tls", "certificate", "handshake", "ssl", "x509", "pem", "invalidcontenttype",
             "invalidmessage", "unknownissuer", "alert")


@dataclass(frozen=True)
class Finding:
    verdict: Verdict
    subject: str
    detail: str

    def line(self) -> str:
        return f"{self.verdict:<4} {self.subject:<18} {self.detail}"


def ok(subject: str, detail: str) -> Finding:
    return Finding("ok", subject, detail)


def warn(subject: str, detail: str) -> Finding:
    return Finding("warn", subject, detail)


def fail(subject: str, detail: str) -> Finding:
    return Finding("FAIL", subject, detail)


async def run_checks(settings: Settings) -> list[Finding]:
    findings = [check_payload_keys(settings), await check_identity(settings),
                *check_directories(settings)]
    findings += await check_temporal(settings)
    findings += await check_catalog(settings)
    return findings


def failed(findings: Sequence[Finding]) -> bool:
    return any(finding.verdict == "FAIL" for finding in findings)


# --- payload keys and directories ------------------------------------------------------------


def check_payload_keys(settings: Settings) -> Finding:
    if not settings.payload_encryption:
        return warn("payload keys", "MPR_PAYLOAD_ENCRYPTION=off: personal data would be "
                    "stored in Temporal in plain text")
    if settings.payload_keys is None:
        return fail("payload keys", "MPR_PAYLOAD_KEYS is not set: the worker refuses to start "
                    "without it (docs/security.md)")
    try:
        key_ids = payload_codec(settings).keys.key_ids
    except PayloadKeyError as error:
        return fail("payload keys", str(error))
    others = f"; also decrypts with {', '.join(key_ids[1:])}" if key_ids[1:] else ""
    return ok("payload keys", f"encrypts with {key_ids[0]}{others}")


async def check_identity(settings: Settings) -> Finding:
    try:
        verifier = verifier_from(settings)
    except SettingsError as error:
        return fail("identity", str(error))
    if verifier is None:
        return warn("identity", "MPR_AUTH=off: a command's actor field is believed, so anyone "
                    "who can send to the namespace can act as anyone")
    try:
        keys = await verifier.key_set(refresh=True)
    except KeysUnavailable as error:
        return fail("identity", f"{error} (MPR_AUTH_JWKS_URL / MPR_AUTH_JWKS_FILE)")
    return ok("identity", f"verifies tokens of {verifier.issuer} with {len(keys.keys)} key(s) "
              f"from {verifier.keys_from}; actor from {settings.auth_subject_claim}")


def check_directories(settings: Settings) -> list[Finding]:
    findings = []
    for root in settings.build_source_roots:
        if not root.is_dir():
            findings.append(fail("build sources", f"{root} is not a directory "
                                 "(BUILD_SOURCE_ROOTS)"))
        elif not os.access(root, os.R_OK | os.X_OK):
            findings.append(fail("build sources", f"{root} is not readable by this user"))
        else:
            findings.append(ok("build sources", f"{root} readable"))
    findings.append(_writable_artifacts(settings.artifact_dir))
    return findings


def _writable_artifacts(path: Path) -> Finding:
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return fail("artifacts", f"{path}: no directory to create it in (ARTIFACT_DIR)")
    if not os.access(existing, os.W_OK | os.X_OK):
        return fail("artifacts", f"{existing} is not writable by this user (ARTIFACT_DIR)")
    made = "" if existing == path else " (created at the first build)"
    return ok("artifacts", f"{path} writable{made}")


# --- Temporal --------------------------------------------------------------------------------


async def check_temporal(settings: Settings) -> list[Finding]:
    try:
        config = connect_config(settings)
    except TemporalSettingsError as error:
        return [fail("temporal", str(error)), _skipped("namespace")]
    address = config["target_host"]
    namespace = config.get("namespace", "default")
    tls = bool(config.get("tls"))
    how = f"{'TLS' if tls else 'plain text'}{', API key' if config.get('api_key') else ''}"
    try:
        client = await connect(settings)
        info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    except (ConnectionError, RPCError) as error:
        return [fail("temporal", _unreachable(address, tls, error)), _skipped("namespace")]
    version = info.server_version or "version not told"
    findings = [ok("temporal", f"{address} ({how}), server {version}")]
    try:
        described = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace))
    except RPCError as error:
        return [*findings, fail("namespace", _namespace_problem(namespace, address, error))]
    retention = described.config.workflow_execution_retention_ttl.ToTimedelta()
    findings.append(ok("namespace", f"{namespace} (closed releases kept {retention})"))
    findings.append(await _search_attributes(client))
    findings.append(await _pollers(client, settings.task_queue))
    return findings


def _unreachable(address: str, tls: bool, error: Exception) -> str:
    detail = str(error.__cause__ or error)
    if tls and any(word in detail.lower() for word in TLS_WORDS):
        return (f"TLS with {address} failed: {detail}. Check TEMPORAL_TLS_CLIENT_CERT_PATH, "
                "TEMPORAL_TLS_CLIENT_KEY_PATH, TEMPORAL_TLS_SERVER_CA_CERT_PATH and "
                "TEMPORAL_TLS_SERVER_NAME, and that the server speaks TLS on that port")
    if isinstance(error, RPCError) and error.status is RPCStatusCode.UNAUTHENTICATED:
        return f"{address} refused the credentials: {error.message} (TEMPORAL_API_KEY)"
    return (f"cannot reach Temporal at {address}: {detail} (TEMPORAL_ADDRESS, or the address "
            "of the profile in TEMPORAL_CONFIG_FILE)")


def _namespace_problem(namespace: str, address: str, error: RPCError) -> str:
    if error.status is RPCStatusCode.NOT_FOUND:
        return (f"namespace {namespace!r} does not exist on {address} (TEMPORAL_NAMESPACE); "
                f"create it with `temporal operator namespace create --namespace {namespace}`")
    if error.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNAUTHENTICATED):
        return f"not allowed in namespace {namespace!r} on {address}: {error.message}"
    return f"cannot describe namespace {namespace!r}: {error.message}"


async def _search_attributes(client: Client) -> Finding:
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace))
    except RPCError as error:
        return warn("search attributes", f"cannot list them ({error.message}); register them "
                    "as docker-compose.yml does")
    known = {**listed.system_attributes, **listed.custom_attributes}
    missing = sorted(name for name in search_attribute_types() if name not in known)
    wrong = sorted(name for name, kind in search_attribute_types().items()
                   if name in known and known[name] != kind)
    if wrong:
        return fail("search attributes", f"registered with another type: {', '.join(wrong)}")
    if missing:
        return warn("search attributes", f"missing: {', '.join(missing)} (the worker registers "
                    "them when it starts, if allowed)")
    return ok("search attributes", f"all {len(known.keys() & search_attribute_types().keys())} "
              "registered")


async def _pollers(client: Client, task_queue: str) -> Finding:
    counts = []
    for kind, name in ((TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, "workflow"),
                       (TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, "activity")):
        try:
            described = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(namespace=client.namespace,
                                         task_queue=TaskQueue(name=task_queue),
                                         task_queue_type=kind))
        except RPCError as error:
            return warn("task queue", f"{task_queue}: cannot describe it ({error.message})")
        identities = {poller.identity for poller in described.pollers}
        counts.append(f"{len(identities)} {name} poller{'s' if len(identities) != 1 else ''}")
    return ok("task queue", f"{task_queue}: {', '.join(counts)} seen lately")


def _skipped(subject: str) -> Finding:
    return fail(subject, "not checked: Temporal is not reachable")


# --- the catalog -----------------------------------------------------------------------------


async def check_catalog(settings: Settings) -> list[Finding]:
    if not settings.database_url:
        return [fail("catalog", "DATABASE_URL is not set")]
    where = _database_label(settings.database_url)
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=CONNECT_TIMEOUT_SECONDS)
    except (OSError, TimeoutError, asyncpg.PostgresError, ValueError) as error:
        return [fail("catalog", f"cannot reach PostgreSQL at {where}: {error} (DATABASE_URL)")]
    try:
        version = await conn.fetchval("SHOW server_version")
        pending = await pending_migrations(conn)
    except MigrationError as error:
        return [fail("catalog", f"{where}: {error}")]
    except asyncpg.PostgresError as error:
        return [fail("catalog", f"{where}: {error}")]
    finally:
        await conn.close()
    found = ok("catalog", f"{where}, PostgreSQL {version}")
    if pending:
        return [found, warn("migrations", f"not applied yet: {', '.join(pending)} (the worker "
                            "applies them when it starts; or `python -m mpr.catalog.migrate`)")]
    return [found, ok("migrations", "all applied")]


def _database_label(url: str) -> str:
    """The URL without its password."""
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user}@{location}"
