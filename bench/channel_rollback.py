"""Benchmark: the time from a rollback's acceptance to every lookup seeing it.

N channels each have two versions released, 1.0.0 then 1.1.0 (so 1.1.0 is served and 1.0.0 is
ARCHIVED), written to the catalog with the catalog's own write (`record_transition`), the same
six transitions in the same order the release workflow sends for a gopay release, each bundle
a file in the stack's artifact store; each channel's workflow is then started as a release
reaching RELEASED starts it (signal-with-start of `refresh`) on a worker of its own.

While several simulated clients look up users of every channel continuously (each a
launch-serving service: its own `ChannelCache` over a pool of its own, `resolve_version` for a
random user of each channel in turn), the admin sends `rollback` to one channel after the other
through the client library (`ChannelClient.command`, update-with-start, with a token the bench's
issuer signed). Per rollback, the delay is from the moment the update returned accepted (1.0.0
stable again) to the moment the last of the lookup loops first saw 1.0.0 for that channel (0
when every loop had seen it already: the catalog commits before the update answers). The
target is the p99's: within the cache's staleness bound (`max_staleness`) plus 0.5 s.
"""

import asyncio
import hashlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from activities.channel.notice import CHANNEL_WORKFLOW_TYPE, REFRESH_SIGNAL
from bench.results import Result, Target, figure, percentile
from bench.stack import WORKSPACE, BenchStack
from mpr.catalog.db import create_pool
from mpr.catalog.releases import record_transition
from mpr.catalog.rollout import DEFAULT_MAX_STALENESS_SECONDS, ChannelCache, resolve_version
from mpr.domain.channel.models import ChannelKey, ChannelStart
from mpr.domain.channel.stages import ChannelState
from mpr.domain.release.models import (
    AppManifest,
    CellCheck,
    CellResult,
    CompatibilityReport,
    Environment,
    MatrixCell,
    PackageFacts,
    Reviewer,
    ReviewOutcome,
    Rollout,
)
from mpr.domain.release.records import CatalogTransition, ReleaseEvent, ReleaseRow, ReviewRound
from mpr.domain.release.release_id import release_id
from mpr.domain.release.stages import Stage
from starters.channels import ChannelClient, ChannelStarting

TARGET_APP = "gopay"
"""Partner review only, and a first release goes out in full: the shortest path to live."""
RESTORED, ROLLED_BACK = "1.0.0", "1.1.0"
"""Released in this order; the rollback serves RESTORED again."""
SENDER = "admin"
"""An admin of the bench's workspace: rollback takes the admin or program_admin role."""
SLACK_SECONDS = 0.5
"""The issue's target: every lookup sees a rollback within the staleness bound plus this."""
USERS = [f"user-{n:05d}" for n in range(20_000)]
SEED = 20261215
AT_ONCE = 10
"""Channels prepared (catalog writes) and started at the same time."""
SEEN_WAIT_SECONDS = 10.0
"""After the last rollback: how long beyond the staleness bound the loops may take to see
every rollback before the benchmark fails (a rollback never seen is a fault, not a delay)."""
START_SECONDS = 60.0
POLL_SECONDS = 0.02
LOOKUP_POOL_SIZE = 2
"""Each client's pool: one connection reads while another may be opening."""


def target_ms(max_staleness: float) -> float:
    """The issue's bound on the p99 delay, in ms: the staleness bound plus SLACK_SECONDS."""
    return (max_staleness + SLACK_SECONDS) * 1000


TARGET = Target("value", "<=", target_ms(DEFAULT_MAX_STALENESS_SECONDS))


# --- what the lookup loops saw (pure) ------------------------------------------------------


@dataclass
class Sightings:
    """What one lookup loop saw of each channel: whether it saw the version served before the
    rollback, the first time it saw the restored one, and anything it should not have seen."""

    before: set[str] = field(default_factory=set)
    """Channels this loop saw serving ROLLED_BACK (before their rollback)."""
    first_seen: dict[str, float] = field(default_factory=dict)
    """Per channel, the clock when this loop first saw RESTORED."""
    regressions: list[str] = field(default_factory=list)
    """Channels seen serving ROLLED_BACK again after RESTORED: a cache going back in time."""
    unexpected: list[tuple[str, str | None]] = field(default_factory=list)
    """(channel, version) answered that is neither version."""
    lookups: int = 0

    def observe(self, program: str, version: str | None, at: float) -> None:
        self.lookups += 1
        if version == RESTORED:
            self.first_seen.setdefault(program, at)
        elif version == ROLLED_BACK:
            if program in self.first_seen:
                self.regressions.append(program)
            else:
                self.before.add(program)
        else:
            self.unexpected.append((program, version))

    def faults(self) -> list[str]:
        """What makes this loop's first sightings meaningless, in words (none: [])."""
        found = []
        if self.regressions:
            found.append(f"saw {ROLLED_BACK} again after {RESTORED} on "
                         f"{len(self.regressions)} lookup(s), first on {self.regressions[0]}")
        if self.unexpected:
            program, version = self.unexpected[0]
            found.append(f"{len(self.unexpected)} lookup(s) answered neither version, first "
                         f"{version!r} on {program}")
        return found


