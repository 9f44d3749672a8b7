"""The release worker: `python -m workers.main`.

Runs the MiniProgramRelease and MiniServiceRelease workflows and their activities on
TEMPORAL_TASK_QUEUE until SIGTERM or SIGINT, then drains: in-flight activities get the graceful
shutdown timeout to finish. Several workers may serve one task queue (docs/production.md).

`python -m workers.main --check` connects to Temporal and PostgreSQL, reports what it found
and exits (workers.check).
"""

import argparse
import asyncio
import inspect
import py_compile
import signal
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import timedelta
from typing import Any

import asyncpg
from temporalio import workflow
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from activities.channel.catalog import ChannelCatalogActivities
from activities.channel.notice import ChannelNotices
from activities.identity import Authenticator
from activities.mini_service.catalog import MiniServiceCatalogActivities
from activities.release.build import BuildActivities
from activities.release.catalog import CatalogActivities
from activities.release.compatibility import CompatibilityActivities, load_tables
from mpr.catalog.db import apply_migrations, create_pool
from mpr.infra.codec import PayloadKeyError
from mpr.infra.entrypoint import EntryPointError, reaching_database, run_and_exit
from mpr.infra.exit_codes import FAILURE, OK
from mpr.infra.identity import verifier_from
from mpr.infra.logging import configure_logging, get_logger
from mpr.infra.settings import Settings, SettingsError
from mpr.infra.temporal import (
    TemporalSettingsError,
    TemporalUnreachable,
    connect,
    metrics_runtime,
    payload_codec,
    register_search_attributes,
)
from workers.check import failed, run_checks
from workers.health import keep_touching
from workers.log_context import LogContextInterceptor
from workflows import worker_workflows

GRACEFUL_SHUTDOWN = timedelta(seconds=30)
log = get_logger(__name__)


def build_worker(
    client: Client,
    settings: Settings,
    pool: asyncpg.Pool,
    *,
    identity: Authenticator,
    extra_workflows: Sequence[type] = (),
    extra_activities: Sequence[Callable[..., Any]] = (),
) -> Worker:
    """The release worker; `extra_*` register more on the same task queue (bench/worker.py).
    `client` must be connected with `connect(..., worker=True)`."""
    workflows = [*worker_workflows().values(), *extra_workflows]
    write_workflow_bytecode(workflows)
    builds = BuildActivities(settings.artifact_dir, settings.build_source_roots)
    compatibility = CompatibilityActivities(load_tables())
    catalog = CatalogActivities(pool, identity)
    services = MiniServiceCatalogActivities(pool, identity)
    channels = ChannelCatalogActivities(pool, identity)
    notices = ChannelNotices(client)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=workflows,
        activities=[
            builds.build_package,
            compatibility.test_compatibility_cell,
            catalog.load_release_context,
            catalog.authenticate_release_actor,
            catalog.load_actor_roles,
            catalog.record_transition,
            catalog.channel_takedown,
            notices.notify_channel,
            channels.load_channel,
            channels.authenticate_channel_actor,
            channels.record_channel_transition,
            services.load_service_context,
            services.authenticate_service_actor,
            services.load_service_roles,
            services.record_service_transition,
            services.is_service_archived,
            *extra_activities,
        ],
        interceptors=[LogContextInterceptor()],
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        max_cached_workflows=settings.max_cached_workflows,
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(
            maximum=settings.workflow_task_pollers),
        activity_task_poller_behavior=PollerBehaviorSimpleMaximum(
            maximum=settings.activity_task_pollers),
    )


def write_workflow_bytecode(workflows: Sequence[type]) -> None:
    """Write the bytecode of each workflow's module next to it.

    The sandbox executes a workflow's module afresh for every workflow it runs, and again for a
    workflow evicted from the cache. Without bytecode on disk (an editable install, or
    PYTHONDONTWRITEBYTECODE set) each of those compiles the module from source: some 15 ms of
    the worker's one core for workflows/release.py, a tenth of its time when thousands of
    releases start (bench/README.md). An installed package has its bytecode already (pip
    writes it); where the folder is read-only this changes nothing.
    """
    for workflow_class in workflows:
        source = inspect.getsourcefile(workflow_class)
        if source is None:
            continue
        try:
            py_compile.compile(source, doraise=True)
        except (OSError, py_compile.PyCompileError) as error:
            log.info("workflow bytecode not written", module=source, reason=str(error))


def payload_key_ids(settings: Settings) -> list[str]:
    """The ids of the payload keys, checked before anything starts: a worker without keys
    would write personal data into Temporal histories in plain text."""
    if settings.payload_encryption and settings.payload_keys is None:
        raise EntryPointError(
            "the worker refuses to start: MPR_PAYLOAD_KEYS is not set, and the worker would "
            "write personal data into Temporal in plain text. Export the payload keys "
            "(`make up` keeps them in .data/payload-keys; see docs/security.md), or set "
            "MPR_PAYLOAD_ENCRYPTION=off to run without encryption.", FAILURE
        )
    try:
        return payload_codec(settings).keys.key_ids
    except PayloadKeyError as error:
        raise EntryPointError(f"the worker refuses to start: {error}", FAILURE) from None


