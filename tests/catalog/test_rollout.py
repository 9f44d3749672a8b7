import asyncio
from typing import cast

import asyncpg
import pytest

from mpr.catalog.admin import TrialMember, add_trial_member
from mpr.catalog.rollout import ChannelCache, Resolution, resolve_version, resolve_version_detail
from mpr.domain.core.bucketing import rollout_bucket
from mpr.domain.release.models import Environment, Rollout
from mpr.domain.release.stages import Stage
from tests.catalog.factories import Release, cleared, package, to_released

USERS = [f"user-{n}" for n in range(10_000)]


async def serve_candidate(
    pool: asyncpg.Pool, release: Release, percent: int, whitelist: list[str] | None = None
) -> None:
    stage = Stage.GRAYSCALE if percent else Stage.WHITELIST_TESTING
    rollout = Rollout(
        candidate_version=release.row.version,
        candidate_release_id=release.release_id,
        percent=percent,
        whitelist=whitelist or [],
    )
    result = await release.move(pool, stage, percent=percent, rollout=rollout)
    assert result.applied


async def versions(pool: asyncpg.Pool, users: list[str]) -> list[str | None]:
    return await asyncio.gather(*(resolve_version(pool, "prog", "gopay", user) for user in users))


async def test_nothing_released_resolves_to_none(db_pool: asyncpg.Pool) -> None:
    assert await resolve_version(db_pool, "prog", "gopay", "alice") is None
    assert await resolve_version_detail(db_pool, "prog", "gopay", "alice") == Resolution(
        version=None, source="none", reason="nothing released on prog/gopay/production"
    )


async def test_everyone_gets_the_stable_version_without_a_candidate(
    db_pool: asyncpg.Pool,
) -> None:
    await to_released(db_pool, Release("1.0.0"))

    assert set(await versions(db_pool, USERS[:200])) == {"1.0.0"}
    assert await resolve_version(db_pool, "prog", "gopay", "alice", "sandbox") is None


async def test_whitelisted_users_get_the_candidate(db_pool: asyncpg.Pool) -> None:
    await to_released(db_pool, Release("1.0.0"))
    await serve_candidate(db_pool, Release("1.1.0"), 0, whitelist=["alice", "bob"])

    assert await versions(db_pool, ["alice", "bob", "carol"]) == ["1.1.0", "1.1.0", "1.0.0"]
    detail = await resolve_version_detail(db_pool, "prog", "gopay", "alice")
    assert (detail.source, detail.reason) == ("whitelist", "whitelist")


async def test_a_first_release_in_whitelist_testing_reaches_only_the_whitelist(
    db_pool: asyncpg.Pool,
) -> None:
    await serve_candidate(db_pool, Release("1.0.0"), 0, whitelist=["alice"])

    assert await versions(db_pool, ["alice", "bob"]) == ["1.0.0", None]


async def test_grayscale_serves_about_its_percentage(db_pool: asyncpg.Pool) -> None:
    await to_released(db_pool, Release("1.0.0"))
    await serve_candidate(db_pool, Release("1.1.0"), 10)

    served = (await versions(db_pool, USERS)).count("1.1.0")

    assert 850 <= served <= 1150  # 10 % of 10,000, about five standard deviations either way


async def test_a_user_in_the_grayscale_stays_in_it_as_it_widens(db_pool: asyncpg.Pool) -> None:
    await to_released(db_pool, Release("1.0.0"))
    candidate = Release("1.1.0")
    users = USERS[:1000]
    previous: set[str] = set()
    for percent in [1, 2, 5, 10, 20, 50, 100]:
        await serve_candidate(db_pool, candidate, percent)
        served = {
            u for u, v in zip(users, await versions(db_pool, users), strict=True) if v == "1.1.0"
        }
        assert previous <= served
        previous = served
    assert previous == set(users)


async def test_the_grayscale_reason_names_the_bucket(db_pool: asyncpg.Pool) -> None:
    candidate = Release("1.1.0")
    await serve_candidate(db_pool, candidate, 50)
    user = next(
        u for u in USERS if rollout_bucket("prog", "gopay", "production", "1.1.0", u) < 5000
    )

    detail = await resolve_version_detail(db_pool, "prog", "gopay", user)

    bucket = rollout_bucket("prog", "gopay", "production", "1.1.0", user)
    assert detail == Resolution(
        version="1.1.0", source="grayscale", reason=f"grayscale bucket {bucket} < 5000"
    )


