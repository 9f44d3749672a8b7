"""`python -m bench` (`make bench`): start a stack of its own, run every benchmark, print the
table, write bench/results/latest.json (the figures) and bench/results/latest-details.json
(what each benchmark did: counts, every timing, the machine), then stop everything.

`--quick` runs every benchmark small (a smoke test of the suite, not figures to report);
`--only NAME[,NAME]` runs some of them (build, resolution, compatibility, lifecycle, parked);
`--profile DIR` records a py-spy profile of each benchmark worker. Only a full run without
either writes latest.json.
"""

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import build, compatibility, lifecycle, parked, resolution
from bench.results import Result, Target, figure, table, write_json
from bench.sources import big_tree
from bench.stack import BenchStack
from mpr.infra.entrypoint import run_and_exit
from mpr.infra.exit_codes import FAILURE, OK, TERMINATED

RESULTS_DIR = Path(__file__).parent / "results"
WALL_TIME_TARGET = Target("value", "<=", 600)


def _sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"releases": 10, "parked": 20, "cache": 10, "baselines": 20, "samples": 10,
                "rounds": 1}
    # 500 round trips of each kind: the slowest few percent of round trips (both kinds) decide
    # a p99, and with 200 the figure moved by half from one run to the next.
    return {"releases": 300, "parked": 5000, "cache": 500, "baselines": 600, "samples": 500,
            "rounds": 3}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory_kib / 2**20, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


Figures = tuple[list[Result], dict[str, Any]]


async def bench_build(stack: BenchStack, sizes: dict[str, int], quick: bool) -> Figures:
    print("build: 5,000 files, 50 MiB, against zip -r -X ...", flush=True)
    return await asyncio.to_thread(build.run, stack.sources, sizes["rounds"])


async def bench_resolution(stack: BenchStack, sizes: dict[str, int], quick: bool) -> Figures:
    print("resolution: resolve_version with its cache against a bare SELECT ...", flush=True)
    return await resolution.run(await stack.catalog(), seconds=2.0 if quick else 8.0)


async def bench_compatibility(stack: BenchStack, sizes: dict[str, int], quick: bool) -> Figures:
    print("compatibility: 24 cells against one ...", flush=True)
    tree = await asyncio.to_thread(big_tree, stack.sources / "big-tree")
    package = await asyncio.to_thread(compatibility.build_package, tree.root,
                                      stack.artifact_dir)
    worker = await stack.start_worker("matrix")
    try:
        return await compatibility.run(await stack.client(), worker.task_queue, package,
                                       stack.artifact_dir, rounds=2 if quick else 5)
    finally:
        await stack.stop_worker(worker)


async def bench_lifecycle(stack: BenchStack, sizes: dict[str, int], quick: bool) -> Figures:
    print(f"lifecycle: twice {sizes['releases']} releases at once against as many baselines ...",
          flush=True)
    return await lifecycle.run(stack, sizes["releases"])


async def bench_parked(stack: BenchStack, sizes: dict[str, int], quick: bool) -> Figures:
    print(f"parked: {sizes['parked']} releases in review, sticky cache {sizes['cache']} ...",
          flush=True)
    return await parked.run(stack, sizes["parked"], cache_size=sizes["cache"],
                            baselines=sizes["baselines"], samples=sizes["samples"])


BENCHMARKS: dict[str, Callable[[BenchStack, dict[str, int], bool], Awaitable[Figures]]] = {
    "build": bench_build,
    "resolution": bench_resolution,
    "compatibility": bench_compatibility,
    "lifecycle": bench_lifecycle,
    "parked": bench_parked,
}


async def run_all(only: set[str], quick: bool,
                  profile_dir: Path | None = None) -> tuple[list[Result], dict[str, Any]]:
    """Every benchmark asked for, in order; one that fails is reported (details[name]["error"])
    and the others still run."""
    sizes = _sizes(quick)
    results: list[Result] = []
    details: dict[str, Any] = {"machine": machine(), "quick": quick}
    # SIGTERM (a CI timeout, `kill`) stops the run as Ctrl-C does: the stack is closed.
    main_task = asyncio.current_task()
    assert main_task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    stack = BenchStack.new(profile_dir)
    try:
        await stack.start()
        for name, benchmark in BENCHMARKS.items():
            if name not in only:
                continue
            try:
                figures, details[name] = await benchmark(stack, sizes, quick)
            except Exception as error:  # reported, and the other benchmarks still run
                print(f"{name} FAILED: {error!r}", file=sys.stderr, flush=True)
                details[name] = {"error": repr(error)}
                continue
            results += figures
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await stack.close()
    return results, details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated, of {', '.join(BENCHMARKS)}")
    parser.add_argument("--output", type=Path, default=None,
                        help="where the figures go (default: bench/results/latest.json for a "
                        "full run, partial.json otherwise)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="record a py-spy profile of every benchmark worker into DIR "
                        "(speedscope JSON; figures taken while profiling are not reported)")
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    everything = only == set(BENCHMARKS)
    started = time.perf_counter()
    try:
        results, details = asyncio.run(run_all(only, args.quick, args.profile))
    except asyncio.CancelledError:
        print("stopped by SIGTERM; everything it started is stopped", file=sys.stderr)
        return TERMINATED
    wall = time.perf_counter() - started
    failed = [name for name in only if "error" in details.get(name, {})]
    if everything:
        results.append(figure("suite_wall_seconds", wall, "s", None, WALL_TIME_TARGET))
    details["wall_seconds"] = wall
    # Only a whole, unprofiled run at full size with every benchmark done stands as the figures.
    full_run = everything and not failed and not args.quick and args.profile is None
    output: Path = args.output or RESULTS_DIR / ("latest.json" if full_run else "partial.json")
    print()
    print(table(results))
    print(f"\nwall time {wall:.0f} s on {details['machine']['cpu']} "
          f"({details['machine']['cores']} cores)")
    write_json(results, output)
    output.with_name(output.stem + "-details.json").write_text(
        json.dumps(details, indent=2) + "\n")
    print(f"written: {output}")
    missed = [result.name for result in results if not result.met]
    if missed:
        print(f"targets missed: {', '.join(missed)} (see bench/README.md)")
    if failed:
        print(f"benchmarks that failed: {', '.join(sorted(failed))}", file=sys.stderr)
        return FAILURE
    return OK


if __name__ == "__main__":
    run_and_exit(main)
