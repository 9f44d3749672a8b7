"""The channel workflow on the time-skipping server, with the real catalog activities against
PostgreSQL (builds and compatibility cells are the fakes of release_fakes.py)."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.channel.catalog import ChannelCatalogActivities, bundles_present
from activities.channel.notice import ChannelNotices
from activities.identity import Authenticator
from activities.release.catalog import CatalogActivities
from mpr.catalog.admin import Membership, add_member
from mpr.catalog.channels import load_channel_view
from mpr.catalog.rollout import resolve_version_detail
from mpr.domain.channel.models import ChannelKey, channel_id
from mpr.domain.channel.state import ChannelWorkflowState
from mpr.domain.core.ledger import Carried, Ledger
from mpr.domain.core.models import Role
from mpr.domain.release.release_id import release_id
from tests.catalog.factories import Release, to_released
from tests.workflows.driving import command, start_input, until_answering, wait_for_stage
from tests.workflows.handover import Handover
from tests.workflows.release_fakes import FakeCatalog
from tests.workflows.short_channel import SHORT_HISTORY, ShortChannel
from workflows.channel import MiniProgramChannel
from workflows.release import MiniProgramRelease

APP, WORKSPACE = "gopay", "ws"


def members(program: str) -> list[Membership]:
    return [
        Membership(workspace_id=WORKSPACE, user_id="admin", role=Role.ADMIN),
        Membership(workspace_id=WORKSPACE, user_id="pa", role=Role.PROGRAM_ADMIN,
                   mini_program_id=program),
        Membership(workspace_id=WORKSPACE, user_id="dev", role=Role.DEVELOPER),
        Membership(workspace_id=WORKSPACE, user_id="platform-rev",
                   role=Role.PLATFORM_REVIEWER),
        Membership(workspace_id=WORKSPACE, user_id="partner-rev", role=Role.PARTNER_REVIEWER,
                   target_app=APP),
    ]


@dataclass
class Channels:
    """One test's mini program (workflow ids outlive a test on the shared server)."""

    client: Client
    task_queue: str
    pool: asyncpg.Pool
    program: str

    @property
    def channel_id(self) -> str:
        return channel_id(self.program, APP, "production")

    def start_input(self) -> dict[str, Any]:
        return {"mini_program_id": self.program, "target_app": APP}

    async def start(self) -> WorkflowHandle[Any, Any]:
        handle = await self.client.start_workflow(
            "MiniProgramChannel", self.start_input(), id=self.channel_id,
            task_queue=self.task_queue)
        await until_answering(handle)
        return handle

    async def start_release(self, version: str) -> WorkflowHandle[Any, Any]:
        handle = await self.client.start_workflow(
            "MiniProgramRelease",
            start_input(mini_program_id=self.program, target_app=APP, workspace_id=WORKSPACE,
                        version=version),
            id=release_id(self.program, version, APP, "production"), task_queue=self.task_queue)
        await wait_for_stage(handle, "READY_TO_APPLY")
        await command(handle, "apply_release", actor="dev")
        await command(handle, "approve_review", actor="partner-rev", reviewer="partner_app")
        return handle

    async def served(self) -> str | None:
        return (await resolve_version_detail(self.pool, self.program, APP, "user-1")).version

    async def released_in_catalog(self, tmp_path: Path, *versions: str) -> None:
        """Versions released in turn, with their bundles in an artifact store."""
        for day, version in enumerate(versions):
            await to_released(self.pool, Release(
                version, program=self.program, app=APP, workspace=WORKSPACE,
                start=datetime(2025, 1, 1 + day, tzinfo=UTC)))
        for row in await self.pool.fetch("SELECT sha256 FROM packages"):
            bundle = tmp_path / f"{row['sha256']}.zip"
            bundle.write_bytes(b"bundle")
            await self.pool.execute("UPDATE packages SET artifact_path = $2 WHERE sha256 = $1",
                                    row["sha256"], str(bundle))


@asynccontextmanager
async def channel_worker(
    env: WorkflowEnvironment, db_pool: asyncpg.Pool, channel_type: type = MiniProgramChannel
) -> AsyncIterator[Channels]:
    """A worker of channels (of `channel_type`) and releases, with a mini program of its own."""
    program = f"prog-{uuid.uuid4().hex[:8]}"
    for member in members(program):
        await add_member(db_pool, member)
    identity = Authenticator(None)  # MPR_AUTH=off: the payload's actor is the sender
    catalog = CatalogActivities(db_pool, identity)
    channel = ChannelCatalogActivities(db_pool, identity)
    fakes = FakeCatalog()
    queue = f"channel-test-{uuid.uuid4()}"
    async with Worker(
        env.client, task_queue=queue,
        workflows=[channel_type, MiniProgramRelease, Handover],
        activities=[
            fakes.build_package, fakes.test_compatibility_cell,
            catalog.load_release_context, catalog.authenticate_release_actor,
            catalog.load_actor_roles, catalog.record_transition, catalog.channel_takedown,
            ChannelNotices(env.client).notify_channel,
            channel.load_channel, channel.authenticate_channel_actor,
            channel.record_channel_transition,
        ],
    ):
        yield Channels(env.client, queue, db_pool, program)