async def run_worker(
    settings: Settings,
    stop: asyncio.Event,
    *,
    extra_workflows: Sequence[type] = (),
    extra_activities: Sequence[Callable[..., Any]] = (),
) -> None:
    key_ids = payload_key_ids(settings)
    database_url = settings.require_database_url()  # settings first: nothing is reached yet
    verifier = verifier_from(settings)
    if verifier is None:
        log.warning("identity verification is off (MPR_AUTH=off): a command's actor field is "
                    "believed, so anyone who can send to the namespace can act as anyone")
    if not settings.payload_encryption:
        log.warning("payload encryption is off (MPR_PAYLOAD_ENCRYPTION=off): new payloads, "
                    "personal data included, are stored in Temporal in plain text")
    try:
        runtime = (metrics_runtime(settings.metrics_address) if settings.metrics_address
                   else None)
    except ValueError as error:  # e.g. the port is taken
        raise EntryPointError(f"the worker cannot serve metrics on METRICS_ADDRESS="
                              f"{settings.metrics_address}: {error}", FAILURE) from None
    try:
        client = await connect(settings, runtime, worker=True)
    except TemporalSettingsError as error:
        raise EntryPointError(f"the worker cannot start: {error}", FAILURE) from None
    except TemporalUnreachable as error:
        raise EntryPointError(f"the worker cannot start: {error}; `python -m workers.main "
                              "--check` tells more", FAILURE) from None
    with reaching_database(database_url, "check DATABASE_URL; `python -m workers.main --check` "
                                         "tells more"):
        pool = await create_pool(database_url)
    try:
        await apply_migrations(pool)
        await ensure_search_attributes(client)
        worker = build_worker(client, settings, pool, identity=Authenticator(verifier),
                              extra_workflows=extra_workflows,
                              extra_activities=extra_activities)
        log.info("worker started", task_queue=settings.task_queue,
                 max_cached_workflows=settings.max_cached_workflows,
                 max_concurrent_activities=settings.max_concurrent_activities,
                 max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
                 workflow_task_pollers=settings.workflow_task_pollers,
                 activity_task_pollers=settings.activity_task_pollers,
                 namespace=client.namespace, artifact_dir=str(settings.artifact_dir),
                 build_source_roots=[str(root) for root in settings.build_source_roots],
                 payload_encryption=settings.payload_encryption, payload_key_ids=key_ids,
                 identity_issuer=verifier.issuer if verifier else "off (MPR_AUTH=off)",
                 metrics=f"http://{settings.metrics_address}/metrics"
                 if settings.metrics_address else None)
        running = asyncio.create_task(worker.run())
        health = (asyncio.create_task(keep_touching(settings.health_file, settings.task_queue))
                  if settings.health_file else None)
        try:
            # A worker that fails by itself (e.g. its namespace is deleted) ends the process.
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait([running, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not running.done():
                log.info("worker draining", timeout_seconds=GRACEFUL_SHUTDOWN.total_seconds())
                await worker.shutdown()
            try:
                await running
            except Exception as error:  # the SDK's own, e.g. a namespace deleted under it
                log.exception("worker failed")
                raise EntryPointError(f"the worker stopped: {error}", FAILURE) from error
        finally:
            if health is not None:
                health.cancel()
                with suppress(asyncio.CancelledError):
                    await health
    finally:
        await pool.close()
    log.info("worker stopped")


async def ensure_search_attributes(client: Client) -> None:
    """Workflow tasks fail while a search attribute they set is unknown to the namespace, so
    the worker makes sure of them first (a server kept from an older version may lack some)."""
    try:
        added = await register_search_attributes(client)
    except RPCError as error:
        raise EntryPointError(
            f"cannot check or register the release search attributes in namespace "
            f"{client.namespace}: {error.message}; register them with "
            "`temporal operator search-attribute create` (see docker-compose.yml)", FAILURE
        ) from error
    if added:
        log.info("search attributes registered", names=added)


async def check(settings: Settings) -> int:
    findings = await run_checks(settings)
    for finding in findings:
        print(finding.line())
    return FAILURE if failed(findings) else OK


def main(
    argv: Sequence[str] | None = None,
    *,
    extra_workflows: Sequence[type] = (),
    extra_activities: Sequence[Callable[..., Any]] = (),
) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.main", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="connect to Temporal and PostgreSQL, report what was found, exit")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        raise EntryPointError(f"the worker's settings are invalid: {error}", FAILURE) from None
    if args.check:
        return asyncio.run(check(settings))
    configure_logging(settings.log_level, settings.log_format)
    # The SDK would otherwise repeat the workflow info inside every message text.
    workflow.logger.workflow_info_on_message = False

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop, extra_workflows=extra_workflows,
                         extra_activities=extra_activities)

    asyncio.run(serve())
    return OK


if __name__ == "__main__":
    run_and_exit(main)