async def test_after_a_cancel_everyone_gets_the_stable_version(db_pool: asyncpg.Pool) -> None:
    await to_released(db_pool, Release("1.0.0"))
    candidate = Release("1.1.0")
    await serve_candidate(db_pool, candidate, 50, whitelist=["alice"])

    await candidate.move(db_pool, Stage.CANCELED, rollout=cleared())

    assert set(await versions(db_pool, ["alice", *USERS[:500]])) == {"1.0.0"}


async def test_channels_are_resolved_separately(db_pool: asyncpg.Pool) -> None:
    await to_released(db_pool, Release("1.0.0"))
    await to_released(db_pool, Release("0.9.0", environment=Environment.SANDBOX))

    assert await resolve_version(db_pool, "prog", "gopay", "alice") == "1.0.0"
    assert await resolve_version(db_pool, "prog", "gopay", "alice", "sandbox") == "0.9.0"
    assert await resolve_version(db_pool, "prog", "gcash", "alice") is None


# --- the in-process cache ------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_cache_answers_as_the_database_does(db_pool: asyncpg.Pool) -> None:
    await to_released(db_pool, Release("1.0.0"))
    await serve_candidate(db_pool, Release("1.1.0"), 20, whitelist=["alice"])
    # A clock that stands still: however slow the machine, no entry outlives its staleness
    # bound during the loop, so the count of reads is the cache's doing alone.
    cache = ChannelCache(db_pool, clock=FakeClock())
    users = ["alice", *USERS[:300]]

    for user in users:
        assert await resolve_version_detail(cache, "prog", "gopay", user) == (
            await resolve_version_detail(db_pool, "prog", "gopay", user)
        )
    assert await resolve_version_detail(cache, "prog", "gcash", "alice") == Resolution(
        version=None, source="none", reason="nothing released on prog/gcash/production"
    )
    assert cache.reads == 2, "one read per channel, the missing one included"


async def test_a_percent_change_is_seen_once_the_staleness_bound_has_passed(
    db_pool: asyncpg.Pool,
) -> None:
    await to_released(db_pool, Release("1.0.0"))
    candidate = Release("1.1.0")
    await serve_candidate(db_pool, candidate, 1)
    user = next(u for u in USERS
                if 100 <= rollout_bucket("prog", "gopay", "production", "1.1.0", u) < 5000)
    clock = FakeClock()
    cache = ChannelCache(db_pool, max_staleness=0.5, clock=clock)
    assert await resolve_version(cache, "prog", "gopay", user) == "1.0.0"

    await serve_candidate(db_pool, candidate, 50)

    clock.now += 0.49
    assert await resolve_version(cache, "prog", "gopay", user) == "1.0.0", "cached, in bound"
    clock.now += 0.01
    assert await resolve_version(cache, "prog", "gopay", user) == "1.1.0"


async def test_channels_do_not_mix_in_the_cache(db_pool: asyncpg.Pool) -> None:
    await to_released(db_pool, Release("1.0.0"))
    await to_released(db_pool, Release("0.9.0", environment=Environment.SANDBOX))
    await to_released(db_pool, Release("0.8.0", app="alipaycn"))
    await serve_candidate(db_pool, Release("1.1.0"), 100)
    cache = ChannelCache(db_pool)

    for _ in range(2):  # a first read of each channel, then cached answers
        assert await resolve_version(cache, "prog", "gopay", "alice") == "1.1.0"
        assert await resolve_version(cache, "prog", "gopay", "alice", "sandbox") == "0.9.0"
        assert await resolve_version(cache, "prog", "alipaycn", "alice") == "0.8.0"
        assert await resolve_version(cache, "prog", "gcash", "alice") is None
    assert cache.reads == 4 and len(cache) == 4


async def test_concurrent_lookups_of_a_channel_share_one_read(db_pool: asyncpg.Pool) -> None:
    await to_released(db_pool, Release("1.0.0"))
    cache = ChannelCache(db_pool)

    answers = await asyncio.gather(
        *(resolve_version(cache, "prog", "gopay", user) for user in USERS[:500]))

    assert set(answers) == {"1.0.0"} and cache.reads == 1


