"""Benchmark 1: lifecycle throughput. Releases through the whole production path (start,
build, one compatibility cell, apply, platform and partner approvals, grayscale 1%, 5% and 50%,
full release promoting the new version and archiving the previous one), against as many
baseline workflows making the same Temporal calls with trivial activities
(bench/workflows.BaselineRelease), on the same worker process and task queue.

Each kind runs in two phases of N driven at once, in the order baseline, release, release,
baseline; a phase lasts from its first start to its last result, and each kind's throughput is
its 2N over the sum of its two phases, so neither kind gains from going first or last on a
server whose database grows. Every release is checked in the catalog afterwards: the new
version stable, the previous one archived.
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
    drive_baseline,
    drive_release,
    release_request,
)
from bench.results import Result, Target, figure
from bench.seed import seed_stable
from bench.sources import tiny_package
from bench.stack import WORKSPACE, BenchStack

TARGET = Target("ratio", ">=", 0.8)
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
            return lambda n: drive_baseline(drivers, programs[n])

        warm = batches["warm"]
        await _timed(WARM_UP, baseline([f"{p}-b" for p in warm]))
        await _timed(WARM_UP, release(warm))
        b1 = await _timed(releases_count, baseline([f"{p}-b" for p in batches["r1"]]))
        r1 = await _timed(releases_count, release(batches["r1"]))
        r2 = await _timed(releases_count, release(batches["r2"]))
        b2 = await _timed(releases_count, baseline([f"{p}-b" for p in batches["r2"]]))
        await _check_catalog(pool, batches["r1"] + batches["r2"])
    finally:
        await stack.stop_worker(worker)
    release_rate = 2 * releases_count / (r1 + r2)
    baseline_rate = 2 * releases_count / (b1 + b2)
    results = [figure("lifecycle_releases_per_second", release_rate, "releases/s",
                      baseline_rate, TARGET)]
    details: dict[str, object] = {
        "releases": 2 * releases_count, "at_once": [releases_count, releases_count],
        "release_seconds": [r1, r2], "baseline_seconds": [b1, b2],
        "commands_per_release": 7, "cells": 1,
    }
    return results, details