@dataclass(frozen=True)
class Delays:
    """Per rollback, from its acceptance to every loop having seen it."""

    ms: dict[str, float]
    """Per channel seen by every loop: the delay in ms, 0 when every loop had seen it already
    when the update returned."""
    signed_ms: dict[str, float]
    """The same before the clamp: negative when the last loop saw it before the update
    returned (the catalog commits before the workflow answers)."""
    unseen: list[str]
    """Channels rolled back that some loop has not seen restored."""

    @property
    def seen_before_acceptance(self) -> int:
        return sum(1 for delay in self.signed_ms.values() if delay <= 0)


def seen_by_every_loop(accepted: Mapping[str, float], loops: Sequence[Sightings]) -> Delays:
    """The delay of each rollback accepted at `accepted[program]` (the clock of the loops'
    sightings): until the last of `loops` first saw the restored version."""
    if not loops:
        raise ValueError("no lookup loops")
    ms: dict[str, float] = {}
    signed: dict[str, float] = {}
    unseen = []
    for program, at in accepted.items():
        firsts = [loop.first_seen.get(program) for loop in loops]
        if any(first is None for first in firsts):
            unseen.append(program)
            continue
        last = max(first for first in firsts if first is not None)
        signed[program] = (last - at) * 1000
        ms[program] = max(0.0, signed[program])
    return Delays(ms=ms, signed_ms=signed, unseen=unseen)


def everyone_saw(programs: Sequence[str], loops: Sequence[Sightings]) -> bool:
    return all(program in loop.first_seen for loop in loops for program in programs)


# --- the catalog: two versions released per channel ---------------------------------------


class CatalogRelease:
    """One release's catalog writes as the release workflow makes them, in order: start,
    build, compatibility, apply, the partner's approval, the full release (gopay takes the
    partner's review only, and a first release goes out in full)."""

    def __init__(self, program: str, version: str, first_release: bool,
                 bundles: Path) -> None:
        rid = release_id(program, version, TARGET_APP, Environment.PRODUCTION)
        content = f"bench bundle {rid}".encode()
        bundle = bundles / f"{hashlib.sha256(content).hexdigest()}.zip"
        bundle.write_bytes(content)  # the rollback checks its target's bundle is there
        self.package = PackageFacts(
            sha256=hashlib.sha256(content).hexdigest(), size_bytes=len(content),
            uncompressed_bytes=len(content), file_count=1, artifact_path=str(bundle),
            manifest=AppManifest(name="Bench Shop", version=version, pages=["pages/index/index"]),
        )
        self.seq = 0
        self.row = ReleaseRow(
            release_id=rid, mini_program_id=program, version=version, target_app=TARGET_APP,
            environment=Environment.PRODUCTION, workspace_id=WORKSPACE, requested_by="dev",
            stage=Stage.BUILDING, percent=0, package_sha256=None, first_release=first_release,
            at=datetime.now(UTC))

    def transitions(self) -> list[CatalogTransition]:
        cell = MatrixCell(os="ios", network="wifi", device_tier="high")
        report = CompatibilityReport(
            report_id=str(uuid.uuid4()), package_sha256=self.package.sha256,
            results=[CellResult(cell=cell, verdict="pass", checks=[
                CellCheck(name="launch", verdict="pass", detail="seeded by the bench")])],
            created_at=datetime.now(UTC))
        sha = self.package.sha256
        return [
            self._to(Stage.BUILDING, "start_release", "dev"),
            self._to(Stage.COMPATIBILITY_TESTING, "build_succeeded", None,
                     package=self.package, package_sha256=sha),
            self._to(Stage.READY_TO_APPLY, "compatibility_tested", None,
                     compatibility_report=report),
            self._to(Stage.UNDER_REVIEW, "apply_release", "dev",
                     open_reviews=ReviewRound(round=1, organisations=[Reviewer.PARTNER_APP])),
            self._to(Stage.RELEASE_PREPARATION, "approve_review", "gopay-rev",
                     review=ReviewOutcome(round=1, reviewer=Reviewer.PARTNER_APP,
                                          approved=True, actor="gopay-rev", comment="")),
            self._to(Stage.RELEASED, "full_release", "admin", percent=100, promote=True,
                     rollout=Rollout(candidate_version=None, candidate_release_id=None,
                                     percent=0, whitelist=[])),
        ]

    def _to(self, stage: Stage, command: str, actor: str | None,
            **changes: Any) -> CatalogTransition:
        self.seq += 1
        now = datetime.now(UTC)
        row_changes: dict[str, Any] = {
            name: changes.pop(name) for name in ("percent", "package_sha256") if name in changes}
        event = ReleaseEvent(
            event_id=str(uuid.uuid4()), release_id=self.row.release_id, seq=self.seq,
            command=command, actor=actor, accepted=True, stage_before=self.row.stage,
            stage_after=stage, at=now)
        self.row = self.row.model_copy(update={"stage": stage, "at": now, **row_changes})
        return CatalogTransition(event=event, release=self.row, **changes)