async def test_the_cache_is_bounded_by_channels_and_whitelisted_ids(
    db_pool: asyncpg.Pool,
) -> None:
    await to_released(db_pool, Release("1.0.0"))
    await serve_candidate(db_pool, Release("1.1.0"), 0, whitelist=[f"w{n}" for n in range(10)])
    cache = ChannelCache(db_pool, max_weight=15)

    assert await resolve_version(cache, "prog", "gopay", "w3") == "1.1.0"
    assert cache.weight == 11, "one for the channel, one per whitelisted id"
    for app in ("a1", "a2", "a3", "a4", "a5"):
        await resolve_version(cache, "prog", app, "w3")
    assert (cache.weight, len(cache)) == (5, 5), "the least recently used channel went first"
    assert await resolve_version(cache, "prog", "gopay", "w3") == "1.1.0"
    assert cache.reads == 7 and cache.weight <= 15


def test_the_cache_refuses_meaningless_bounds() -> None:
    with pytest.raises(ValueError, match="max_staleness"):
        ChannelCache(cast(asyncpg.Pool, None), max_staleness=-1)
    with pytest.raises(ValueError, match="max_weight"):
        ChannelCache(cast(asyncpg.Pool, None), max_weight=0)


# --- trial codes -----------------------------------------------------------------------------


async def ready_to_apply(pool: asyncpg.Pool, release: Release) -> None:
    built = package(release.release_id)
    await release.move(pool, Stage.COMPATIBILITY_TESTING, package=built,
                       package_sha256=built.sha256)
    await release.move(pool, Stage.READY_TO_APPLY)


async def trial_members(pool: asyncpg.Pool, *users: str) -> None:
    for user in users:
        assert await add_trial_member(pool, TrialMember(mini_program_id="prog", user_id=user))


async def trial_versions(
    resolver: ChannelCache | asyncpg.Pool, trial: str | None, users: list[str]
) -> list[str | None]:
    return [await resolve_version(resolver, "prog", "gopay", user, trial=trial)
            for user in users]


async def test_a_trial_link_serves_a_release_before_review_to_trial_members_only(
    db_pool: asyncpg.Pool,
) -> None:
    candidate = Release("1.0.0")
    await ready_to_apply(db_pool, candidate)
    await trial_members(db_pool, "tess")

    assert await trial_versions(db_pool, candidate.release_id, ["tess", "bob"]) == [
        "1.0.0", None]
    assert await resolve_version_detail(
        db_pool, "prog", "gopay", "tess", trial=candidate.release_id
    ) == Resolution(version="1.0.0", source="trial",
                    reason=f"trial code of {candidate.release_id}, to a trial member")
    assert await trial_versions(db_pool, None, ["tess"]) == [None], "no marker, no trial"


async def test_a_trial_link_serves_the_candidate_to_its_whitelist_and_trial_members(
    db_pool: asyncpg.Pool,
) -> None:
    await to_released(db_pool, Release("1.0.0"))
    candidate = Release("1.1.0")
    await serve_candidate(db_pool, candidate, 0, whitelist=["alice"])
    await trial_members(db_pool, "tess")

    assert await trial_versions(db_pool, candidate.release_id, ["alice", "tess", "bob"]) == [
        "1.1.0", "1.1.0", "1.0.0"]
    detail = await resolve_version_detail(db_pool, "prog", "gopay", "alice",
                                          trial=candidate.release_id)
    assert detail.reason == f"trial code of {candidate.release_id}, to a whitelisted user"


async def test_the_channels_whitelist_is_a_releases_only_while_it_is_the_candidate(
    db_pool: asyncpg.Pool,
) -> None:
    await to_released(db_pool, Release("1.0.0"))
    await serve_candidate(db_pool, Release("1.1.0"), 0, whitelist=["alice"])
    later = Release("1.2.0")
    await ready_to_apply(db_pool, later)

    assert await trial_versions(db_pool, later.release_id, ["alice", "bob"]) == [
        "1.1.0", "1.0.0"], "alice is whitelisted for 1.1.0, not a tester of 1.2.0"


async def test_a_trial_link_of_a_release_past_its_trial_serves_as_usual(
    db_pool: asyncpg.Pool,
) -> None:
    await to_released(db_pool, Release("1.0.0"))
    candidate = Release("1.1.0")
    await serve_candidate(db_pool, candidate, 0, whitelist=["alice"])
    await trial_members(db_pool, "tess")

    await candidate.move(db_pool, Stage.CANCELED, rollout=cleared())

    assert await trial_versions(db_pool, candidate.release_id, ["alice", "tess"]) == [
        "1.0.0", "1.0.0"]


