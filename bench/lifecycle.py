"""Benchmark 1: lifecycle throughput. Releases through the whole production path (start,
build, one compatibility cell, apply, platform and partner approvals, grayscale 1%, 5% and 50%,
full release promoting the new version and archiving the previous one), on the same worker
process and task queue as two kinds of workflow driven call for call alike:

- baselines making the same Temporal calls with trivial activities
  (bench/workflows.BaselineRelease): our work against a same-shaped baseline;
- floors taking the same path with no activity but the build and the cell, as no-ops, and
  commands as updates that run none (bench/workflows.FloorRelease): our design against what
  Temporal itself costs.

Each kind runs in two phases of N driven at once, in the order floor, baseline, release,
release, baseline, floor; a phase lasts from its first start to its last result, and each
kind's throughput is its 2N over the sum of its two phases, so no kind gains from going first
or last on a server whose database grows. Every release is checked in the catalog afterwards:
the new version stable, the previous one archived.
"""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from bench.driving import (
    PREVIOUS_VERSION,
    TARGET_APP,
    VERSION,
    Drivers,
    baseline_id,
    drive_baseline,
    drive_release,
    release_request,
)
from bench.histories import event_counts
from bench.results import Result, Target, figure
from bench.seed import seed_stable
from bench.sources import tiny_package
from bench.stack import WORKSPACE, BenchStack
from bench.workflows import BASELINE_WORKFLOW, LIFECYCLE_FLOOR_WORKFLOW
from mpr.domain.release.models import Environment
from mpr.domain.release.release_id import release_id

TARGET = Target("ratio", ">=", 0.8)
FLOOR_TARGET = Target("ratio", ">=", 0.33)
"""At least a third of the floor's throughput: a release may cost the servers at most three
times what its path costs Temporal alone, the bound the command round trip's p50 is held to."""
WARM_UP = 5


async def _timed(count: int, drive: Callable[[int], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(drive(n) for n in range(count)))
    return time.perf_counter() - started


async def _seed(pool: asyncpg.Pool, programs: list[str]) -> None:
    limit = asyncio.Semaphore(16)

    async def one(program: str) -> None:
        async with limit:
            await seed_stable(pool, program, TARGET_APP, PREVIOUS_VERSION, WORKSPACE)

    await asyncio.gather(*(one(program) for program in programs))


async def _check_catalog(pool: asyncpg.Pool, programs: list[str]) -> None:
    rows = await pool.fetch(
        """
        SELECT c.mini_program_id FROM channels c
        JOIN releases new ON new.release_id = c.stable_release_id
        JOIN releases old ON old.mini_program_id = c.mini_program_id
            AND old.target_app = c.target_app AND old.version = $2
        WHERE c.mini_program_id = ANY($1::text[]) AND new.version = $3
            AND new.stage = 'RELEASED' AND old.stage = 'ARCHIVED' AND c.candidate_version IS NULL
        """, programs, PREVIOUS_VERSION, VERSION)
    if len(rows) != len(programs):
        raise RuntimeError(f"{len(programs) - len(rows)} of {len(programs)} releases did not "
                           "end released with their previous version archived")


async def run(stack: BenchStack, releases_count: int) -> tuple[list[Result], dict[str, object]]:
    worker = await stack.start_worker("lifecycle")
    try:
        drivers = await Drivers.on(stack, worker.task_queue)
        pool = await stack.catalog()
        source = tiny_package(stack.sources / f"tiny-{VERSION}", VERSION)
        prefix = f"life-{uuid.uuid4().hex[:6]}"
        batches = {
            name: [f"{prefix}-{name}-{n:04d}" for n in range(size)]
            for name, size in (("warm", WARM_UP), ("r1", releases_count), ("r2", releases_count))
        }
        await _seed(pool, [p for programs in batches.values() for p in programs])

        def release(programs: list[str]) -> Callable[[int], Awaitable[None]]:
            return lambda n: drive_release(drivers, release_request(programs[n], source))

        def baseline(programs: list[str]) -> Callable[[int], Awaitable[None]]:
            return lambda n: drive_baseline(drivers, f"{programs[n]}-b", BASELINE_WORKFLOW)

        def floor(programs: list[str]) -> Callable[[int], Awaitable[None]]:
            return lambda n: drive_baseline(drivers, f"{programs[n]}-f", LIFECYCLE_FLOOR_WORKFLOW)

        seconds: dict[str, list[float]] = {"release": [], "baseline": [], "floor": []}
        cpu: dict[str, list[dict[str, float]]] = {"release": [], "baseline": [], "floor": []}
        drive = {"release": release, "baseline": baseline, "floor": floor}
        warm = batches["warm"]
        for kind in ("floor", "baseline", "release"):
            await _timed(WARM_UP, drive[kind](warm))
        for kind, batch in (("floor", "r1"), ("baseline", "r1"), ("release", "r1"),
                            ("release", "r2"), ("baseline", "r2"), ("floor", "r2")):
            meter = stack.cpu_meter(worker).start()
            seconds[kind].append(await _timed(releases_count, drive[kind](batches[batch])))
            cpu[kind].append(meter.stop())
        await _check_catalog(pool, batches["r1"] + batches["r2"])
        program = batches["r1"][0]
        histories = {
            kind: event_counts((await drivers.client.get_workflow_handle(workflow_id)
                                .fetch_history()).events)
            for kind, workflow_id in (
                ("release", release_id(program, VERSION, TARGET_APP, Environment.PRODUCTION)),
                ("baseline", baseline_id(f"{program}-b", BASELINE_WORKFLOW)),
                ("floor", baseline_id(f"{program}-f", LIFECYCLE_FLOOR_WORKFLOW)))
        }
    finally:
        await stack.stop_worker(worker)
    rate = {kind: 2 * releases_count / sum(seconds[kind]) for kind in seconds}
    results = [
        figure("lifecycle_releases_per_second", rate["release"], "releases/s",
               rate["baseline"], TARGET),
        figure("lifecycle_releases_per_second_vs_floor", rate["release"], "releases/s",
               rate["floor"], FLOOR_TARGET),
    ]
    details: dict[str, object] = {
        "releases": 2 * releases_count, "at_once": [releases_count, releases_count],
        "phase_order": "floor, baseline, release, release, baseline, floor",
        "release_seconds": seconds["release"], "baseline_seconds": seconds["baseline"],
        "floor_seconds": seconds["floor"], "per_second": rate,
        "phase_cpu_seconds": cpu,
        "commands_per_release": 7, "cells": 1,
        "one_history": histories,
    }
    return results, details
