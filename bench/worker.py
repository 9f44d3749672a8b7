"""`python -m bench.worker`: the release worker (workers.main, unchanged: same task queue
settings, same data converter, same sticky cache setting) with the benchmarks' baseline
and floor workflows and their trivial activity registered on the same task queue."""

from bench.workflows import BaselineRelease, CommandFloor, FloorRelease, MatrixRun, bench_noop
from mpr.infra.entrypoint import run_and_exit
from workers.main import main


def bench_main() -> int:
    return main(extra_workflows=[BaselineRelease, FloorRelease, CommandFloor, MatrixRun],
                extra_activities=[bench_noop])


if __name__ == "__main__":
    run_and_exit(bench_main)
