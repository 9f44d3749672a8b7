"""The benchmark runner: a benchmark that fails is reported, the others still run, and the stack
is closed whatever happens."""

import json
from typing import Any

import pytest

import bench.__main__ as runner
from bench.results import Target, figure
from bench.sizes import QUICK, Sizes


class FakeStack:
    closed = False

    @classmethod
    def new(cls, profile_dir: Any = None) -> "FakeStack":
        return cls()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        FakeStack.closed = True


async def fine(stack: Any, sizes: Sizes) -> runner.Figures:
    return [figure("fine_seconds", 1.0, "s", 2.0, Target("ratio", "<=", 1))], {"ran": True}


async def broken(stack: Any, sizes: Sizes) -> runner.Figures:
    raise RuntimeError("4999 releases in UNDER_REVIEW, not 5000")


async def test_a_failing_benchmark_is_reported_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "BenchStack", FakeStack)
    monkeypatch.setattr(runner, "BENCHMARKS", {"first": broken, "second": fine})

    results, details = await runner.run_all({"first", "second"}, QUICK)

    assert [r.name for r in results] == ["fine_seconds"]
    assert "4999 releases" in details["first"]["error"] and details["second"] == {"ran": True}
    assert FakeStack.closed
    assert set(details["benchmark_seconds"]) == {"first", "second"}
    assert details["sizes"]["name"] == "quick"


def test_a_run_with_a_failure_exits_1_and_does_not_stand_as_the_figures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
) -> None:
    monkeypatch.setattr(runner, "BenchStack", FakeStack)
    monkeypatch.setattr(runner, "BENCHMARKS", {"first": broken, "second": fine})
    monkeypatch.setattr(runner, "RESULTS_DIR", tmp_path)

    assert runner.main([]) == 1
    assert (tmp_path / "partial.json").is_file() and not (tmp_path / "latest.json").exists()


def test_a_whole_default_run_writes_latest_and_a_whole_full_run_full(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
) -> None:
    sizes_seen: list[str] = []

    async def sized(stack: Any, sizes: Sizes) -> runner.Figures:
        sizes_seen.append(sizes.name)
        return [figure("lifecycle_releases_per_second", 1.0, "releases/s", 1.0,
                       Target("ratio", ">=", 0.8))], {}

    monkeypatch.setattr(runner, "BenchStack", FakeStack)
    monkeypatch.setattr(runner, "BENCHMARKS", {"only": sized})
    monkeypatch.setattr(runner, "RESULTS_DIR", tmp_path)

    assert runner.main([]) == 0
    assert runner.main(["--full"]) == 0
    assert sizes_seen == ["default", "full"]
    latest = json.loads((tmp_path / "latest.json").read_text())
    full = json.loads((tmp_path / "full.json").read_text())
    assert [r["name"] for r in latest] == ["lifecycle_releases_per_second",
                                           "suite_wall_seconds"], "the 10-minute target"
    assert [r["name"] for r in full] == ["lifecycle_releases_per_second"]
    details = json.loads((tmp_path / "full-details.json").read_text())
    assert details["figure_sizes"]["lifecycle_releases_per_second"].startswith(
        "300 releases at once"), "a figure says the size it was measured at"
    assert "wall_seconds" in details


def test_quick_and_full_do_not_go_together() -> None:
    with pytest.raises(SystemExit):
        runner.main(["--quick", "--full"])


def test_the_notes_give_each_figure_its_size_and_what_a_command_costs() -> None:
    cost = {"activities": [2], "activity_types": ["authenticate_release_actor > "
                                                   "record_transition"],
            "local_activities": [0], "workflow_tasks": [3], "median_span_ms": 329.3,
            "history_events": [78, 79]}
    floor = {**cost, "activities": [0], "activity_types": ["none"], "workflow_tasks": [1],
             "median_span_ms": 44.7, "history_events": [12]}
    details = {"figure_sizes": {"command_round_trip_p50_ms": "1,000 parked releases"},
               "parked": {"command_round_trip": {"per_command": {"release": cost,
                                                                 "floor": floor}}}}

    lines = runner.notes(details)

    assert "  command_round_trip_p50_ms: 1,000 parked releases" in lines
    release = next(line for line in lines if line.startswith("  release:"))
    assert "2 activities (authenticate_release_actor > record_transition)" in release
    assert "3 workflow tasks" in release and "329 ms" in release and "78/79 events" in release
    assert "0 activities (none)" in next(line for line in lines if line.startswith("  floor:"))
