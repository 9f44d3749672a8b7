"""Which version a user is served, answered from the channels table alone.

Clients ask this on every launch, so it never touches Temporal: the release workflow keeps
the channel row current through `record_transition`.

`resolve_version(db, ...)` reads the channel row on every call when `db` is a pool or a
connection (so it sees a write as soon as it commits: what `mpr resolve`, the tests and anything
inside a transaction need). A service answering launches passes a `ChannelCache` instead: the
same function, answered from an in-process copy of the channel row that is never older than
`max_staleness` (0.5 s by default) and bounded in memory.
"""

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import asyncpg
from pydantic import BaseModel

from mpr.catalog.db import Database
from mpr.domain.core.bucketing import BUCKETS, in_rollout, rollout_bucket
from mpr.domain.release.models import Environment
from mpr.infra.single_flight import SingleFlight

Source = Literal["whitelist", "grayscale", "stable", "none"]

DEFAULT_MAX_STALENESS_SECONDS = 0.5
DEFAULT_MAX_WEIGHT = 100_000
"""The cache holds at most this many channels plus whitelisted user ids (a channel weighs one
plus the length of its whitelist): with user ids of up to 128 characters, some tens of MB."""


class Resolution(BaseModel):
    version: str | None
    """None when nothing is released to this user on the channel."""
    source: Source
    reason: str


# --- the cache -------------------------------------------------------------------------------


ChannelKey = tuple[str, str, str]
"""(mini program id, target app, environment value)."""


@dataclass(frozen=True)
class ChannelSnapshot:
    """What resolution needs from one channel row, as it was when read."""

    stable_version: str | None
    candidate_version: str | None
    percent: int
    whitelist: frozenset[str]
    read_at: float
    """The cache clock when the query that read it was sent: the row is at least this fresh."""

    @property
    def weight(self) -> int:
        return 1 + len(self.whitelist)


@dataclass(frozen=True)
class _Missing:
    """No channel row (nothing released yet): cached like a row, so it expires like one."""

    read_at: float
    weight: int = 1


class ChannelCache:
    """An in-process cache of channel rows for `resolve_version`, one per process and pool.

    Staleness is bounded: a row read at time t (when its query was sent) answers lookups until
    t + `max_staleness`, after which the next lookup reads it again; a change committed at any
    moment is therefore seen by every lookup starting `max_staleness` later. Concurrent lookups
    of a channel being read share that one query. Memory is bounded: past `max_weight`
    (channels plus whitelisted ids held) the least recently used channels are dropped.
    Channels are keyed by (mini program, target app, environment) and never share an entry.

    Use it from one event loop (the one of its pool).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_staleness: float = DEFAULT_MAX_STALENESS_SECONDS,
        max_weight: int = DEFAULT_MAX_WEIGHT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_staleness < 0:
            raise ValueError("max_staleness must not be negative")
        if max_weight < 1:
            raise ValueError("max_weight must be at least 1")
        self.pool = pool
        self.max_staleness = max_staleness
        self.max_weight = max_weight
        self._clock = clock
        self._entries: OrderedDict[ChannelKey, ChannelSnapshot | _Missing] = OrderedDict()
        self._weight = 0
        self._reading: SingleFlight[ChannelKey, ChannelSnapshot | _Missing] = SingleFlight()
        self.reads = 0
        """Queries sent to the database (for tests and benchmarks)."""

    @property
    def weight(self) -> int:
        return self._weight

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._weight = 0

    async def snapshot(self, key: ChannelKey) -> ChannelSnapshot | None:
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.read_at < self.max_staleness:
            self._entries.move_to_end(key)
            return entry if isinstance(entry, ChannelSnapshot) else None
        found = await self._reading.run(key, lambda: self._read(key))
        return found if isinstance(found, ChannelSnapshot) else None

    async def _read(self, key: ChannelKey) -> ChannelSnapshot | _Missing:
        read_at = self._clock()
        self.reads += 1
        row = await self.pool.fetchrow(
            """
            SELECT stable_version, candidate_version, percent, whitelist FROM channels
            WHERE mini_program_id = $1 AND target_app = $2 AND environment = $3
            """,
            *key,
        )
        entry: ChannelSnapshot | _Missing = (
            _Missing(read_at) if row is None else ChannelSnapshot(
                stable_version=row["stable_version"],
                candidate_version=row["candidate_version"],
                percent=row["percent"],
                whitelist=frozenset(row["whitelist"]),
                read_at=read_at,
            )
        )
        self._store(key, entry)
        return entry

    def _store(self, key: ChannelKey, entry: ChannelSnapshot | _Missing) -> None:
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._weight -= previous.weight
        if entry.weight > self.max_weight:
            return  # too big to keep: answered, not cached
        self._entries[key] = entry
        self._weight += entry.weight
        while self._weight > self.max_weight:
            _, dropped = self._entries.popitem(last=False)
            self._weight -= dropped.weight


Resolver = Database | ChannelCache
"""What `resolve_version` reads from: the database itself, or a ChannelCache over a pool."""


# --- resolution ------------------------------------------------------------------------------


async def resolve_version_detail(
    db: Resolver,
    mini_program_id: str,
    target_app: str,
    user_id: str,
    environment: str = Environment.PRODUCTION,
) -> Resolution:
    env = Environment(environment)
    label = f"{mini_program_id}/{target_app}/{env.value}"
    if isinstance(db, ChannelCache):
        snapshot = await db.snapshot((mini_program_id, target_app, env.value))
        if snapshot is None:
            return Resolution(version=None, source="none", reason=f"nothing released on {label}")
        return _resolve(
            mini_program_id, target_app, env, user_id, label, snapshot.stable_version,
            snapshot.candidate_version, snapshot.percent, user_id in snapshot.whitelist,
        )
    # The whitelist can hold a thousand ids: test membership in the database, not here.
    row = await db.fetchrow(
        """
        SELECT stable_version, candidate_version, percent, $4 = ANY(whitelist) AS whitelisted
        FROM channels
        WHERE mini_program_id = $1 AND target_app = $2 AND environment = $3
        """,
        mini_program_id,
        target_app,
        env.value,
        user_id,
    )
    if row is None:
        return Resolution(version=None, source="none", reason=f"nothing released on {label}")
    return _resolve(
        mini_program_id, target_app, env, user_id, label, row["stable_version"],
        row["candidate_version"], row["percent"], bool(row["whitelisted"]),
    )


def _resolve(
    mini_program_id: str,
    target_app: str,
    env: Environment,
    user_id: str,
    label: str,
    stable: str | None,
    candidate: str | None,
    percent: int,
    whitelisted: bool,
) -> Resolution:
    if candidate is not None:
        if whitelisted:
            return Resolution(version=candidate, source="whitelist", reason="whitelist")
        bucket = rollout_bucket(mini_program_id, target_app, env.value, candidate, user_id)
        if in_rollout(bucket, percent):
            threshold = percent * (BUCKETS // 100)
            return Resolution(
                version=candidate,
                source="grayscale",
                reason=f"grayscale bucket {bucket} < {threshold}",
            )
    if stable is None:
        return Resolution(version=None, source="none", reason=f"nothing released on {label}")
    return Resolution(version=stable, source="stable", reason="stable")


async def resolve_version(
    db: Resolver,
    mini_program_id: str,
    target_app: str,
    user_id: str,
    environment: str = Environment.PRODUCTION,
) -> str | None:
    """The version the user gets: the candidate if whitelisted or in its bucket, else stable.

    With a ChannelCache the answer may be up to its `max_staleness` old."""
    resolution = await resolve_version_detail(db, mini_program_id, target_app, user_id, environment)
    return resolution.version
