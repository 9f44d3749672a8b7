"""The release client library against the real stack: dev server, worker process, PostgreSQL."""

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from pydantic import ValidationError
from temporalio.client import Client

from mpr.domain.release.commands import ApplyRelease, CancelRelease, UpdateConfig
from mpr.domain.release.models import BasicInfoPatch, CompatibilityReport, ConfigPatch
from mpr.domain.release.stages import Stage
from mpr.domain.release.state import AuditLog, ReleaseStatus
from mpr.infra.servers import free_port
from mpr.infra.settings import Settings
from starters.errors import TemporalUnreachable
from starters.releases import (
    CommandRefused,
    ReleaseClient,
    ReleaseFailed,
    ReleaseFinished,
    ReleaseNotFound,
    ReleaseRef,
    StageChange,
    StageTimeout,
    visibility_query,
)
from tests.cli.conftest import new_program, start_input
from workflows.release import WORKFLOW_TYPE

READY = Stage.READY_TO_APPLY
WAIT = 60.0
T = TypeVar("T")


async def eventually(read: Callable[[], Awaitable[T]], check: Callable[[T], bool],
                     within: float = 10) -> T:
    """Visibility is eventually consistent: read until the check holds."""
    deadline = time.monotonic() + within
    while not check(value := await read()):
        assert time.monotonic() < deadline, value
        await asyncio.sleep(0.2)
    return value


async def ready_release(releases: ReleaseClient, target_app: str = "gopay") -> ReleaseRef:
    ref = await releases.start(start_input(new_program(), target_app=target_app))
    await releases.wait_for_stage(ref, READY, WAIT)
    return ref


async def finish(client: Client, releases: ReleaseClient, ref: ReleaseRef) -> None:
    """Cancel the release and wait until its workflow has closed."""
    await releases.command(ref, "cancel_release", CancelRelease(actor="owner"))
    await client.get_workflow_handle(ref.release_id).result()


def test_a_release_is_addressed_by_id_or_by_its_parts() -> None:
    ref = ReleaseRef(mini_program_id="coffee", version="1.2.0", target_app="gopay")
    assert ref.release_id == "release:coffee:1.2.0:gopay:production"
    assert ReleaseRef.parse(ref.release_id) == ref
    assert ReleaseRef.parse("release:coffee:1.2.0:gopay:sandbox").environment == "sandbox"
    with pytest.raises(ValueError, match="not a release id"):
        ReleaseRef.parse("coffee")
    with pytest.raises(ValidationError):
        ReleaseRef(mini_program_id="it's", version="1.2.0", target_app="gopay")


def test_visibility_queries_refuse_what_they_cannot_quote() -> None:
    assert visibility_query(stage="GRAYSCALE", target_app="gopay") == (
        "WorkflowType = 'MiniProgramRelease' AND ExecutionStatus != 'ContinuedAsNew' "
        "AND ReleaseStage = 'GRAYSCALE' AND TargetApp = 'gopay'"
    )
    for bad in ({"mini_program_id": "x' OR TargetApp != '"}, {"target_app": 'a"b'},
                {"version": "1.0.0' OR '1"}, {"stage": "NOPE"}, {"environment": "moon"}):
        with pytest.raises(ValueError):
            visibility_query(**bad)


async def test_starting_the_same_version_twice_is_one_release(
    releases: ReleaseClient, client: Client
) -> None:
    request = start_input(new_program())
    first = await releases.start(request)
    again = await releases.start(request)
    assert first == again == ReleaseRef.of(request)
    handle = client.get_workflow_handle(first.release_id)
    assert (await handle.describe()).run_id == (await handle.describe()).run_id
    status = await releases.status(first)
    assert isinstance(status, ReleaseStatus) and status.requested_by == "dev"

    await releases.wait_for_stage(first, READY, WAIT)
    await finish(client, releases, first)
    with pytest.raises(ReleaseFinished) as finished:
        await releases.start(request)
    assert finished.value.stage is Stage.CANCELED


