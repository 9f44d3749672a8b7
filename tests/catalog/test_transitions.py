import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from mpr.catalog import InvalidTransition
from mpr.catalog.releases import get_release, record_transition
from mpr.domain.release.models import (
    CellCheck,
    CellResult,
    CompatibilityReport,
    Environment,
    MatrixCell,
    Reviewer,
    ReviewOutcome,
    Rollout,
)
from mpr.domain.release.records import ReviewRound, TransitionResult
from mpr.domain.release.stages import Stage
from tests.catalog.factories import BOTH, Release, cleared, package, to_released, to_review
from tests.catalog.readers import (
    get_channel,
    get_compatibility_report,
    list_events,
    list_review_requests,
)


async def count(pool: asyncpg.Pool, table: str) -> int:
    result: int = await pool.fetchval(f"SELECT count(*) FROM {table}")
    return result


# --- exactly once ----------------------------------------------------------------------------


async def test_a_retried_event_is_recorded_once(db_pool: asyncpg.Pool) -> None:
    release = Release()
    built = package()
    steps = [
        release.to(Stage.COMPATIBILITY_TESTING, package=built, package_sha256=built.sha256),
        release.to(Stage.UNDER_REVIEW, open_reviews=ReviewRound(round=1, organisations=BOTH)),
        release.to(
            Stage.UNDER_REVIEW,
            review=ReviewOutcome(
                round=1, reviewer=Reviewer.PLATFORM, approved=True, actor="rev", comment="ok"
            ),
        ),
    ]
    for step in steps:
        first = await record_transition(db_pool, step)
        assert await record_transition(db_pool, step) == first == TransitionResult(applied=True)

    assert await count(db_pool, "release_events") == 3
    assert await count(db_pool, "packages") == 1
    reviews = await list_review_requests(db_pool, release.release_id)
    assert [(r.organisation, r.status, r.actor) for r in reviews] == [
        (Reviewer.PARTNER_APP, "pending", None),
        (Reviewer.PLATFORM, "approved", "rev"),
    ]


async def test_concurrent_deliveries_of_one_event_write_it_once(db_pool: asyncpg.Pool) -> None:
    release = Release()
    await release.move(db_pool, Stage.BUILDING)
    step = release.to(Stage.UNDER_REVIEW, open_reviews=ReviewRound(round=1, organisations=BOTH))

    results = await asyncio.gather(*(record_transition(db_pool, step) for _ in range(5)))

    assert results == [TransitionResult(applied=True)] * 5
    assert await count(db_pool, "release_events") == 2
    assert await count(db_pool, "review_requests") == 2


async def test_a_package_built_twice_is_stored_once(db_pool: asyncpg.Pool) -> None:
    first, second = Release("1.0.0"), Release("1.0.1")
    built = package("same bytes")
    for release in (first, second):
        await release.move(
            db_pool, Stage.COMPATIBILITY_TESTING, package=built, package_sha256=built.sha256
        )

    assert await count(db_pool, "packages") == 1
    stored = await get_release(db_pool, second.release_id)
    assert stored is not None and stored.package_sha256 == built.sha256


async def test_a_refused_command_writes_only_its_event(db_pool: asyncpg.Pool) -> None:
    release = Release()
    await release.move(db_pool, Stage.BUILDING)

    result = await record_transition(db_pool, release.refused())

    assert result == TransitionResult(applied=True)
    events = await list_events(db_pool, release.release_id)
    assert [(e.command, e.accepted, e.reason) for e in events] == [
        ("move", True, None),
        ("approve_review", False, "not allowed"),
    ]
    assert events[1].payload == {"note": "test"}


async def test_a_transition_without_a_release_row_may_change_nothing(
    db_pool: asyncpg.Pool,
) -> None:
    transition = Release().refused().model_copy(update={"rollout": cleared()})

    with pytest.raises(InvalidTransition, match="rollout"):
        await record_transition(db_pool, transition)
    assert await count(db_pool, "release_events") == 0


