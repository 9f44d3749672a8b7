import asyncio
from typing import cast

import asyncpg
import pytest

from mpr.catalog.rollout import ChannelCache, Resolution, resolve_version, resolve_version_detail
from mpr.domain.core.bucketing import rollout_bucket
from mpr.domain.release.models import Environment, Rollout
from mpr.domain.release.stages import Stage
from tests.catalog.factories import Release, cleared, to_released

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