async def test_commands_are_accepted_or_refused_with_typed_errors(
    releases: ReleaseClient, client: Client
) -> None:
    ref = await ready_release(releases)
    with pytest.raises(CommandRefused) as refused:
        await releases.command(ref, "set_grayscale", {"actor": "admin", "percent": 5})
    assert refused.value.command == "set_grayscale"
    assert refused.value.stage is READY
    assert refused.value.reason.startswith("set_grayscale is not allowed in stage READY_TO_APPLY")
    with pytest.raises(CommandRefused, match="invalid set_grayscale payload"):
        await releases.command(ref, "set_grayscale", {"actor": "admin", "percent": "fifty"})
    with pytest.raises(CommandRefused, match="gopay-rev is not authorised to apply_release"):
        await releases.command(ref, "apply_release", ApplyRelease(actor="gopay-rev"))

    applied = await releases.command(ref, "apply_release", ApplyRelease(actor="dev"))
    assert applied.stage is Stage.UNDER_REVIEW
    # Only basic information may change in review: a model sends only the fields it was given.
    patch = ConfigPatch(basic_info=BasicInfoPatch(description="edited in review"))
    edited = await releases.command(ref, "update_config", UpdateConfig(actor="dev", config=patch))
    assert edited.config.basic_info is not None
    assert edited.config.basic_info.description == "edited in review"

    log = await releases.audit_log(ref)
    assert isinstance(log, AuditLog)
    assert [e.command for e in log.entries if not e.accepted] == [
        "set_grayscale", "set_grayscale", "apply_release"]
    report = await releases.compatibility_report(ref)
    assert isinstance(report, CompatibilityReport) and len(report.results) == 1

    with pytest.raises(TypeError):
        await releases.command(ref, "full_release", ApplyRelease(actor="dev"))
    with pytest.raises(ValueError, match="unknown command 'deploy'"):
        await releases.command(ref, "deploy", {"actor": "dev"})

    await finish(client, releases, ref)
    with pytest.raises(ReleaseFinished) as finished:
        await releases.command(ref, "apply_release", {"actor": "dev"})
    assert (finished.value.release_id, finished.value.stage) == (ref.release_id, Stage.CANCELED)
    with pytest.raises(ReleaseFinished):
        await releases.signal(ref, "apply_release", {"actor": "dev"})


async def test_signals_are_fire_and_forget(releases: ReleaseClient, client: Client) -> None:
    ref = await ready_release(releases)
    await releases.signal(ref.release_id, "set_grayscale", {"actor": "admin", "percent": 5})
    await releases.signal(ref.release_id, "apply_release", ApplyRelease(actor="dev"))
    status = await releases.wait_for_stage(ref, Stage.UNDER_REVIEW, WAIT)
    assert status.last_rejection is not None
    assert status.last_rejection.command == "set_grayscale"
    await finish(client, releases, ref)


async def test_an_unknown_release_is_not_found(releases: ReleaseClient) -> None:
    ghost = ReleaseRef(mini_program_id=new_program(), version="1.0.0", target_app="gopay")
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: releases.status(ghost),
        lambda: releases.audit_log(ghost.release_id),
        lambda: releases.command(ghost, "apply_release", {"actor": "dev"}),
        lambda: releases.signal(ghost, "apply_release", {"actor": "dev"}),
        lambda: releases.wait_for_stage(ghost, READY, 5),
    ]
    for call in calls:
        with pytest.raises(ReleaseNotFound) as missing:
            await call()
        assert missing.value.release_id == ghost.release_id
        assert ghost.release_id in str(missing.value)


async def test_waiting_for_a_stage_times_out_or_ends_with_the_release(
    releases: ReleaseClient
) -> None:
    ref = await ready_release(releases)
    wanted = {Stage.GRAYSCALE, Stage.RELEASED}
    with pytest.raises(StageTimeout) as timeout:
        await releases.wait_for_stage(ref, wanted, timedelta(seconds=0.5))
    assert timeout.value.wanted == wanted
    assert timeout.value.current is READY

    waiting = asyncio.create_task(releases.wait_for_stage(ref, Stage.RELEASED, WAIT))
    await releases.command(ref, "cancel_release", {"actor": "owner", "reason": "not today"})
    with pytest.raises(ReleaseFinished) as finished:
        await waiting
    assert finished.value.stage is Stage.CANCELED