async def release_in_catalog(pool: asyncpg.Pool, program: str, version: str,
                             first_release: bool, bundles: Path) -> None:
    release = CatalogRelease(program, version, first_release, bundles)
    for transition in release.transitions():
        result = await record_transition(pool, transition)
        if not result.applied:
            raise RuntimeError(f"{release.row.release_id}: {transition.event.command} not "
                               f"applied: {result.reason}")


T = TypeVar("T")


async def _at_once(count: int, one: Callable[[int], Awaitable[T]]) -> list[T]:
    limit = asyncio.Semaphore(AT_ONCE)

    async def limited(n: int) -> T:
        async with limit:
            return await one(n)

    return list(await asyncio.gather(*(limited(n) for n in range(count))))


async def start_channel(stack: BenchStack, channels: ChannelClient, key: ChannelKey) -> None:
    """Start the channel's workflow as a release reaching RELEASED does (notify_channel), and
    wait until it answers with ROLLED_BACK stable."""
    client = await stack.client()
    await client.start_workflow(
        CHANNEL_WORKFLOW_TYPE, ChannelStart(**key.model_dump()).model_dump(mode="json"),
        id=key.workflow_id, task_queue=channels.task_queue, start_signal=REFRESH_SIGNAL,
        start_signal_args=[{"release_id": release_id(key.mini_program_id, ROLLED_BACK,
                                                     key.target_app, key.environment)}])
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            status = await channels.status(key)
            if (status.state, status.stable_version) == (ChannelState.ONLINE, ROLLED_BACK):
                return
        except ChannelStarting:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{key.workflow_id} does not serve {ROLLED_BACK}")
        await asyncio.sleep(0.1)


# --- the lookups and the rollbacks ---------------------------------------------------------


async def _lookup_loop(cache: ChannelCache, programs: Sequence[str], sightings: Sightings,
                       stop: asyncio.Event, seed: int) -> None:
    """A launch-serving client: every channel in turn (an order of its own), a random user
    each time, yielding to the event loop after every lookup as a service between requests."""
    rng = random.Random(seed)
    order = list(programs)
    rng.shuffle(order)
    while not stop.is_set():
        for program in order:
            version = await resolve_version(cache, program, TARGET_APP,
                                            USERS[rng.randrange(len(USERS))])
            sightings.observe(program, version, time.perf_counter())
            await asyncio.sleep(0)
            if stop.is_set():
                return


async def _until(condition: Callable[[], bool], within: float,
                 tasks: Sequence[asyncio.Task[None]], what: str) -> None:
    """Wait for `condition()` at most `within` seconds, failing at once if a lookup loop
    died."""
    deadline = time.perf_counter() + within
    while not condition():
        for task in tasks:
            if task.done():
                task.result()  # its exception, if it failed
                raise RuntimeError("a lookup loop stopped")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"not within {within:g} s: {what}")
        await asyncio.sleep(POLL_SECONDS)


async def prepare(stack: BenchStack, channels: ChannelClient,
                  keys: Sequence[ChannelKey]) -> dict[str, float]:
    """Two versions released on each channel in the catalog, then its workflow started; the
    seconds each part took."""
    catalog = await stack.catalog()
    bundles = stack.artifact_dir / "rollback-bench"
    bundles.mkdir(parents=True, exist_ok=True)

    async def released(n: int) -> None:
        program = keys[n].mini_program_id
        await release_in_catalog(catalog, program, RESTORED, True, bundles)
        await release_in_catalog(catalog, program, ROLLED_BACK, False, bundles)

    started = time.perf_counter()
    await _at_once(len(keys), released)
    written = time.perf_counter()
    await _at_once(len(keys), lambda n: start_channel(stack, channels, keys[n]))
    return {"catalog_writes": round(written - started, 2),
            "channel_starts": round(time.perf_counter() - written, 2)}