@pytest.fixture
async def channels(env: WorkflowEnvironment, db_pool: asyncpg.Pool) -> AsyncIterator[Channels]:
    async with channel_worker(env, db_pool) as found:
        yield found


async def audited(handle: WorkflowHandle[Any, Any], count: int) -> dict[str, Any]:
    """The status once `count` commands were recorded (signals are taken in after they
    return)."""
    deadline = time.monotonic() + 60
    while (status := await handle.query("status"))["audit_count"] < count:
        assert time.monotonic() < deadline, f"{status['audit_count']} of {count} recorded"
        await asyncio.sleep(0.05)
    return status


async def refused(handle: WorkflowHandle[Any, Any], name: str, **payload: Any) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await handle.execute_update(name, payload)
    return str(failed.value.cause)


async def test_rollback_takedown_and_back_online(channels: Channels, tmp_path: Path) -> None:
    await channels.released_in_catalog(tmp_path, "1.0.0", "1.1.0")
    handle = await channels.start()
    assert (await handle.query("status"))["state"] == "ONLINE"

    status = await command(handle, "rollback", actor="admin", reason="checkout crashes")
    assert (status["state"], status["stable_version"]) == ("ONLINE", "1.0.0")
    assert status["last_rollback"]["from_version"] == "1.1.0"
    assert await channels.served() == "1.0.0"
    versions = (await handle.query("versions"))["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [
        ("1.1.0", "ROLLED_BACK"), ("1.0.0", "RELEASED")]

    status = await command(handle, "take_offline", actor="platform-rev", reason="fraud")
    assert status["state"] == "OFFLINE"
    assert status["offline"]["kind"] == "platform"
    assert await channels.served() is None

    reason = await refused(handle, "bring_online", actor="admin")
    assert "platform takedown" in reason and "platform_reviewer" in reason
    status = await command(handle, "bring_online", actor="platform-rev", reason="cleared")
    assert (status["state"], status["stable_version"]) == ("ONLINE", "1.0.0")
    assert await channels.served() == "1.0.0"

    events = await channels.pool.fetch(
        "SELECT command, accepted, actor_kind FROM channel_events ORDER BY seq")
    assert [(e["command"], e["accepted"], e["actor_kind"]) for e in events] == [
        ("rollback", True, None), ("take_offline", True, "platform"),
        ("bring_online", False, None), ("bring_online", True, "platform")]


async def test_a_refused_command_changes_nothing_and_is_recorded(
    channels: Channels, tmp_path: Path
) -> None:
    await channels.released_in_catalog(tmp_path, "1.0.0")
    handle = await channels.start()

    reason = await refused(handle, "rollback", actor="dev", reason="oops")
    assert "dev is not authorised to rollback" in reason
    reason = await refused(handle, "rollback", actor="admin", reason="oops")
    assert "first version" in reason
    await handle.signal("take_offline", {"actor": "admin", "reason": 42})  # never dropped
    await handle.signal("take_offlin", {"actor": "admin", "reason": "typo"})

    status = await audited(handle, 4)
    assert (status["state"], status["stable_version"]) == ("ONLINE", "1.0.0")
    assert status["last_rejection"]["command"] == "take_offlin"
    assert status["audit_count"] == 4
    assert await channels.served() == "1.0.0"
    assert await channels.pool.fetchval(
        "SELECT count(*) FROM channel_events WHERE NOT accepted") == 4


async def test_a_release_reaching_released_opens_its_channel(channels: Channels) -> None:
    release = await channels.start_release("1.0.0")
    await command(release, "full_release", actor="admin")

    channel = channels.client.get_workflow_handle(channels.channel_id)
    await until_answering(channel)
    status = await channel.query("status")
    assert (status["state"], status["stable_version"]) == ("ONLINE", "1.0.0")