async def test_changes_see_every_move_and_follow_continue_as_new(
    releases: ReleaseClient, client: Client
) -> None:
    ref = await releases.start(start_input(new_program()))
    seen: list[StageChange] = []

    async def follow() -> None:
        async for change in releases.changes(ref):
            seen.append(change)

    following = asyncio.create_task(follow())
    await releases.wait_for_stage(ref, READY, WAIT)
    handle = client.get_workflow_handle(ref.release_id)
    first_run = (await handle.describe()).run_id
    # Batches of commands until the dev server (suggesting continue-as-new at 400 events) has
    # the release continue as new.
    sent = 0
    while sent < 300 and (await handle.describe()).run_id == first_run:
        for n in range(sent, sent + 30):
            await releases.signal(ref, "update_config", {"actor": "dev", "config": {
                "basic_info": {"description": f"edit {n}"}}})
        sent += 30
    await eventually(handle.describe, lambda d: d.run_id != first_run, within=WAIT)
    await releases.command(ref, "apply_release", {"actor": "dev"})
    await releases.command(ref, "cancel_release", {"actor": "owner"})
    await asyncio.wait_for(following, WAIT)

    stages = [change.stage for change in seen]
    # A one-cell compatibility test takes milliseconds; the history still shows it.
    expected = [Stage.BUILDING, Stage.COMPATIBILITY_TESTING, READY, Stage.UNDER_REVIEW,
                Stage.CANCELED]
    assert stages == expected[expected.index(stages[0]):]
    assert Stage.COMPATIBILITY_TESTING in stages
    assert all(a.at <= b.at for a, b in itertools.pairwise(seen))


async def test_listing_filters_on_the_search_attributes(
    releases: ReleaseClient, client: Client
) -> None:
    program = new_program()
    gopay = await releases.start(start_input(program))
    alipay = await releases.start(start_input(program, target_app="alipaycn"))
    await releases.wait_for_stage(gopay, READY, WAIT)
    await releases.wait_for_stage(alipay, READY, WAIT)
    await finish(client, releases, alipay)

    async def ids(**filters: Any) -> set[str]:
        return {s.release_id for s in await releases.list(mini_program_id=program, **filters)}

    both = {gopay.release_id, alipay.release_id}
    await eventually(ids, lambda found: found == both)
    assert await ids(target_app="gopay") == {gopay.release_id}
    canceled = await eventually(lambda: releases.list(mini_program_id=program, stage="CANCELED"),
                                lambda found: len(found) == 1)
    assert canceled[0].release_id == alipay.release_id
    assert (canceled[0].status, canceled[0].target_app) == ("Completed", "alipaycn")
    assert canceled[0].close_time is not None
    ready = await releases.list(mini_program_id=program, stage=READY, environment="production",
                                version="1.0.0")
    assert [(s.release_id, s.status, s.percent) for s in ready] == [
        (gopay.release_id, "Running", 0)]
    assert await ids(environment="sandbox") == set()
    assert len(await releases.list(mini_program_id=program, limit=1)) == 1
    await finish(client, releases, gopay)


async def test_a_release_whose_start_failed_says_why(
    releases: ReleaseClient, client: Client
) -> None:
    request = start_input(new_program(), target_app="nowhere")
    ref = ReleaseRef.of(request)
    # Started raw: start() would first wait for a status that never comes.
    await client.start_workflow(WORKFLOW_TYPE, request, id=ref.release_id,
                                task_queue=releases.task_queue)
    with pytest.raises(ReleaseFailed, match="nowhere"):
        await releases.status(ref)


async def test_an_unreachable_server_is_named() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(TemporalUnreachable) as unreachable:
        await ReleaseClient.connect(Settings.from_env({"TEMPORAL_ADDRESS": address}))
    assert unreachable.value.address == address
    assert address in str(unreachable.value)
