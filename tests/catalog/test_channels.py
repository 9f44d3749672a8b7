"""A channel's catalog transactions: rollback, takedown, back online, and what a release going
live does to them, against PostgreSQL."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from mpr.catalog.channels import load_channel_view, record_channel_transition
from mpr.catalog.rollout import resolve_version_detail
from mpr.domain.channel.models import ChannelKey, ChannelView, Takedown
from mpr.domain.channel.records import ChannelEvent, ChannelTransition, RollbackChange
from mpr.domain.channel.stages import ChannelState, TakedownKind, VersionStatus
from mpr.domain.release.models import Rollout
from mpr.domain.release.stages import Stage
from tests.catalog.factories import Release, cleared, to_released, to_review

KEY = ChannelKey(mini_program_id="prog", target_app="gopay")
LATER = datetime(2025, 6, 1, tzinfo=UTC)


async def all_present(paths: list[str | None]) -> list[bool]:
    return [True for _ in paths]


async def none_present(paths: list[str | None]) -> list[bool]:
    return [False for _ in paths]


async def released(pool: asyncpg.Pool, *versions: str) -> list[Release]:
    """Each version released in turn on KEY's channel, a day apart."""
    done = []
    for day, version in enumerate(versions):
        release = Release(version, start=datetime(2025, 1, 1 + day, tzinfo=UTC))
        await to_released(pool, release)
        done.append(release)
    return done


async def view(pool: asyncpg.Pool) -> ChannelView:
    found = await load_channel_view(pool, KEY, all_present)
    assert found is not None
    return found


def event(command: str, before: ChannelState, after: ChannelState, *, accepted: bool = True,
          at: datetime = LATER, **payload: Any) -> ChannelEvent:
    return ChannelEvent(event_id=str(uuid.uuid4()), key=KEY, seq=1, command=command,
                        actor="alice", accepted=accepted, state_before=before,
                        state_after=after, payload=payload or None, at=at)


def rollback(current: Release, target: Release, revision: int) -> ChannelTransition:
    return ChannelTransition(
        event=event("rollback", ChannelState.ONLINE, ChannelState.ONLINE, reason="crash"),
        expected_revision=revision,
        rollback=RollbackChange(from_release_id=current.release_id,
                                from_version=current.row.version,
                                to_release_id=target.release_id, to_version=target.row.version))


def takedown(revision: int, kind: TakedownKind = TakedownKind.ADMIN) -> ChannelTransition:
    return ChannelTransition(
        event=event("take_offline", ChannelState.ONLINE, ChannelState.OFFLINE),
        expected_revision=revision,
        takedown=Takedown(kind=kind, reason="fraud report", by="rita", at=LATER))


async def stage_of(pool: asyncpg.Pool, release: Release) -> tuple[str, Any]:
    row = await pool.fetchrow("SELECT stage, archived_at FROM releases WHERE release_id = $1",
                              release.release_id)
    return row["stage"], row["archived_at"]


async def test_releases_are_recorded_as_version_changes(db_pool: asyncpg.Pool) -> None:
    v1, v2 = await released(db_pool, "1.0.0", "1.1.0")
    channel = await view(db_pool)
    assert channel.state is ChannelState.ONLINE
    assert channel.stable_version == "1.1.0"
    assert [v.version for v in channel.released] == ["1.1.0", "1.0.0"]
    assert [v.status for v in channel.released] == [VersionStatus.RELEASED,
                                                     VersionStatus.ARCHIVED]
    assert channel.stable_history == [v2.release_id, v1.release_id]
    assert [c.change for c in channel.released[1].changes] == ["archived", "released"]
    assert channel.released[0].released_by == "dev"


async def test_a_channel_of_an_unknown_program_has_no_view(db_pool: asyncpg.Pool) -> None:
    assert await load_channel_view(db_pool, KEY, all_present) is None


async def test_a_program_with_nothing_released_is_not_released(db_pool: asyncpg.Pool) -> None:
    await to_review(db_pool, Release("1.0.0"))
    channel = await view(db_pool)
    assert channel.state is ChannelState.NOT_RELEASED
    assert channel.in_flight is not None and channel.in_flight.stage == "UNDER_REVIEW"


async def test_a_rollback_restores_the_previous_version_and_keeps_its_dates(
    db_pool: asyncpg.Pool,
) -> None:
    v1, v2 = await released(db_pool, "1.0.0", "1.1.0")
    archived_at = (await stage_of(db_pool, v1))[1]
    before = await view(db_pool)

    result = await record_channel_transition(db_pool, rollback(v2, v1, before.revision),
                                             all_present)

    assert result.applied and result.view is not None
    assert result.view.stable_version == "1.0.0"
    assert await stage_of(db_pool, v1) == ("RELEASED", None)
    assert (await stage_of(db_pool, v2))[0] == "ROLLED_BACK"
    restored = result.view.version(v1.release_id)
    assert restored is not None
    assert [(c.change, c.at) for c in restored.changes] == [
        ("restored", LATER), ("archived", archived_at), ("released", restored.released_at)]
    assert result.view.stable_history[0] == v1.release_id
    served = await resolve_version_detail(db_pool, "prog", "gopay", "user-1")
    assert served.version == "1.0.0"