async def roll_back(channels: ChannelClient, keys: Sequence[ChannelKey],
                    update_ms: dict[str, float]) -> dict[str, float]:
    """Roll each channel back in turn; per channel, the clock when its update returned
    accepted (its round trip, from sending, into `update_ms`)."""
    accepted: dict[str, float] = {}
    for key in keys:
        program = key.mini_program_id
        sent = time.perf_counter()
        status = await channels.command(key, "rollback", {"reason": "bench: rollback"})
        accepted[program] = time.perf_counter()
        update_ms[program] = (accepted[program] - sent) * 1000
        if (status.state, status.stable_version) != (ChannelState.ONLINE, RESTORED):
            raise RuntimeError(f"{program}: the rollback answered {status.state} "
                               f"{status.stable_version}, not ONLINE {RESTORED}")
    return accepted


async def run(stack: BenchStack, *, rollbacks: int,
              clients: int = 4) -> tuple[list[Result], dict[str, object]]:
    worker = await stack.start_worker("rollback")
    pools: list[asyncpg.Pool] = []
    try:
        channels = ChannelClient(await stack.client(), worker.task_queue,
                                 token=stack.token_provider(SENDER))
        prefix = f"rollback-{uuid.uuid4().hex[:6]}"
        keys = [ChannelKey(mini_program_id=f"{prefix}-{n:04d}", target_app=TARGET_APP)
                for n in range(rollbacks)]
        programs = [key.mini_program_id for key in keys]
        prepare_seconds = await prepare(stack, channels, keys)

        for _ in range(clients):
            pools.append(await create_pool(stack.env["DATABASE_URL"],
                                           max_size=LOOKUP_POOL_SIZE))
        caches = [ChannelCache(pool) for pool in pools]
        max_staleness = caches[0].max_staleness
        sightings = [Sightings() for _ in range(clients)]
        stop = asyncio.Event()
        loops = [asyncio.create_task(_lookup_loop(cache, programs, seen, stop, seed=SEED + n))
                 for n, (cache, seen) in enumerate(zip(caches, sightings, strict=True))]
        update_ms: dict[str, float] = {}
        try:
            # Every loop has seen every channel serve 1.1.0: its cache is warm, and a first
            # sighting of 1.0.0 can only come from the rollback.
            await _until(lambda: all(len(s.before) == rollbacks for s in sightings),
                         START_SECONDS, loops, f"every loop sees {ROLLED_BACK} everywhere")
            counted = [s.lookups for s in sightings]
            reads = [cache.reads for cache in caches]
            cpu = stack.cpu_meter(worker).start()
            measured_from = time.perf_counter()
            accepted = await roll_back(channels, keys, update_ms)
            await _until(lambda: everyone_saw(programs, sightings),
                         max_staleness + SEEN_WAIT_SECONDS, loops,
                         "every loop sees every rollback")
            measured_seconds = time.perf_counter() - measured_from
            cpu_seconds = cpu.stop()
        finally:
            stop.set()
            await asyncio.gather(*loops, return_exceptions=True)
        for task in loops:
            task.result()
        faults = [f"loop {n}: {fault}" for n, s in enumerate(sightings) for fault in s.faults()]
        if faults:
            raise RuntimeError("; ".join(faults))

        delays = seen_by_every_loop(accepted, sightings)
        values = list(delays.ms.values())
        bound = target_ms(max_staleness)
        target = Target("value", "<=", bound)
        results = [
            figure("rollback_seen_by_every_lookup_p50_ms", percentile(values, 50), "ms", None,
                   target),
            figure("rollback_seen_by_every_lookup_p99_ms", percentile(values, 99), "ms", None,
                   target),
        ]
        per_loop = []
        for n, seen in enumerate(sightings):
            rate = (seen.lookups - counted[n]) / measured_seconds
            per_loop.append({
                "lookups": seen.lookups - counted[n],
                "lookups_per_second": round(rate),
                "revisit_ms": round(rollbacks / rate * 1000, 2),
                "cache_reads": caches[n].reads - reads[n],
            })
        updates = list(update_ms.values())
        details: dict[str, object] = {
            "channels": rollbacks, "rollbacks": rollbacks, "lookup_clients": clients,
            "users": len(USERS), "max_staleness_seconds": max_staleness, "target_ms": bound,
            "prepared_by": "catalog writes (record_transition, the release workflow's six "
                           "transitions per version), then signal-with-start of refresh",
            "prepare_seconds": prepare_seconds,
            "measured_seconds": round(measured_seconds, 2),
            "seen_before_acceptance": delays.seen_before_acceptance,
            "delay_ms": sorted(round(v, 1) for v in values),
            "signed_delay_ms": sorted(round(v, 1) for v in delays.signed_ms.values()),
            "rollback_update_ms": {"p50": round(percentile(updates, 50), 1),
                                   "p99": round(percentile(updates, 99), 1),
                                   "max": round(max(updates), 1)},
            "loops": per_loop,
            "cpu_seconds": cpu_seconds,
        }
        return results, details
    finally:
        for pool in pools:
            await pool.close()
        await stack.stop_worker(worker)
