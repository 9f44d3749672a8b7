"""The sizes the suite runs at, and the arithmetic that makes a figure mean the same at each."""

import pytest

from bench.parked import per_thousand, spread
from bench.sizes import CACHE_PER_1000, DEFAULT, FULL, MIN_SAMPLES, PRESETS, QUICK, cache_for


def test_the_default_and_full_sizes_keep_the_cache_at_the_same_fraction_of_the_parked() -> None:
    for sizes in (DEFAULT, FULL):
        assert sizes.cache * 1000 == sizes.parked * CACHE_PER_1000
    assert (FULL.parked, FULL.cache, FULL.lifecycle_at_once) == (5000, 500, 300)
    assert DEFAULT.parked < FULL.parked and DEFAULT.lifecycle_at_once < FULL.lifecycle_at_once


def test_every_reported_size_takes_at_least_500_command_round_trips_of_each_kind() -> None:
    for sizes in (DEFAULT, FULL):
        assert sizes.command_samples >= MIN_SAMPLES == 500
        assert sizes.floors == sizes.command_samples
        assert sizes.baselines == sizes.status_samples
        assert sizes.parked >= sizes.status_samples + sizes.command_samples
    assert FULL.status_samples >= MIN_SAMPLES


def test_workflows_park_at_most_half_the_cache_at_once() -> None:
    for sizes in PRESETS.values():
        assert sizes.parked_at_once * 2 <= sizes.cache


def test_sizes_that_cannot_give_each_round_trip_a_release_of_its_own_are_refused() -> None:
    fields = {name: value for name, value in DEFAULT.as_json().items()
              if name not in ("baselines", "floors")}
    with pytest.raises(ValueError):
        DEFAULT.__class__(**{**fields, "parked": DEFAULT.status_samples
                             + DEFAULT.command_samples - 1})


def test_every_figure_of_the_suite_has_its_size_in_words() -> None:
    for sizes in PRESETS.values():
        described = sizes.describe()
        assert "parked_worker_rss_mb_per_1000" in described
        assert f"{sizes.parked:,} parked" in described["command_round_trip_p99_ms"]
    assert QUICK.describe()["lifecycle_releases_per_second"].startswith("10 releases at once")


def test_the_cache_for_a_number_of_parked_releases() -> None:
    assert (cache_for(1000), cache_for(5000), cache_for(5)) == (100, 500, 1)


def test_memory_is_normalised_to_1000_parked_releases() -> None:
    assert per_thousand(36_000_000, 1000) == pytest.approx(36)
    assert per_thousand(180_000_000, 5000) == pytest.approx(36), "the same at both sizes"
    with pytest.raises(ValueError):
        per_thousand(1.0, 0)


def test_spread_takes_evenly_spaced_items_from_the_first() -> None:
    items = [str(n) for n in range(10)]

    assert spread(items, 5) == ["0", "2", "4", "6", "8"]
    assert spread(items, 10) == items and spread(items, 20) == items
    assert len(set(spread([str(n) for n in range(4500)], 500))) == 500
