"""The benchmark runner: a benchmark that fails is reported, the others still run, and the stack
is closed whatever happens."""

from typing import Any

import pytest

import bench.__main__ as runner
from bench.results import Target, figure


class FakeStack:
    closed = False

    @classmethod
    def new(cls, profile_dir: Any = None) -> "FakeStack":
        return cls()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        FakeStack.closed = True


async def fine(stack: Any, sizes: dict[str, int], quick: bool) -> runner.Figures:
    return [figure("fine_seconds", 1.0, "s", 2.0, Target("ratio", "<=", 1))], {"ran": True}


async def broken(stack: Any, sizes: dict[str, int], quick: bool) -> runner.Figures:
    raise RuntimeError("4999 releases in UNDER_REVIEW, not 5000")


async def test_a_failing_benchmark_is_reported_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "BenchStack", FakeStack)
    monkeypatch.setattr(runner, "BENCHMARKS", {"first": broken, "second": fine})

    results, details = await runner.run_all({"first", "second"}, quick=True)

    assert [r.name for r in results] == ["fine_seconds"]
    assert "4999 releases" in details["first"]["error"] and details["second"] == {"ran": True}
    assert FakeStack.closed


def test_a_run_with_a_failure_exits_1_and_does_not_stand_as_the_figures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
) -> None:
    monkeypatch.setattr(runner, "BenchStack", FakeStack)
    monkeypatch.setattr(runner, "BENCHMARKS", {"first": broken, "second": fine})
    monkeypatch.setattr(runner, "RESULTS_DIR", tmp_path)

    assert runner.main([]) == 1
    assert (tmp_path / "partial.json").is_file() and not (tmp_path / "latest.json").exists()