@pytest.mark.parametrize("marker", [
    "release:prog:1.1.0:gcash:production",  # another channel's release
    "release:prog:1.1.0:gopay:sandbox",
    "release:other:1.1.0:gopay:production",
    "release:prog:9.9.9:gopay:production",  # no such release
    "not a release id",
    "",
])
async def test_a_marker_naming_no_release_of_the_channel_is_ignored(
    db_pool: asyncpg.Pool, marker: str
) -> None:
    await to_released(db_pool, Release("1.0.0"))
    await ready_to_apply(db_pool, Release("1.1.0", app="gcash"))
    await trial_members(db_pool, "tess")
    cache = ChannelCache(db_pool, clock=FakeClock())

    assert await trial_versions(db_pool, marker, ["tess"]) == ["1.0.0"]
    assert await trial_versions(cache, marker, ["tess"]) == ["1.0.0"]
    assert cache.reads == (2 if marker == "release:prog:9.9.9:gopay:production" else 1), (
        "only a marker naming this channel is looked up")


async def test_an_offline_channel_serves_no_trial_either(db_pool: asyncpg.Pool) -> None:
    await to_released(db_pool, Release("1.0.0"))
    candidate = Release("1.1.0")
    await serve_candidate(db_pool, candidate, 0, whitelist=["alice"])
    await trial_members(db_pool, "tess")
    await db_pool.execute(
        "UPDATE channels SET offline_kind = 'admin', offline_reason = 'fraud report', "
        "offline_by = 'adam', offline_at = now() WHERE mini_program_id = 'prog'"
    )
    cache = ChannelCache(db_pool, clock=FakeClock())

    for resolver in (db_pool, cache):
        detail = await resolve_version_detail(resolver, "prog", "gopay", "tess",
                                              trial=candidate.release_id)
        assert detail == Resolution(version=None, source="offline",
                                    reason="prog/gopay/production is offline: fraud report")
        assert await trial_versions(resolver, candidate.release_id, ["alice", "bob"]) == [
            None, None]


async def test_the_cache_answers_trial_links_as_the_database_does(
    db_pool: asyncpg.Pool,
) -> None:
    await to_released(db_pool, Release("1.0.0"))
    candidate = Release("1.1.0")
    await serve_candidate(db_pool, candidate, 20, whitelist=["alice"])
    await trial_members(db_pool, "tess", "tom")
    cache = ChannelCache(db_pool, clock=FakeClock())
    users = ["alice", "tess", "tom", *USERS[:200]]

    for user in users:
        assert await resolve_version_detail(
            cache, "prog", "gopay", user, trial=candidate.release_id
        ) == await resolve_version_detail(
            db_pool, "prog", "gopay", user, trial=candidate.release_id)
    assert cache.reads == 2, "one read of the channel, one of the trial release"
    assert cache.weight == (1 + 1) + (1 + 2), "the whitelist and the trial members weigh"


async def test_a_new_trial_member_is_served_once_the_staleness_bound_has_passed(
    db_pool: asyncpg.Pool,
) -> None:
    candidate = Release("1.0.0")
    await ready_to_apply(db_pool, candidate)
    clock = FakeClock()
    cache = ChannelCache(db_pool, max_staleness=0.5, clock=clock)
    assert await trial_versions(cache, candidate.release_id, ["tess"]) == [None]

    await trial_members(db_pool, "tess")

    clock.now += 0.49
    assert await trial_versions(cache, candidate.release_id, ["tess"]) == [None], "in bound"
    clock.now += 0.01
    assert await trial_versions(cache, candidate.release_id, ["tess"]) == ["1.0.0"]


async def test_trial_entries_share_the_caches_bound(db_pool: asyncpg.Pool) -> None:
    candidate = Release("1.0.0")
    await ready_to_apply(db_pool, candidate)
    await trial_members(db_pool, *(f"t{n}" for n in range(10)))
    cache = ChannelCache(db_pool, max_weight=12)

    assert await trial_versions(cache, candidate.release_id, ["t3"]) == ["1.0.0"]
    assert (cache.weight, len(cache)) == (1 + 11, 2), "the missing channel, the trial entry"
    await resolve_version(cache, "prog", "a1", "t3")
    assert cache.weight <= 12 and len(cache) == 2, "the least recently used entry went first"
