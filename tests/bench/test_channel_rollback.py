"""The rollback benchmark's own logic: what each lookup loop saw, the delay until every loop saw
a rollback, its target, and the catalog writes that prepare its channels."""

import hashlib
from pathlib import Path

import asyncpg
import pytest

from activities.channel.catalog import bundles_present
from bench.channel_rollback import (
    RESTORED,
    ROLLED_BACK,
    TARGET,
    TARGET_APP,
    CatalogRelease,
    Sightings,
    everyone_saw,
    release_in_catalog,
    seen_by_every_loop,
    target_ms,
)
from bench.results import figure
from bench.sizes import PRESETS
from mpr.catalog.channels import load_channel_view
from mpr.catalog.rollout import ChannelCache, resolve_version
from mpr.domain.channel.models import ChannelKey
from mpr.domain.release.stages import Stage


def saw(first_seen: dict[str, float]) -> Sightings:
    return Sightings(before=set(first_seen), first_seen=dict(first_seen))


def test_a_loop_keeps_the_first_time_it_saw_the_restored_version() -> None:
    loop = Sightings()

    loop.observe("a", ROLLED_BACK, 1.0)
    loop.observe("a", RESTORED, 2.0)
    loop.observe("a", RESTORED, 3.0)
    loop.observe("b", ROLLED_BACK, 2.5)

    assert loop.first_seen == {"a": 2.0}
    assert loop.before == {"a", "b"}
    assert loop.lookups == 4 and loop.faults() == []


def test_a_loop_going_back_to_the_rolled_back_version_or_answering_neither_is_a_fault() -> None:
    loop = Sightings()

    loop.observe("a", RESTORED, 1.0)
    loop.observe("a", ROLLED_BACK, 1.1)
    loop.observe("b", None, 1.2)

    assert loop.regressions == ["a"] and loop.before == set(), "not a sighting before"
    faults = loop.faults()
    assert len(faults) == 2
    assert f"saw {ROLLED_BACK} again after {RESTORED}" in faults[0] and "on a" in faults[0]
    assert "None on b" in faults[1]


def test_the_delay_runs_until_the_last_loop_first_saw_the_rollback() -> None:
    loops = [saw({"a": 10.2, "b": 20.05}), saw({"a": 10.4, "b": 20.01})]

    delays = seen_by_every_loop({"a": 10.0, "b": 20.0}, loops)

    assert delays.ms == pytest.approx({"a": 400.0, "b": 50.0})
    assert delays.unseen == [] and delays.seen_before_acceptance == 0


def test_a_rollback_every_loop_saw_before_its_update_returned_counts_as_zero() -> None:
    # The catalog commits before the workflow answers: the loops may be first.
    loops = [saw({"a": 9.9}), saw({"a": 9.95})]

    delays = seen_by_every_loop({"a": 10.0}, loops)

    assert delays.ms == {"a": 0.0}
    assert delays.signed_ms["a"] == pytest.approx(-50.0)
    assert delays.seen_before_acceptance == 1


def test_a_rollback_one_loop_has_not_seen_has_no_delay_yet() -> None:
    loops = [saw({"a": 10.1, "b": 20.1}), saw({"b": 20.2})]

    delays = seen_by_every_loop({"a": 10.0, "b": 20.0}, loops)

    assert delays.unseen == ["a"] and set(delays.ms) == {"b"}
    assert not everyone_saw(["a", "b"], loops) and everyone_saw(["b"], loops)
    with pytest.raises(ValueError):
        seen_by_every_loop({"a": 10.0}, [])


def test_the_target_is_the_staleness_bound_plus_half_a_second() -> None:
    assert target_ms(0.5) == 1000 and target_ms(0.0) == 500
    assert str(TARGET) == "value <= 1000"
    assert figure("p99", 1000.0, "ms", None, TARGET).met
    assert not figure("p99", 1000.1, "ms", None, TARGET).met


def test_every_size_describes_the_rollback_figures() -> None:
    for sizes in PRESETS.values():
        described = sizes.describe()
        for name in ("rollback_seen_by_every_lookup_p50_ms",
                     "rollback_seen_by_every_lookup_p99_ms"):
            assert described[name].startswith(f"{sizes.rollbacks} rollbacks")
    assert PRESETS["quick"].rollbacks < PRESETS["default"].rollbacks < PRESETS["full"].rollbacks


def test_a_release_is_written_as_the_workflow_writes_it(tmp_path: Path) -> None:
    release = CatalogRelease("shop", "1.1.0", False, tmp_path)

    transitions = release.transitions()

    assert [(t.event.command, t.event.stage_before, t.event.stage_after)
            for t in transitions] == [
        ("start_release", Stage.BUILDING, Stage.BUILDING),
        ("build_succeeded", Stage.BUILDING, Stage.COMPATIBILITY_TESTING),
        ("compatibility_tested", Stage.COMPATIBILITY_TESTING, Stage.READY_TO_APPLY),
        ("apply_release", Stage.READY_TO_APPLY, Stage.UNDER_REVIEW),
        ("approve_review", Stage.UNDER_REVIEW, Stage.RELEASE_PREPARATION),
        ("full_release", Stage.RELEASE_PREPARATION, Stage.RELEASED),
    ]
    assert [t.event.seq for t in transitions] == [1, 2, 3, 4, 5, 6]
    assert [t.promote for t in transitions] == [False] * 5 + [True]
    last = transitions[-1].release
    assert last is not None and (last.percent, last.first_release) == (100, False)
    bundle = Path(release.package.artifact_path)
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == release.package.sha256


async def test_two_releases_leave_a_channel_a_rollback_can_restore(
    db_pool: asyncpg.Pool, tmp_path: Path,
) -> None:
    await release_in_catalog(db_pool, "shop", RESTORED, True, tmp_path)
    await release_in_catalog(db_pool, "shop", ROLLED_BACK, False, tmp_path)

    view = await load_channel_view(db_pool, ChannelKey(mini_program_id="shop",
                                                       target_app=TARGET_APP), bundles_present)

    assert view is not None and view.stable_version == ROLLED_BACK
    assert [(v.version, v.status, v.bundle_present) for v in view.released] == [
        (ROLLED_BACK, "RELEASED", True), (RESTORED, "ARCHIVED", True)]
    assert len(view.stable_history) == 2, "1.0.0 was stable before: the rollback's target"
    assert await resolve_version(ChannelCache(db_pool), "shop", TARGET_APP, "someone") == \
        ROLLED_BACK
