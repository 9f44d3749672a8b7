"""The release worker: `python -m workers.main`.

Runs the MiniProgramRelease and MiniServiceRelease workflows and their activities on
TEMPORAL_TASK_QUEUE until SIGTERM or SIGINT, then drains: in-flight activities get the graceful
shutdown timeout to finish.
"""

import asyncio
import signal
from datetime import timedelta

import asyncpg
from temporalio import workflow
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.build import BuildActivities
from activities.catalog import CatalogActivities
from activities.compatibility import CompatibilityActivities, load_tables
from activities.mini_service_catalog import MiniServiceCatalogActivities
from catalog.db import apply_migrations, create_pool
from infra.codec import PayloadKeyError
from infra.entrypoint import run_and_exit
from infra.logging import configure_logging, get_logger
from infra.settings import Settings
from infra.temporal import connect, metrics_runtime, payload_codec, register_search_attributes
from workers.log_context import LogContextInterceptor
from workflows.mini_service import MiniServiceRelease
from workflows.release import MiniProgramRelease

GRACEFUL_SHUTDOWN = timedelta(seconds=30)
log = get_logger(__name__)


def build_worker(client: Client, settings: Settings, pool: asyncpg.Pool) -> Worker:
    builds = BuildActivities(settings.artifact_dir, settings.build_source_roots)
    compatibility = CompatibilityActivities(load_tables())
    catalog = CatalogActivities(pool)
    services = MiniServiceCatalogActivities(pool)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[MiniProgramRelease, MiniServiceRelease],
        activities=[
            builds.build_package,
            compatibility.test_compatibility_cell,
            catalog.load_release_context,
            catalog.load_actor_roles,
            catalog.record_transition,
            services.load_service_context,
            services.load_service_roles,
            services.record_service_transition,
            services.is_service_archived,
        ],
        interceptors=[LogContextInterceptor()],
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )


def payload_key_ids(settings: Settings) -> list[str]:
    """The ids of the payload keys, checked before anything starts: a worker without keys
    would write personal data into Temporal histories in plain text."""
    if settings.payload_encryption and settings.payload_keys is None:
        raise SystemExit(
            "the worker refuses to start: MPR_PAYLOAD_KEYS is not set, and the worker would "
            "write personal data into Temporal in plain text. Export the payload keys "
            "(`make up` keeps them in .data/payload-keys; see README, Personal data), or set "
            "MPR_PAYLOAD_ENCRYPTION=off to run without encryption."
        )
    try:
        return payload_codec(settings).keys.key_ids
    except PayloadKeyError as error:
        raise SystemExit(f"the worker refuses to start: {error}") from None


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    key_ids = payload_key_ids(settings)
    if not settings.payload_encryption:
        log.warning("payload encryption is off (MPR_PAYLOAD_ENCRYPTION=off): new payloads, "
                    "personal data included, are stored in Temporal in plain text")
    runtime = metrics_runtime(settings.metrics_address) if settings.metrics_address else None
    client = await connect(settings, runtime)
    pool = await create_pool(settings.require_database_url())
    try:
        await apply_migrations(pool)
        await ensure_search_attributes(client)
        worker = build_worker(client, settings, pool)
        log.info("worker started", task_queue=settings.task_queue,
                 namespace=client.namespace, artifact_dir=str(settings.artifact_dir),
                 build_source_roots=[str(root) for root in settings.build_source_roots],
                 payload_encryption=settings.payload_encryption, payload_key_ids=key_ids,
                 metrics=f"http://{settings.metrics_address}/metrics"
                 if settings.metrics_address else None)
        running = asyncio.create_task(worker.run())
        await stop.wait()
        log.info("worker draining", timeout_seconds=GRACEFUL_SHUTDOWN.total_seconds())
        await worker.shutdown()
        await running
    finally:
        await pool.close()
    log.info("worker stopped")


async def ensure_search_attributes(client: Client) -> None:
    """Workflow tasks fail while a search attribute they set is unknown to the namespace, so
    the worker makes sure of them first (a server kept from an older version may lack some)."""
    try:
        added = await register_search_attributes(client)
    except RPCError as error:
        raise SystemExit(
            f"cannot check or register the release search attributes in namespace "
            f"{client.namespace}: {error.message}; register them with "
            "`temporal operator search-attribute create` (see docker-compose.yml)"
        ) from error
    if added:
        log.info("search attributes registered", names=added)


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    # The SDK would otherwise repeat the workflow info inside every message text.
    workflow.logger.workflow_info_on_message = False

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(serve())


if __name__ == "__main__":
    run_and_exit(main)