async def test_a_write_decided_on_an_older_revision_is_refused(db_pool: asyncpg.Pool) -> None:
    v1, v2 = await released(db_pool, "1.0.0", "1.1.0")
    stale = (await view(db_pool)).revision
    v3 = (await released(db_pool, "1.2.0"))[0]  # went live while the rollback was decided

    result = await record_channel_transition(db_pool, rollback(v2, v1, stale), all_present)

    assert not result.applied
    assert "the channel changed" in result.refusal()
    assert (await view(db_pool)).stable_version == v3.row.version
    row = await db_pool.fetchrow("SELECT accepted, state_after FROM channel_events")
    assert (row["accepted"], row["state_after"]) == (False, "ONLINE")


async def test_a_retried_event_is_applied_once_even_when_retries_race(
    db_pool: asyncpg.Pool,
) -> None:
    v1, v2 = await released(db_pool, "1.0.0", "1.1.0")
    transition = rollback(v2, v1, (await view(db_pool)).revision)

    results = await asyncio.gather(*(
        record_channel_transition(db_pool, transition, all_present) for _ in range(5)))

    assert all(result.applied for result in results)
    assert await db_pool.fetchval("SELECT count(*) FROM channel_events") == 1
    assert await db_pool.fetchval(
        "SELECT count(*) FROM version_changes WHERE event_id = $1",
        transition.event.event_id) == 2
    assert (await view(db_pool)).stable_version == "1.0.0"


async def test_a_refused_retry_stays_refused(db_pool: asyncpg.Pool) -> None:
    v1, v2 = await released(db_pool, "1.0.0", "1.1.0")
    transition = rollback(v2, v1, revision=-1)
    first = await record_channel_transition(db_pool, transition, all_present)
    again = await record_channel_transition(db_pool, transition, all_present)
    assert not first.applied and not again.applied
    assert again.refusal() == first.refusal()


async def test_offline_serves_nobody_and_online_serves_the_same_version(
    db_pool: asyncpg.Pool,
) -> None:
    await released(db_pool, "1.0.0")
    offline = await record_channel_transition(db_pool, takedown((await view(db_pool)).revision),
                                              all_present)
    assert offline.view is not None and offline.view.state is ChannelState.OFFLINE
    assert offline.view.takedown == Takedown(kind=TakedownKind.ADMIN, reason="fraud report",
                                             by="rita", at=LATER)
    served = await resolve_version_detail(db_pool, "prog", "gopay", "user-1")
    assert (served.version, served.source) == (None, "offline")
    assert "fraud report" in served.reason

    online = await record_channel_transition(db_pool, ChannelTransition(
        event=event("bring_online", ChannelState.OFFLINE, ChannelState.ONLINE,
                    at=LATER + timedelta(hours=1)),
        expected_revision=offline.view.revision, online=True), all_present)
    assert online.view is not None and online.view.state is ChannelState.ONLINE
    assert (await resolve_version_detail(db_pool, "prog", "gopay", "u")).version == "1.0.0"


@pytest.mark.parametrize("kind", [TakedownKind.PLATFORM, TakedownKind.PARTNER])
async def test_a_reviewers_takedown_keeps_every_release_from_going_live(
    db_pool: asyncpg.Pool, kind: TakedownKind,
) -> None:
    await released(db_pool, "1.0.0")
    await record_channel_transition(db_pool, takedown((await view(db_pool)).revision, kind),
                                    all_present)
    v2 = Release("1.1.0", start=LATER)
    await to_review(db_pool, v2)
    await v2.move(db_pool, Stage.RELEASE_PREPARATION)

    grayscale = await v2.move(db_pool, Stage.GRAYSCALE, percent=10, rollout=Rollout(
        candidate_version="1.1.0", candidate_release_id=v2.release_id, percent=10, whitelist=[]))
    full = await v2.move(db_pool, Stage.RELEASED, percent=100, rollout=cleared(), promote=True)

    for refused in (grayscale, full):
        assert not refused.applied
        assert f"{kind} takedown" in refused.refusal()
        assert f"until a {kind} reviewer brings it online" in refused.refusal()
    assert (await stage_of(db_pool, v2))[0] == "RELEASE_PREPARATION"
    assert (await view(db_pool)).stable_version == "1.0.0"


async def test_a_new_release_lifts_an_admins_takedown(db_pool: asyncpg.Pool) -> None:
    await released(db_pool, "1.0.0")
    await record_channel_transition(db_pool, takedown((await view(db_pool)).revision),
                                    all_present)
    await to_released(db_pool, Release("1.1.0", start=LATER))
    channel = await view(db_pool)
    assert (channel.state, channel.stable_version) == (ChannelState.ONLINE, "1.1.0")
    assert (await resolve_version_detail(db_pool, "prog", "gopay", "u")).version == "1.1.0"


async def test_a_gone_bundle_is_reported(db_pool: asyncpg.Pool) -> None:
    await released(db_pool, "1.0.0")
    found = await load_channel_view(db_pool, KEY, none_present)
    assert found is not None and not found.released[0].bundle_present


async def test_the_stable_version_can_never_be_rolled_back_in_place(
    db_pool: asyncpg.Pool,
) -> None:
    """The catalog's own rule: the stable release is RELEASED, so marking it ROLLED_BACK
    without moving the channel fails."""
    (v1,) = await released(db_pool, "1.0.0")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db_pool.execute("UPDATE releases SET stage = 'ROLLED_BACK' WHERE release_id = $1",
                              v1.release_id)
