"""The benchmark suite's own arithmetic: figures, targets, percentiles, the table."""

import json
import math
from pathlib import Path

import pytest

from bench.results import Target, figure, percentile, table, write_json


def test_a_ratio_target_is_judged_on_value_over_baseline() -> None:
    met = figure("throughput", 8.0, "releases/s", 10.0, Target("ratio", ">=", 0.8))
    missed = figure("throughput", 7.9, "releases/s", 10.0, Target("ratio", ">=", 0.8))

    assert (met.ratio, met.met) == (0.8, True)
    assert missed.ratio == pytest.approx(0.79) and not missed.met
    assert met.target == "ratio >= 0.8"


def test_a_value_target_ignores_the_baseline() -> None:
    rss = figure("rss", 401.0, "MB", 100.0, Target("value", "<=", 400))

    assert rss.ratio == pytest.approx(4.01) and not rss.met
    assert figure("rss", 400.0, "MB", 100.0, Target("value", "<=", 400)).met


def test_without_a_baseline_there_is_no_ratio_and_a_ratio_target_is_missed() -> None:
    result = figure("x", 1.0, "s", None, Target("ratio", "<=", 2))

    assert result.ratio is None and not result.met
    assert figure("x", 1.0, "s", 0.0, Target("value", "<=", 2)).ratio is None


def test_nan_never_meets_a_target() -> None:
    assert not figure("x", math.nan, "s", None, Target("value", "<=", 1)).met


def test_percentiles_are_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]  # 1..100

    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100
    assert percentile(list(reversed(samples)), 1) == 1
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0  # never interpolated
    assert percentile([5.0, 1.0, 9.0], 99) == 9.0


@pytest.mark.parametrize("p", [0, -1, 101])
def test_percentile_refuses_meaningless_ranks(p: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], p)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_the_json_is_a_list_of_the_documented_records(tmp_path: Path) -> None:
    results = [figure("a", 2.0, "s", 1.0, Target("ratio", "<=", 3)),
               figure("b", 1.0, "bool", None, Target("value", ">=", 1))]
    path = tmp_path / "results" / "latest.json"

    write_json(results, path)

    written = json.loads(path.read_text())
    assert [set(record) for record in written] == [
        {"name", "value", "unit", "baseline", "ratio", "target", "met"}] * 2
    assert written[0] == {"name": "a", "value": 2.0, "unit": "s", "baseline": 1.0,
                          "ratio": 2.0, "target": "ratio <= 3", "met": True}


def test_the_table_shows_every_figure_and_each_miss() -> None:
    text = table([figure("fast", 1.0, "s", 1.0, Target("ratio", "<=", 1.5)),
                  figure("slow", 2.0, "s", 1.0, Target("ratio", "<=", 1.5))])

    lines = text.splitlines()
    assert lines[0].split("|")[1].strip() == "figure"
    assert "| fast" in lines[2] and "yes" in lines[2]
    assert "| slow" in lines[3] and "NO" in lines[3]
    assert len({len(line) for line in lines}) == 1, "columns line up"
