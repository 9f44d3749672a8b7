"""Which version a user is served, answered from the channels table alone.

Clients ask this on every launch, so it never touches Temporal: the release workflow keeps
the channel row current through `record_transition`.

`resolve_version(db, ...)` reads the channel row on every call when `db` is a pool or a
connection (so it sees a write as soon as it commits: what `mpr resolve`, the tests and anything
inside a transaction need). A service answering launches passes a `ChannelCache` instead: the
same function, answered from an in-process copy of the channel row that is never older than
`max_staleness` (0.5 s by default) and bounded in memory.

A launch from a trial QR code passes the link's trial marker (`trial=`, the release id its
`mpr_trial` parameter names; `mpr.domain.qr.trial_marker` reads it). That release's version is
then served to the mini program's trial members, and to the channel's whitelisted users while
the release is the channel's candidate, as long as the release is in one of
`mpr.domain.qr.TRIAL_STAGES`; everyone else is resolved as without the marker. An offline
channel serves nobody, trial or not (docs/qr-codes.md).
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
from mpr.domain.qr import TRIAL_STAGE_NAMES
from mpr.domain.release.models import Environment
from mpr.domain.release.release_id import parse_release_id
from mpr.infra.single_flight import SingleFlight

Source = Literal["whitelist", "grayscale", "stable", "none", "offline", "trial"]

DEFAULT_MAX_STALENESS_SECONDS = 0.5
DEFAULT_MAX_WEIGHT = 100_000
"""The cache holds at most this many channels plus whitelisted user ids (a channel weighs one
plus the length of its whitelist; a trial release one plus its mini program's trial members):
with user ids of up to 128 characters, some tens of MB."""


class Resolution(BaseModel):
    version: str | None
    """None when nothing is released to this user on the channel."""
    source: Source
    reason: str


# --- the cache -------------------------------------------------------------------------------


ChannelKey = tuple[str, str, str]
"""(mini program id, target app, environment value)."""


@dataclass(frozen=True)
class TrialKey:
    """The cache key of a release named by a trial link."""

    release_id: str


@dataclass(frozen=True)
class ChannelSnapshot:
    """What resolution needs from one channel row, as it was when read."""

    stable_version: str | None
    candidate_version: str | None
    candidate_release_id: str | None
    percent: int
    whitelist: frozenset[str]
    offline_reason: str | None
    """Why the channel is offline (it serves nothing), or None while it is online."""
    read_at: float
    """The cache clock when the query that read it was sent: the row is at least this fresh."""

    @property
    def weight(self) -> int:
        return 1 + len(self.whitelist)


@dataclass(frozen=True)
class TrialSnapshot:
    """What a trial launch needs from the release its link names, as it was when read."""

    version: str
    stage: str
    members: frozenset[str]
    """The mini program's trial members."""
    read_at: float

    @property
    def weight(self) -> int:
        return 1 + len(self.members)


@dataclass(frozen=True)
class _Missing:
    """No channel row (nothing released yet), or no such release: cached like a row, so it
    expires like one."""

    read_at: float
    weight: int = 1


CacheKey = ChannelKey | TrialKey
Entry = ChannelSnapshot | TrialSnapshot | _Missing


class ChannelCache:
    """An in-process cache of channel rows for `resolve_version`, one per process and pool.

    Staleness is bounded: a row read at time t (when its query was sent) answers lookups until
    t + `max_staleness`, after which the next lookup reads it again; a change committed at any
    moment is therefore seen by every lookup starting `max_staleness` later. Concurrent lookups
    of a channel being read share that one query. Memory is bounded: past `max_weight`
    (channels plus whitelisted ids held) the least recently used channels are dropped.
    Channels are keyed by (mini program, target app, environment) and never share an entry.

    Trial launches read the release their link names (its version, stage and the mini
    program's trial members) into entries of their own, under the same staleness bound and in
    the same weighed memory, so trial data never holds more than `max_weight` either.

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
        self._entries: OrderedDict[CacheKey, Entry] = OrderedDict()
        self._weight = 0
        self._reading: SingleFlight[CacheKey, Entry] = SingleFlight()
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
        found = await self._lookup(key)
        return found if isinstance(found, ChannelSnapshot) else None

    async def trial_snapshot(self, release_id: str) -> TrialSnapshot | None:
        found = await self._lookup(TrialKey(release_id))
        return found if isinstance(found, TrialSnapshot) else None

    async def _lookup(self, key: CacheKey) -> Entry:
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.read_at < self.max_staleness:
            self._entries.move_to_end(key)
            return entry
        return await self._reading.run(key, lambda: self._read(key))

    async def _read(self, key: CacheKey) -> Entry:
        read_at = self._clock()
        self.reads += 1
        entry = (await self._read_trial(key.release_id, read_at) if isinstance(key, TrialKey)
                 else await self._read_channel(key, read_at))
        self._store(key, entry)
        return entry

    async def _read_channel(self, key: ChannelKey, read_at: float) -> Entry:
        row = await self.pool.fetchrow(
            """
            SELECT stable_version, candidate_version, candidate_release_id, percent, whitelist,
                   offline_reason
            FROM channels
            WHERE mini_program_id = $1 AND target_app = $2 AND environment = $3
            """,
            *key,
        )
        if row is None:
            return _Missing(read_at)
        return ChannelSnapshot(
            stable_version=row["stable_version"],
            candidate_version=row["candidate_version"],
            candidate_release_id=row["candidate_release_id"],
            percent=row["percent"],
            whitelist=frozenset(row["whitelist"]),
            offline_reason=row["offline_reason"],
            read_at=read_at,
        )

    async def _read_trial(self, release_id: str, read_at: float) -> Entry:
        row = await self.pool.fetchrow(
            """
            SELECT r.version, r.stage,
                   ARRAY(SELECT m.user_id FROM trial_members m
                         WHERE m.mini_program_id = r.mini_program_id) AS members
            FROM releases r WHERE r.release_id = $1
            """,
            release_id,
        )
        if row is None:
            return _Missing(read_at)
        return TrialSnapshot(version=row["version"], stage=row["stage"],
                             members=frozenset(row["members"]), read_at=read_at)

    def _store(self, key: CacheKey, entry: Entry) -> None:
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


@dataclass(frozen=True)
class _Channel:
    """What resolution reads from a channel row, for one user."""

    stable: str | None
    candidate: str | None
    candidate_release_id: str | None
    percent: int
    whitelisted: bool
    offline_reason: str | None


@dataclass(frozen=True)
class _Trial:
    """What resolution reads of the release a trial link names, for one user."""

    release_id: str
    version: str
    stage: str
    member: bool
    """The user is one of the mini program's trial members."""


async def resolve_version_detail(
    db: Resolver,
    mini_program_id: str,
    target_app: str,
    user_id: str,
    environment: str = Environment.PRODUCTION,
    *,
    trial: str | None = None,
) -> Resolution:
    env = Environment(environment)
    label = f"{mini_program_id}/{target_app}/{env.value}"
    # A marker naming a release of another channel (or nothing at all) is no trial of this one:
    # ignored before any read, so forged markers cannot make the cache read releases.
    trial_id = trial if trial and _names_channel(trial, mini_program_id, target_app, env) else None
    if isinstance(db, ChannelCache):
        channel, trial_facts = await _from_cache(db, (mini_program_id, target_app, env.value),
                                                 user_id, trial_id)
    elif trial_id is None:
        channel, trial_facts = await _channel_from(db, mini_program_id, target_app, env,
                                                   user_id), None
    else:
        channel, trial_facts = await _trial_from(db, mini_program_id, target_app, env, user_id,
                                                 trial_id)
    return _resolve(mini_program_id, target_app, env, user_id, label, channel, trial_facts)


def _names_channel(trial: str, mini_program_id: str, target_app: str, env: Environment) -> bool:
    try:
        program, _, app, trial_env = parse_release_id(trial)
    except ValueError:
        return False
    return (program, app, trial_env) == (mini_program_id, target_app, env)


async def _from_cache(
    cache: ChannelCache, key: ChannelKey, user_id: str, trial_id: str | None
) -> tuple[_Channel | None, _Trial | None]:
    snapshot = await cache.snapshot(key)
    channel = None if snapshot is None else _Channel(
        snapshot.stable_version, snapshot.candidate_version, snapshot.candidate_release_id,
        snapshot.percent, user_id in snapshot.whitelist, snapshot.offline_reason,
    )
    if trial_id is None:
        return channel, None
    release = await cache.trial_snapshot(trial_id)
    trial = None if release is None else _Trial(
        trial_id, release.version, release.stage, user_id in release.members
    )
    return channel, trial


async def _channel_from(
    db: Database, mini_program_id: str, target_app: str, env: Environment, user_id: str
) -> _Channel | None:
    # The whitelist can hold a thousand ids: test membership in the database, not here.
    row = await db.fetchrow(
        """
        SELECT stable_version, candidate_version, percent, $4 = ANY(whitelist) AS whitelisted,
               offline_reason
        FROM channels
        WHERE mini_program_id = $1 AND target_app = $2 AND environment = $3
        """,
        mini_program_id,
        target_app,
        env.value,
        user_id,
    )
    if row is None:
        return None
    return _Channel(row["stable_version"], row["candidate_version"], None, row["percent"],
                    bool(row["whitelisted"]), row["offline_reason"])


async def _trial_from(
    db: Database, mini_program_id: str, target_app: str, env: Environment, user_id: str,
    trial_id: str,
) -> tuple[_Channel | None, _Trial | None]:
    # One statement, so the channel and the release are read as of the same moment; the
    # channel row may not exist yet (a first release before review).
    row = await db.fetchrow(
        """
        SELECT c.mini_program_id IS NOT NULL AS has_channel, c.stable_version,
               c.candidate_version, c.candidate_release_id, c.percent,
               $4 = ANY(c.whitelist) AS whitelisted, c.offline_reason,
               r.version AS trial_version, r.stage AS trial_stage,
               EXISTS (SELECT 1 FROM trial_members m
                       WHERE m.mini_program_id = $1 AND m.user_id = $4) AS trial_member
        FROM (SELECT 1) AS one
        LEFT JOIN channels c
            ON c.mini_program_id = $1 AND c.target_app = $2 AND c.environment = $3
        LEFT JOIN releases r ON r.release_id = $5
        """,
        mini_program_id,
        target_app,
        env.value,
        user_id,
        trial_id,
    )
    channel = _Channel(
        row["stable_version"], row["candidate_version"], row["candidate_release_id"],
        row["percent"], bool(row["whitelisted"]), row["offline_reason"],
    ) if row["has_channel"] else None
    trial = _Trial(trial_id, row["trial_version"], row["trial_stage"],
                   bool(row["trial_member"])) if row["trial_version"] is not None else None
    return channel, trial


def _resolve(
    mini_program_id: str,
    target_app: str,
    env: Environment,
    user_id: str,
    label: str,
    channel: _Channel | None,
    trial: _Trial | None,
) -> Resolution:
    if channel is not None and channel.offline_reason is not None:
        # Taken offline (the emergency brake): nobody is served, not even a candidate or a
        # trial version.
        return Resolution(version=None, source="offline",
                          reason=f"{label} is offline: {channel.offline_reason}")
    if trial is not None and trial.stage in TRIAL_STAGE_NAMES:
        # The channel's whitelist is the release's only while it is the candidate.
        whitelisted = (channel is not None and channel.whitelisted
                       and channel.candidate_release_id == trial.release_id)
        if trial.member or whitelisted:
            who = "trial member" if trial.member else "whitelisted user"
            return Resolution(version=trial.version, source="trial",
                              reason=f"trial code of {trial.release_id}, to a {who}")
    if channel is None:
        return Resolution(version=None, source="none", reason=f"nothing released on {label}")
    if channel.candidate is not None:
        if channel.whitelisted:
            return Resolution(version=channel.candidate, source="whitelist", reason="whitelist")
        bucket = rollout_bucket(mini_program_id, target_app, env.value, channel.candidate,
                                user_id)
        if in_rollout(bucket, channel.percent):
            threshold = channel.percent * (BUCKETS // 100)
            return Resolution(
                version=channel.candidate,
                source="grayscale",
                reason=f"grayscale bucket {bucket} < {threshold}",
            )
    if channel.stable is None:
        return Resolution(version=None, source="none", reason=f"nothing released on {label}")
    return Resolution(version=channel.stable, source="stable", reason="stable")


async def resolve_version(
    db: Resolver,
    mini_program_id: str,
    target_app: str,
    user_id: str,
    environment: str = Environment.PRODUCTION,
    *,
    trial: str | None = None,
) -> str | None:
    """The version the user gets: the candidate if whitelisted or in its bucket, else stable;
    with `trial` (a trial link's marker), the trial release's version to its testers.

    With a ChannelCache the answer may be up to its `max_staleness` old."""
    resolution = await resolve_version_detail(db, mini_program_id, target_app, user_id,
                                              environment, trial=trial)
    return resolution.version
