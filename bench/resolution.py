"""Benchmark 3: `resolve_version` lookups per second in one process, with a ChannelCache, while
grayscale percentages change, against a bare asyncpg single-row SELECT of the channel row on
the same database, and the staleness of each answer after a percent change.

Both phases run the same number of concurrent lookup loops over the same channels and users for
the same time, on one pool, while a changer moves one channel's percent at a time through the
catalog's real write (record_transition, as set_grayscale does) and then measures how long
until a lookup of a user that the change moves sees it: through the cache in the resolve phase,
through the bare SELECT in the baseline phase.
"""

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

import asyncpg

from bench.results import Result, Target, figure
from bench.seed import Candidate, seed_stable
from bench.stack import WORKSPACE
from mpr.catalog.rollout import ChannelCache, resolve_version
from mpr.domain.core.bucketing import BUCKETS, rollout_bucket

RATE_TARGET = Target("ratio", ">=", 5)
STALENESS_TARGET = Target("value", "<=", 1.0)
CHANNELS = 50
USERS = [f"user-{n:05d}" for n in range(20_000)]
LOW, HIGH = 10, 50
"""The percents the changer moves between: users with a bucket in [LOW%, HIGH%) flip."""
POLL_SECONDS = 0.002
CHANGE_EVERY_SECONDS = 0.1
CHANNEL_SELECT = """
    SELECT stable_version, candidate_version, percent FROM channels
    WHERE mini_program_id = $1 AND target_app = $2 AND environment = 'production'
"""


@dataclass
class Channel:
    program: str
    candidate: Candidate
    percent: int = LOW
    flipping_users: list[str] = field(default_factory=list)


async def setup(pool: asyncpg.Pool, channels: int) -> list[Channel]:
    prefix = f"resolve-{uuid.uuid4().hex[:6]}"
    made = []
    for n in range(channels):
        program = f"{prefix}-{n:03d}"
        await seed_stable(pool, program, "gopay", "1.0.0", WORKSPACE)
        candidate = Candidate(program, "gopay", "1.1.0", WORKSPACE)
        await candidate.set_percent(pool, LOW)
        flipping = [u for u in USERS
                    if LOW * BUCKETS // 100
                    <= rollout_bucket(program, "gopay", "production", "1.1.0", u)
                    < HIGH * BUCKETS // 100]
        made.append(Channel(program, candidate, LOW, flipping))
    return made


async def _lookups(lookup: "Lookup", channels: list[Channel], seconds: float,
                   seed: int) -> int:
    rng = random.Random(seed)
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            channel = channels[rng.randrange(len(channels))]
            await lookup(channel, USERS[rng.randrange(len(USERS))])
        done += 100
    return done


class Lookup:
    async def __call__(self, channel: Channel, user: str) -> object:
        raise NotImplementedError

    async def sees(self, channel: Channel, user: str, percent: int) -> bool:
        raise NotImplementedError


class BareSelect(Lookup):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def __call__(self, channel: Channel, user: str) -> object:
        return await self.pool.fetchrow(CHANNEL_SELECT, channel.program, "gopay")

    async def sees(self, channel: Channel, user: str, percent: int) -> bool:
        row = await self(channel, user)
        assert row is not None
        return bool(row["percent"] == percent)


class CachedResolve(Lookup):
    def __init__(self, cache: ChannelCache) -> None:
        self.cache = cache

    async def __call__(self, channel: Channel, user: str) -> object:
        return await resolve_version(self.cache, channel.program, "gopay", user)

    async def sees(self, channel: Channel, user: str, percent: int) -> bool:
        version = await self(channel, user)
        return version == ("1.1.0" if percent == HIGH else "1.0.0")


async def _changer(pool: asyncpg.Pool, lookup: Lookup, channels: list[Channel],
                   stop: asyncio.Event, seed: int) -> list[float]:
    """Move one channel's percent at a time; how long until `lookup` sees each change."""
    rng = random.Random(seed)
    stalenesses = []
    while not stop.is_set():
        channel = channels[rng.randrange(len(channels))]
        user = rng.choice(channel.flipping_users)
        await lookup(channel, user)  # whatever was cached for this channel is there
        percent = HIGH if channel.percent == LOW else LOW
        await channel.candidate.set_percent(pool, percent)
        changed = time.perf_counter()
        channel.percent = percent
        while True:
            if await lookup.sees(channel, user, percent):
                break
            await asyncio.sleep(POLL_SECONDS)
        stalenesses.append(time.perf_counter() - changed)
        await asyncio.sleep(CHANGE_EVERY_SECONDS)
    return stalenesses


async def _phase(pool: asyncpg.Pool, lookup: Lookup, channels: list[Channel], seconds: float,
                 concurrency: int) -> tuple[float, list[float]]:
    stop = asyncio.Event()
    changer = asyncio.create_task(_changer(pool, lookup, channels, stop, seed=7))
    started = time.perf_counter()
    counts = await asyncio.gather(*(_lookups(lookup, channels, seconds, seed=n)
                                    for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    stop.set()
    stalenesses = await changer
    return sum(counts) / elapsed, stalenesses


async def run(pool: asyncpg.Pool, *, seconds: float = 8.0, concurrency: int = 4,
              channels: int = CHANNELS) -> tuple[list[Result], dict[str, object]]:
    made = await setup(pool, channels)
    cache = ChannelCache(pool)
    # Warm both paths (connections, prepared statements) before measuring either.
    await _phase(pool, BareSelect(pool), made, 0.5, concurrency)
    await _phase(pool, CachedResolve(cache), made, 0.5, concurrency)
    bare_rate, bare_stale = await _phase(pool, BareSelect(pool), made, seconds, concurrency)
    reads_before = cache.reads
    cached_rate, cached_stale = await _phase(pool, CachedResolve(cache), made, seconds,
                                             concurrency)
    results = [
        figure("resolve_version_lookups_per_second", cached_rate, "lookups/s", bare_rate,
               RATE_TARGET),
        figure("resolve_version_staleness_max_seconds", max(cached_stale), "s",
               max(bare_stale), STALENESS_TARGET),
    ]
    details: dict[str, object] = {
        "channels": channels, "concurrent_loops": concurrency, "phase_seconds": seconds,
        "max_staleness_setting_seconds": cache.max_staleness,
        "cache_reads_during_phase": cache.reads - reads_before,
        "percent_changes_measured": {"cached": len(cached_stale), "bare": len(bare_stale)},
        "staleness_seconds_cached": sorted(cached_stale),
        "staleness_seconds_bare": sorted(bare_stale),
    }
    return results, details