async def test_a_takedown_cancels_the_release_rolling_out(
    channels: Channels, tmp_path: Path
) -> None:
    await channels.released_in_catalog(tmp_path, "1.0.0")
    channel = await channels.start()
    release = await channels.start_release("1.1.0")
    await command(release, "set_grayscale", actor="admin", percent=10)

    reason = await refused(channel, "rollback", actor="admin", reason="bad")
    assert "is in GRAYSCALE on this channel: cancel its grayscale first" in reason
    await command(channel, "take_offline", actor="admin", reason="data leak")

    status = await wait_for_stage(release, "CANCELED")
    assert "taken offline by admin (admin takedown): data leak" in status["cancel_reason"]
    row = await channels.pool.fetchrow(
        "SELECT actor, reason, stage_after FROM release_events "
        "WHERE command = 'withdrawn_by_channel'")
    assert row["actor"] is None and row["stage_after"] == "CANCELED"
    assert "data leak" in row["reason"]
    channel_row = await channels.pool.fetchrow(
        "SELECT candidate_release_id, offline_kind FROM channels")
    assert (channel_row["candidate_release_id"], channel_row["offline_kind"]) == (None, "admin")


async def test_a_platform_takedown_keeps_a_release_from_going_live(
    channels: Channels, tmp_path: Path
) -> None:
    await channels.released_in_catalog(tmp_path, "1.0.0")
    channel = await channels.start()
    await command(channel, "take_offline", actor="platform-rev", reason="audit")
    release = await channels.start_release("1.1.0")

    reason = await refused(release, "full_release", actor="admin")
    assert "platform takedown: audit" in reason
    assert (await release.query("status"))["stage"] == "RELEASE_PREPARATION"
    assert await channels.served() is None


async def test_a_run_that_continued_as_new_takes_commands(
    channels: Channels, tmp_path: Path
) -> None:
    await channels.released_in_catalog(tmp_path, "1.0.0", "1.1.0")
    first = await channels.start()
    await command(first, "take_offline", actor="admin", reason="night")
    status = await first.query("status")
    await first.terminate("handed over below")

    key = ChannelKey(mini_program_id=channels.program, target_app=APP)
    view = await load_channel_view(channels.pool, key, bundles_present)
    assert view is not None
    state = ChannelWorkflowState(key=key, view=view, view_as_of=datetime.now(UTC))
    handed = Carried(state=state, ledger=Ledger(count=status["audit_count"])).payload()
    handover = await channels.client.start_workflow(
        "Handover", args=["MiniProgramChannel", channels.start_input(), handed],
        id=channels.channel_id, task_queue=channels.task_queue)
    second = channels.client.get_workflow_handle(channels.channel_id)
    deadline = time.monotonic() + 30
    while (await second.describe()).run_id == handover.first_execution_run_id:
        assert time.monotonic() < deadline, "the handover continued as new"
        await asyncio.sleep(0.05)
    await until_answering(second)
    status = await command(second, "bring_online", actor="pa")
    assert (status["state"], status["audit_count"]) == ("ONLINE", 2)
    assert await channels.served() == "1.1.0"


async def test_commands_in_flight_while_the_channel_continues_as_new_are_all_taken(
    env: WorkflowEnvironment, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Batches of concurrent commands until a channel that continues as new after a short
    history does: every command is answered (accepted, or refused by the rules) and recorded
    once, in the next run's count and in the catalog."""
    async with channel_worker(env, db_pool, ShortChannel) as channels:
        await channels.released_in_catalog(tmp_path, "1.0.0")
        handle = await channels.start()
        first_run = (await handle.describe()).run_id
        sent = 0
        for _ in range(SHORT_HISTORY // 10):
            batch = [("take_offline", {"reason": "drill"}) if n % 2 == 0 else
                     ("bring_online", {}) for n in range(6)]
            answers = await asyncio.gather(*(
                handle.execute_update(name, {"actor": "admin", **payload})
                for name, payload in batch), return_exceptions=True)
            sent += len(batch)
            for answer in answers:
                assert isinstance(answer, dict) or (
                    isinstance(answer, WorkflowUpdateFailedError)
                    and "not allowed in state" in str(answer.cause)), answer
            if (await handle.describe()).run_id != first_run:
                break
        assert (await handle.describe()).run_id != first_run, "the channel continued as new"
        status = await audited(handle, sent)
        assert status["audit_count"] == sent
        assert await db_pool.fetchval(
            "SELECT count(*) FROM channel_events WHERE mini_program_id = $1",
            channels.program) == sent
        # The next run goes on taking commands.
        after = ("bring_online", {}) if status["state"] == "OFFLINE" else (
            "take_offline", {"reason": "after the handover"})
        assert (await command(handle, after[0], actor="admin", **after[1]))[
            "audit_count"] == sent + 1
