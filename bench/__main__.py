"""`python -m bench` (`make bench`): start a stack of its own, run every benchmark at the
default sizes (under ten minutes on two cores), print the table, write bench/results/latest.json
(the figures) and bench/results/latest-details.json (what each benchmark did: counts, every
timing, the size of each figure, the machine), then stop everything.

`--full` (`make bench-full`) runs them at the large sizes (300 releases at once, 5,000 parked)
and writes bench/results/full.json and full-details.json instead; `--quick` runs every benchmark
small (a smoke test of the suite, not figures to report); `--only NAME[,NAME]` runs some of them
(build, resolution, rollback, compatibility, lifecycle, parked); `--profile DIR` records py-spy
profiles of the benchmark workers. Only a whole run without --quick, --only or --profile writes
latest.json (or full.json); any other writes partial.json.
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

from bench import build, channel_rollback, compatibility, lifecycle, parked, resolution
from bench.results import Result, Target, figure, table, write_json
from bench.sizes import DEFAULT, FULL, QUICK, Sizes
from bench.sources import big_tree
from bench.stack import BenchStack
from mpr.infra.entrypoint import run_and_exit
from mpr.infra.exit_codes import FAILURE, OK, TERMINATED

RESULTS_DIR = Path(__file__).parent / "results"
WALL_TIME_TARGET = Target("value", "<=", 600)


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


async def bench_build(stack: BenchStack, sizes: Sizes) -> Figures:
    print("build: 5,000 files, 50 MiB, against zip -r -X ...", flush=True)
    return await asyncio.to_thread(build.run, stack.sources, sizes.build_rounds)


async def bench_resolution(stack: BenchStack, sizes: Sizes) -> Figures:
    print("resolution: resolve_version with its cache against a bare SELECT ...", flush=True)
    return await resolution.run(await stack.catalog(), seconds=sizes.resolution_seconds)


async def bench_rollback(stack: BenchStack, sizes: Sizes) -> Figures:
    print(f"rollback: {sizes.rollbacks} rollbacks, one at a time, watched by "
          f"{sizes.rollback_clients} lookup clients, each with its own ChannelCache ...",
          flush=True)
    return await channel_rollback.run(stack, rollbacks=sizes.rollbacks,
                                      clients=sizes.rollback_clients)


async def bench_compatibility(stack: BenchStack, sizes: Sizes) -> Figures:
    print("compatibility: 24 cells against one ...", flush=True)
    tree = await asyncio.to_thread(big_tree, stack.sources / "big-tree")
    package = await asyncio.to_thread(compatibility.build_package, tree.root,
                                      stack.artifact_dir)
    worker = await stack.start_worker("matrix")
    try:
        return await compatibility.run(await stack.client(), worker.task_queue, package,
                                       stack.artifact_dir, rounds=sizes.matrix_rounds)
    finally:
        await stack.stop_worker(worker)


async def bench_lifecycle(stack: BenchStack, sizes: Sizes) -> Figures:
    print(f"lifecycle: twice {sizes.lifecycle_at_once} releases at once against as many "
          "baselines and floors ...", flush=True)
    return await lifecycle.run(stack, sizes.lifecycle_at_once)


async def bench_parked(stack: BenchStack, sizes: Sizes) -> Figures:
    print(f"parked: {sizes.parked} releases in review, sticky cache {sizes.cache}; "
          f"{sizes.status_samples} update-to-status and {sizes.command_samples} command round "
          "trips of each kind ...", flush=True)
    return await parked.run(stack, sizes)


BENCHMARKS: dict[str, Callable[[BenchStack, Sizes], Awaitable[Figures]]] = {
    "build": bench_build,
    "resolution": bench_resolution,
    "rollback": bench_rollback,
    "compatibility": bench_compatibility,
    "lifecycle": bench_lifecycle,
    "parked": bench_parked,
}


async def run_all(only: set[str], sizes: Sizes,
                  profile_dir: Path | None = None) -> tuple[list[Result], dict[str, Any]]:
    """Every benchmark asked for, in order; one that fails is reported (details[name]["error"])
    and the others still run."""
    results: list[Result] = []
    details: dict[str, Any] = {"machine": machine(), "quick": sizes is QUICK,
                               "sizes": sizes.as_json(),
                               "benchmark_seconds": {}}
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
            started = time.perf_counter()
            try:
                figures, details[name] = await benchmark(stack, sizes)
            except Exception as error:  # reported, and the other benchmarks still run
                print(f"{name} FAILED: {error!r}", file=sys.stderr, flush=True)
                details[name] = {"error": repr(error)}
                continue
            finally:
                details["benchmark_seconds"][name] = round(time.perf_counter() - started, 1)
            results += figures
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await stack.close()
    described = sizes.describe()
    details["figure_sizes"] = {result.name: described[result.name] for result in results
                               if result.name in described}
    return results, details


def notes(details: dict[str, Any]) -> list[str]:
    """What the table does not show: the size of each figure, what one command costs."""
    lines = ["", "measured at:"]
    lines += [f"  {name}: {size}" for name, size in details.get("figure_sizes", {}).items()]
    per_command = details.get("parked", {}).get("command_round_trip", {}).get("per_command")
    if per_command:
        lines += ["one command (from histories):"]
        for kind, cost in per_command.items():
            lines.append(
                f"  {kind}: {'/'.join(map(str, cost['activities']))} activities "
                f"({'; '.join(cost['activity_types']) or 'none'}), "
                f"{'/'.join(map(str, cost['local_activities']))} local activities, "
                f"{'/'.join(map(str, cost['workflow_tasks']))} workflow tasks; "
                f"median span in the history {cost['median_span_ms']:.0f} ms; histories of "
                f"{'/'.join(map(str, cost.get('history_events', [])))} events")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    size.add_argument("--full", action="store_true",
                      help="the large sizes (make bench-full): writes full.json")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated, of {', '.join(BENCHMARKS)}")
    parser.add_argument("--output", type=Path, default=None,
                        help="where the figures go (default: bench/results/latest.json for a "
                        "whole run, full.json for a whole --full run, partial.json otherwise)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="record py-spy profiles of the benchmark workers into DIR (the "
                        "parked worker: one per phase; speedscope JSON; figures taken while "
                        "profiling are not reported)")
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    everything = only == set(BENCHMARKS)
    started = time.perf_counter()
    try:
        sizes = QUICK if args.quick else FULL if args.full else DEFAULT
        results, details = asyncio.run(run_all(only, sizes, args.profile))
    except asyncio.CancelledError:
        print("stopped by SIGTERM; everything it started is stopped", file=sys.stderr)
        return TERMINATED
    wall = time.perf_counter() - started
    failed = [name for name in only if "error" in details.get(name, {})]
    if everything and not args.full:
        # The ten-minute target is the default run's; a --full run's wall time is in its
        # details and bench/README.md.
        results.append(figure("suite_wall_seconds", wall, "s", None, WALL_TIME_TARGET))
    details["wall_seconds"] = wall
    # Only a whole, unprofiled run with every benchmark done stands as the figures.
    whole_run = everything and not failed and not args.quick and args.profile is None
    stem = "partial" if not whole_run else "full" if args.full else "latest"
    output: Path = args.output or RESULTS_DIR / f"{stem}.json"
    print()
    print(table(results))
    for line in notes(details):
        print(line)
    print(f"\nwall time {wall:.0f} s at the {details['sizes']['name']} sizes on "
          f"{details['machine']['cpu']} ({details['machine']['cores']} cores); by benchmark: "
          + ", ".join(f"{name} {seconds:.0f} s"
                      for name, seconds in details["benchmark_seconds"].items()))
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