async def test_compatibility_reports_round_trip(db_pool: asyncpg.Pool) -> None:
    release = Release()
    built = package()
    cell = MatrixCell(os="ios", network="2g", device_tier="low")
    report = CompatibilityReport(
        report_id="report-1",
        package_sha256=built.sha256,
        results=[
            CellResult(
                cell=cell,
                verdict="fail",
                checks=[CellCheck(name="download", verdict="fail", detail="too slow")],
            )
        ],
        created_at=datetime(2025, 1, 2, tzinfo=UTC),
    )
    await release.move(
        db_pool, Stage.COMPATIBILITY_TESTING, package=built, package_sha256=built.sha256
    )
    await release.move(db_pool, Stage.READY_TO_APPLY, compatibility_report=report)
    await release.move(db_pool, Stage.READY_TO_APPLY, compatibility_report=report)

    assert await get_compatibility_report(db_pool, "report-1") == report
    assert await db_pool.fetchval("SELECT failed FROM compatibility_reports") == 1


# --- the channel hold ------------------------------------------------------------------------


async def test_a_second_release_may_not_enter_review_on_a_held_channel(
    db_pool: asyncpg.Pool,
) -> None:
    first, second = Release("1.0.0"), Release("1.1.0")
    assert (await to_review(db_pool, first)).applied

    await second.move(db_pool, Stage.READY_TO_APPLY)
    blocked = second.to(Stage.UNDER_REVIEW, open_reviews=ReviewRound(round=1, organisations=BOTH))
    result = await second.record(db_pool, blocked)

    assert (result.applied, result.blocked_by) == (False, first.release_id)
    assert result.reason is not None and first.release_id in result.reason
    assert await record_transition(db_pool, blocked) == result, "a retry answers the same"
    stored = await get_release(db_pool, second.release_id)
    assert stored is not None and stored.stage == Stage.READY_TO_APPLY
    assert await list_review_requests(db_pool, second.release_id) == []
    event = (await list_events(db_pool, second.release_id))[-1]
    assert (event.accepted, event.stage_before, event.stage_after, event.blocked_by) == (
        False,
        Stage.READY_TO_APPLY,
        Stage.READY_TO_APPLY,
        first.release_id,
    )
    assert event.reason == (
        f"release {first.release_id} is already between UNDER_REVIEW and GRAYSCALE on "
        "prog/gopay/production; finish or cancel it first"
    )


@pytest.mark.parametrize("leave", [Stage.CANCELED, Stage.REJECTED, Stage.RELEASED])
async def test_the_channel_is_free_again_once_the_holder_leaves_the_hold(
    db_pool: asyncpg.Pool, leave: Stage
) -> None:
    first, second = Release("1.0.0"), Release("1.1.0")
    assert (await to_review(db_pool, first)).applied
    assert not (await to_review(db_pool, second)).applied

    await first.move(db_pool, leave, promote=leave is Stage.RELEASED)

    result = await second.move(
        db_pool, Stage.UNDER_REVIEW, open_reviews=ReviewRound(round=1, organisations=BOTH)
    )
    assert result == TransitionResult(applied=True)


async def test_other_channels_are_not_held(db_pool: asyncpg.Pool) -> None:
    assert (await to_review(db_pool, Release("1.0.0"))).applied

    for other in (
        Release("1.0.0", environment=Environment.DEVELOPMENT),
        Release("1.0.0", app="gcash"),
        Release("1.0.0", program="other"),
    ):
        assert (await to_review(db_pool, other)).applied


async def test_concurrent_releases_cannot_both_take_the_channel(db_pool: asyncpg.Pool) -> None:
    releases = [Release(f"1.{minor}.0") for minor in range(4)]
    for release in releases:
        await release.move(db_pool, Stage.READY_TO_APPLY)

    results = await asyncio.gather(
        *(release.move(db_pool, Stage.UNDER_REVIEW) for release in releases)
    )

    winners = [r for r in results if r.applied]
    assert len(winners) == 1
    holder = next(rel.release_id for rel, r in zip(releases, results, strict=True) if r.applied)
    assert {r.blocked_by for r in results if not r.applied} == {holder}


# --- rollout and promotion -------------------------------------------------------------------


async def test_promoting_archives_the_previous_stable_release(db_pool: asyncpg.Pool) -> None:
    v1, v2 = Release("1.0.0"), Release("2.0.0")
    await to_released(db_pool, v1)
    await to_released(db_pool, v2)

    old, new = await get_release(db_pool, v1.release_id), await get_release(db_pool, v2.release_id)
    assert old is not None and old.stage == "ARCHIVED" and old.archived_at is not None
    assert new is not None and new.stage == Stage.RELEASED and new.archived_at is None
    channel = await get_channel(db_pool, v2.row.channel)
    assert channel is not None
    assert (channel.stable_version, channel.stable_release_id) == ("2.0.0", v2.release_id)
    assert (channel.candidate_version, channel.percent, channel.whitelist) == (None, 0, [])


