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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import build, compatibility, lifecycle, parked, resolution
from bench.results import Result, Target, figure, table, write_json
from bench.sources import big_tree
from bench.stack import BenchStack
from infra.entrypoint import run_and_exit

RESULTS_DIR = Path(__file__).parent / "results"
ORDER = ("build", "resolution", "compatibility", "lifecycle", "parked")
WALL_TIME_TARGET = Target("value", "<=", 600)


def _sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"releases": 10, "parked": 20, "cache": 10, "baselines": 20, "samples": 10,
                "rounds": 1}
    return {"releases": 300, "parked": 5000, "cache": 500, "baselines": 300, "samples": 200,
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


async def run_all(only: set[str], quick: bool,
                  profile_dir: Path | None = None) -> tuple[list[Result], dict[str, Any]]:
    sizes = _sizes(quick)
    results: list[Result] = []
    details: dict[str, Any] = {"machine": machine(), "quick": quick}
    # SIGTERM (a CI timeout, `kill`) stops the run as Ctrl-C does: the stack is closed.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    stack = BenchStack.new(profile_dir)
    try:
        await stack.start()
        tree_base = stack.sources
        if "build" in only:
            print("build: 5,000 files, 50 MiB, against zip -r -X ...", flush=True)
            figures, details["build"] = await asyncio.to_thread(
                build.run, tree_base, sizes["rounds"])
            results += figures
        if "resolution" in only:
            print("resolution: resolve_version with its cache against a bare SELECT ...",
                  flush=True)
            figures, details["resolution"] = await resolution.run(
                await stack.catalog(), seconds=2.0 if quick else 8.0)
            results += figures
        if "compatibility" in only:
            print("compatibility: 24 cells against one ...", flush=True)
            tree = await asyncio.to_thread(big_tree, tree_base / "big-tree")
            package = await asyncio.to_thread(compatibility.build_package, tree.root,
                                              stack.artifact_dir)
            worker = await stack.start_worker("matrix")
            try:
                figures, details["compatibility"] = await compatibility.run(
                    await stack.client(), worker.task_queue, package, stack.artifact_dir,
                    rounds=2 if quick else 5)
            finally:
                await stack.stop_worker(worker)
            results += figures
        if "lifecycle" in only:
            print(f"lifecycle: {sizes['releases']} releases against as many baselines ...",
                  flush=True)
            figures, details["lifecycle"] = await lifecycle.run(stack, sizes["releases"])
            results += figures
        if "parked" in only:
            print(f"parked: {sizes['parked']} releases in review, sticky cache "
                  f"{sizes['cache']} ...", flush=True)
            figures, details["parked"] = await parked.run(
                stack, sizes["parked"], cache_size=sizes["cache"],
                baselines=sizes["baselines"], samples=sizes["samples"])
            results += figures
    finally:
        await stack.close()
    return results, details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--only", default=",".join(ORDER),
                        help=f"comma-separated, of {', '.join(ORDER)}")
    parser.add_argument("--output", type=Path, default=None,
                        help="where the figures go (default: bench/results/latest.json for a "
                        "full run, partial.json otherwise)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="record a py-spy profile of every benchmark worker into DIR "
                        "(speedscope JSON; figures taken while profiling are not reported)")
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - set(ORDER)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    full_run = only == set(ORDER) and not args.quick and args.profile is None
    output: Path = args.output or RESULTS_DIR / ("latest.json" if full_run else "partial.json")
    started = time.perf_counter()
    try:
        results, details = asyncio.run(run_all(only, args.quick, args.profile))
    except asyncio.CancelledError:
        print("stopped by SIGTERM; everything it started is stopped", file=sys.stderr)
        return 143
    wall = time.perf_counter() - started
    if only == set(ORDER):
        results.append(figure("suite_wall_seconds", wall, "s", None, WALL_TIME_TARGET))
    details["wall_seconds"] = wall
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
    return 0


if __name__ == "__main__":
    run_and_exit(main)
