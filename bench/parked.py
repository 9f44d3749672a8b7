"""Benchmark 2: 5,000 releases parked in UNDER_REVIEW on one worker whose sticky cache is
bounded (WORKER_MAX_CACHED_WORKFLOWS), with baseline workflows parked beside them on the same
worker and task queue.

Figures: the worker process's peak RSS (the kernel's high-water mark, VmHWM, over parking and
measuring; baseline: its RSS once started, before any workflow), and the latency from sending an
update to seeing its effect in `status` (approve_review by the platform reviewer, which leaves
the release in UNDER_REVIEW with one approval more; then the `status` query), p50 and p99,
against the same round trip on a parked baseline. The round trips go to releases and baselines
in one shuffled sequence, a few at a time, each to a workflow parked early and so long evicted
from the cache: both kinds are replayed from their history, as a release waiting for review for
days would be.
"""

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import Client

from bench.driving import (
    APPROVE_PLATFORM,
    Drivers,
    command_baseline,
    command_release,
    park_baseline,
    park_release,
    release_request,
)
from bench.results import Result, Target, figure, percentile
from bench.sources import tiny_package
from bench.stack import STARTER, BenchStack, peak_rss_bytes, rss_bytes
from mpr.domain.release.models import Reviewer

MB = 1_000_000
RSS_TARGET = Target("value", "<=", 400)
LATENCY_TARGET = Target("ratio", "<=", 1.5)
SEED = 20261121
VISIBILITY_SECONDS = 60.0


async def _park(count: int, at_once: int, park: Callable[[int], Awaitable[str]]) -> list[str]:
    limit = asyncio.Semaphore(at_once)

    async def one(n: int) -> str:
        async with limit:
            return await park(n)

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def _count_under_review(client: Client, task_queue: str, expected: int) -> int:
    """The releases visibility lists in UNDER_REVIEW, once it has indexed all `expected`
    (it lags the workflows' last search attribute upserts by a moment)."""
    deadline = time.monotonic() + VISIBILITY_SECONDS
    while True:
        counted = (await client.count_workflows(
            f"TaskQueue = '{task_queue}' AND WorkflowType = 'MiniProgramRelease' "
            "AND ReleaseStage = 'UNDER_REVIEW' AND ExecutionStatus = 'Running'")).count
        if counted == expected:
            return counted
        if time.monotonic() > deadline:
            raise RuntimeError(f"{counted} releases in UNDER_REVIEW, not {expected}")
        await asyncio.sleep(0.5)


async def run(stack: BenchStack, parked: int, *, cache_size: int, baselines: int,
              samples: int, at_once: int = 100,
              concurrency: int = 4) -> tuple[list[Result], dict[str, object]]:
    worker = await stack.start_worker(
        "parked", WORKER_MAX_CACHED_WORKFLOWS=str(cache_size))
    try:
        await asyncio.sleep(1.0)
        idle_rss = rss_bytes(worker.pid)
        drivers = await Drivers.on(stack, worker.task_queue)
        client = drivers.client
        releases = drivers.releases[STARTER]
        source = tiny_package(stack.sources / "tiny-1.1.0", "1.1.0")
        prefix = f"park-{uuid.uuid4().hex[:6]}"
        started = time.perf_counter()
        # Baselines first, then the releases: by the time they are measured, the early ones of
        # both kinds are long out of the cache.
        baseline_ids = await _park(baselines, at_once, lambda n: park_baseline(
            drivers, f"{prefix}-b{n:05d}"))
        release_ids = await _park(parked, at_once, lambda n: park_release(
            drivers, release_request(f"{prefix}-r{n:05d}", source)))
        parking_seconds = time.perf_counter() - started
        under_review = await _count_under_review(client, worker.task_queue, parked)
        targets: list[tuple[str, str]] = (
            [("release", rid) for rid in release_ids[:samples]]
            + [("baseline", bid) for bid in baseline_ids[:samples]])
        random.Random(SEED).shuffle(targets)
        latencies: dict[str, list[float]] = {"release": [], "baseline": []}
        limit = asyncio.Semaphore(concurrency)

        async def round_trip(kind: str, workflow_id: str) -> None:
            async with limit:
                begun = time.perf_counter()
                if kind == "release":
                    await command_release(drivers, workflow_id, APPROVE_PLATFORM)
                    status = await releases.status(workflow_id)
                    seen: Any = Reviewer.PLATFORM in status.approvals
                else:
                    await command_baseline(drivers, workflow_id, APPROVE_PLATFORM)
                    seen = (await client.get_workflow_handle(workflow_id).query(
                        "status"))["approvals"] == 1
                elapsed = time.perf_counter() - begun
                if not seen:
                    raise RuntimeError(f"{workflow_id}: the approval is not in its status")
                latencies[kind].append(elapsed)

        measuring = time.perf_counter()
        await asyncio.gather(*(round_trip(kind, wid) for kind, wid in targets))
        measuring_seconds = time.perf_counter() - measuring
        peak = peak_rss_bytes(worker.pid)
    finally:
        await stack.stop_worker(worker)
    release_ms = [s * 1000 for s in latencies["release"]]
    baseline_ms = [s * 1000 for s in latencies["baseline"]]
    results = [
        figure("parked_worker_peak_rss_mb", peak / MB, "MB", idle_rss / MB, RSS_TARGET),
        figure("parked_update_to_status_p50_ms", percentile(release_ms, 50), "ms",
               percentile(baseline_ms, 50), LATENCY_TARGET),
        figure("parked_update_to_status_p99_ms", percentile(release_ms, 99), "ms",
               percentile(baseline_ms, 99), LATENCY_TARGET),
    ]
    details: dict[str, object] = {
        "parked_releases": parked, "parked_baselines": baselines,
        "under_review_counted": under_review, "max_cached_workflows": cache_size,
        "parking_seconds": parking_seconds, "parked_at_once": at_once,
        "round_trips_each": samples, "round_trips_at_once": concurrency,
        "measuring_seconds": measuring_seconds,
        "round_trip_ms": {"release": sorted(release_ms), "baseline": sorted(baseline_ms)},
    }
    return results, details