async def test_promoting_twice_changes_nothing(db_pool: asyncpg.Pool) -> None:
    v1, v2 = Release("1.0.0"), Release("2.0.0")
    await to_released(db_pool, v1)
    await to_released(db_pool, v2)
    before = await get_channel(db_pool, v2.row.channel)

    again = v2.to(Stage.RELEASED, percent=100, rollout=cleared(), promote=True)
    await v2.record(db_pool, again)
    await v2.record(db_pool, again)

    assert await get_channel(db_pool, v2.row.channel) == before
    old = await get_release(db_pool, v1.release_id)
    assert old is not None and old.stage == "ARCHIVED"


async def test_an_archived_release_stays_archived(db_pool: asyncpg.Pool) -> None:
    v1, v2 = Release("1.0.0"), Release("2.0.0")
    await to_released(db_pool, v1)
    await to_released(db_pool, v2)

    await v1.move(db_pool, Stage.RELEASED)

    old = await get_release(db_pool, v1.release_id)
    assert old is not None and old.stage == "ARCHIVED"


async def test_a_version_is_never_both_stable_and_archived(db_pool: asyncpg.Pool) -> None:
    v1, v2 = Release("1.0.0"), Release("2.0.0")
    await to_released(db_pool, v1)
    await to_released(db_pool, v2)
    assert not await db_pool.fetchval(
        "SELECT count(*) FROM channels JOIN releases ON release_id = stable_release_id "
        "WHERE stage = 'ARCHIVED'"
    )

    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db_pool.execute(
            "UPDATE releases SET stage = 'ARCHIVED', archived_at = now() WHERE release_id = $1",
            v2.release_id,
        )


async def test_a_release_row_must_be_named_after_its_channel_and_version(
    db_pool: asyncpg.Pool,
) -> None:
    release = Release()
    transition = release.to(Stage.BUILDING)
    assert transition.release is not None
    renamed = transition.model_copy(
        update={"release": transition.release.model_copy(update={"version": "9.9.9"})}
    )

    with pytest.raises(InvalidTransition, match="should be named"):
        await record_transition(db_pool, renamed)


async def test_only_a_released_release_can_be_promoted(db_pool: asyncpg.Pool) -> None:
    release = Release()
    with pytest.raises(InvalidTransition, match="promoted while GRAYSCALE"):
        await release.move(db_pool, Stage.GRAYSCALE, promote=True)


async def test_the_revision_moves_only_when_the_channel_changes(db_pool: asyncpg.Pool) -> None:
    release = Release()
    candidate = Rollout(
        candidate_version="1.0.0",
        candidate_release_id=release.release_id,
        percent=0,
        whitelist=["alice"],
    )
    await release.move(db_pool, Stage.WHITELIST_TESTING, rollout=candidate)
    await release.move(db_pool, Stage.WHITELIST_TESTING, rollout=candidate)
    channel = await get_channel(db_pool, release.row.channel)
    assert channel is not None and channel.revision == 1

    wider = candidate.model_copy(update={"percent": 5})
    await release.move(db_pool, Stage.GRAYSCALE, percent=5, rollout=wider)
    channel = await get_channel(db_pool, release.row.channel)
    assert channel is not None and (channel.revision, channel.percent) == (2, 5)


async def test_canceling_a_release_keeps_another_release_s_candidate(
    db_pool: asyncpg.Pool,
) -> None:
    serving, other = Release("1.0.0"), Release("1.1.0")
    rollout = Rollout(
        candidate_version="1.0.0", candidate_release_id=serving.release_id, percent=20, whitelist=[]
    )
    await serving.move(db_pool, Stage.GRAYSCALE, percent=20, rollout=rollout)

    await other.move(db_pool, Stage.CANCELED, rollout=cleared())
    channel = await get_channel(db_pool, serving.row.channel)
    assert channel is not None and channel.candidate_release_id == serving.release_id

    await serving.move(db_pool, Stage.CANCELED, rollout=cleared())
    channel = await get_channel(db_pool, serving.row.channel)
    assert channel is not None and (channel.candidate_release_id, channel.percent) == (None, 0)
