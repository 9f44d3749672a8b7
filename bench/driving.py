"""Driving releases and their baselines, call for call alike, each command as the user who may
send it.

A release goes through the client library services use (starters.releases.ReleaseClient, one
per user, whose token provider gives that user's token); its baseline through the same Temporal
calls made directly, with the same payloads (the sender's identity token in `identity_token`,
no `actor` field): start with the release's search attributes, wait until it answers `status`
(the very function ReleaseClient.start uses), one describe, follow the history to
READY_TO_APPLY and query `status` (as wait_for_stage does), then the same updates, then wait
for the result.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from bench.stack import MEMBERS, STARTER, WORKSPACE, BenchStack
from bench.workflows import BASELINE_WORKFLOW, COMMAND_FLOOR_WORKFLOW, LIFECYCLE_FLOOR_WORKFLOW
from mpr.domain.core.identity import TOKEN_FIELD
from mpr.domain.release.commands import UpdateConfig
from mpr.domain.release.models import Environment, StartInput
from mpr.domain.release.release_id import release_id
from mpr.domain.release.stages import Stage
from mpr.domain.release.state import ReleaseStatus
from starters.releases import ReleaseClient, StageChange, stage_change, until_answering
from workflows import search_attributes as sa

TARGET_APP = "alipaycn"
"""Platform and partner review, grayscale allowed: every step of the path is taken."""
VERSION = "1.1.0"
PREVIOUS_VERSION = "1.0.0"
ONE_CELL = {"operating_systems": ["ios"], "networks": ["wifi"], "device_tiers": ["high"]}
DEADLINE_SECONDS = 300.0


@dataclass(frozen=True)
class Sent:
    """A command as its sender sends it: who (the subject of the token it goes with), the
    command, and the payload without identity (the token is added on sending)."""

    user: str
    name: str
    payload: dict[str, Any]


# The users hold these roles in the bench's catalog (bench.stack.MEMBERS).
APPLY = Sent(STARTER, "apply_release", {})  # a developer of the workspace
APPROVE_PLATFORM = Sent("platform-rev", "approve_review", {"reviewer": "platform"})
APPROVE_PARTNER = Sent("alipay-rev", "approve_review", {"reviewer": "partner_app"})  # alipaycn's
LIFECYCLE_COMMANDS: list[Sent] = [
    APPLY,
    APPROVE_PLATFORM,
    APPROVE_PARTNER,
    Sent("admin", "set_grayscale", {"percent": 1}),  # an admin of the workspace: going live
    Sent("admin", "set_grayscale", {"percent": 5}),
    Sent("admin", "set_grayscale", {"percent": 50}),
    Sent("admin", "full_release", {}),
]
"""Apply, both required approvals, three grayscale steps, the full release."""
USERS = sorted({STARTER, *(sent.user for sent in LIFECYCLE_COMMANDS)})
DESCRIPTION_CHARS = 40
"""Every command round trip's description has this length: one payload size for every one."""


def config_change(n: int) -> UpdateConfig:
    """The command round trip's command, as `mpr release config --description` sends it: a new
    description of the basic information, which a developer may change in UNDER_REVIEW. It
    runs the whole path (verify the token and load roles, decide, write the catalog) and
    leaves the release where it was, so every parked release can take it."""
    description = f"round trip {n:08d}".ljust(DESCRIPTION_CHARS, ".")
    return UpdateConfig.model_validate({"config": {"basic_info": {"description": description}}})


@dataclass(frozen=True)
class Drivers:
    """What the drivers send with, on one worker's task queue: per user, the client library
    with that user's token, and the token itself for the baselines' payloads."""

    client: Client
    task_queue: str
    releases: dict[str, ReleaseClient]
    tokens: dict[str, str]

    @classmethod
    async def on(cls, stack: BenchStack, task_queue: str) -> "Drivers":
        members = {member.user_id for member in MEMBERS}
        unknown = [user for user in USERS if user not in members]
        if unknown:
            raise RuntimeError(f"no roles in the bench's catalog for {', '.join(unknown)}")
        return cls(
            client=await stack.client(), task_queue=task_queue,
            releases={user: await stack.releases(task_queue, user) for user in USERS},
            tokens={user: stack.token(user) for user in USERS},
        )

    def signed(self, sent: Sent) -> dict[str, Any]:
        """The payload the client library would send for `sent`: with its user's token."""
        return {**sent.payload, TOKEN_FIELD: self.tokens[sent.user]}


def release_request(program: str, source: Path) -> StartInput:
    return StartInput.model_validate({
        "mini_program_id": program, "version": VERSION, "target_app": TARGET_APP,
        "workspace_id": WORKSPACE, "source": str(source),
        "config": {"basic_info": {"name": "Bench Shop"}, "compatibility": ONE_CELL},
    })


def baseline_spec(program: str, identity_token: str) -> dict[str, Any]:
    """The baseline's start input: like a release's, it carries the starter's token."""
    return {"mini_program_id": program, "version": VERSION, "target_app": TARGET_APP,
            "environment": "production", "cells": 1, TOKEN_FIELD: identity_token}


def baseline_id(program: str, workflow: str = BASELINE_WORKFLOW) -> str:
    kind = "floor" if workflow == LIFECYCLE_FLOOR_WORKFLOW else "baseline"
    return f"bench-{kind}:{program}"


def command_floor_id(program: str) -> str:
    """A command floor's workflow id has a release's shape, so that the client library's own
    call (ReleaseClient.command) sends it the very update it sends a release."""
    return release_id(program, VERSION, TARGET_APP, Environment.PRODUCTION)


# --- releases --------------------------------------------------------------------------------


async def release_to_ready(drivers: Drivers, request: StartInput) -> str:
    releases = drivers.releases[STARTER]
    ref = await releases.start(request)
    await releases.wait_for_stage(ref, Stage.READY_TO_APPLY, timeout=DEADLINE_SECONDS)
    return ref.release_id


async def command_release(drivers: Drivers, release_id: str, sent: Sent) -> None:
    await drivers.releases[sent.user].command(release_id, sent.name, sent.payload)


async def send_config_change(drivers: Drivers, workflow_id: str, n: int) -> ReleaseStatus:
    """The command round trip: `config_change(n)` by the starter (a developer), through the
    client library as `mpr` sends it, to a release or a command floor alike."""
    return await drivers.releases[STARTER].command(workflow_id, "update_config",
                                                   config_change(n))


async def drive_release(drivers: Drivers, request: StartInput) -> None:
    release_id = await release_to_ready(drivers, request)
    for sent in LIFECYCLE_COMMANDS:
        await command_release(drivers, release_id, sent)
    await drivers.client.get_workflow_handle(release_id).result()


async def park_release(drivers: Drivers, request: StartInput) -> str:
    release_id = await release_to_ready(drivers, request)
    await command_release(drivers, release_id, APPLY)
    return release_id


# --- baselines -------------------------------------------------------------------------------


async def baseline_to_ready(drivers: Drivers, program: str,
                            workflow: str = BASELINE_WORKFLOW) -> WorkflowHandle[Any, Any]:
    """A baseline (or, with `workflow`, a lifecycle floor) started and followed to
    READY_TO_APPLY."""
    client = drivers.client
    spec = baseline_spec(program, drivers.tokens[STARTER])
    handle: WorkflowHandle[Any, Any] = await client.start_workflow(
        workflow, spec, id=baseline_id(program, workflow), task_queue=drivers.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(sa.MINI_PROGRAM_ID, program),
            SearchAttributePair(sa.MINI_PROGRAM_VERSION, VERSION),
            SearchAttributePair(sa.TARGET_APP, TARGET_APP),
            SearchAttributePair(sa.RELEASE_ENVIRONMENT, "production"),
            SearchAttributePair(sa.RELEASE_STAGE, Stage.BUILDING.value),
            SearchAttributePair(sa.GRAYSCALE_PERCENT, 0),
        ]),
    )
    await until_answering(handle)
    await handle.describe()
    await wait_for_stage(client, handle.id, Stage.READY_TO_APPLY)
    return handle


async def command_baseline(drivers: Drivers, workflow_id: str, sent: Sent) -> None:
    await drivers.client.get_workflow_handle(workflow_id).execute_update(
        sent.name, drivers.signed(sent), result_type=dict)


async def drive_baseline(drivers: Drivers, program: str,
                         workflow: str = BASELINE_WORKFLOW) -> None:
    """A baseline's lifecycle, or a floor's with `workflow`: the same calls either way."""
    handle = await baseline_to_ready(drivers, program, workflow)
    for sent in LIFECYCLE_COMMANDS:
        await command_baseline(drivers, handle.id, sent)
    await handle.result()


async def park_baseline(drivers: Drivers, program: str) -> str:
    handle = await baseline_to_ready(drivers, program)
    await command_baseline(drivers, handle.id, APPLY)
    return handle.id


async def start_command_floor(drivers: Drivers, program: str,
                              answer: dict[str, Any]) -> str:
    """A command floor, parked, answering `answer`: started and queried as a release's start
    is (ReleaseClient.start waits until it answers `status`)."""
    handle: WorkflowHandle[Any, Any] = await drivers.client.start_workflow(
        COMMAND_FLOOR_WORKFLOW, answer, id=command_floor_id(program),
        task_queue=drivers.task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
    await until_answering(handle)
    return handle.id


async def wait_for_stage(client: Client, workflow_id: str, stage: Stage) -> dict[str, Any]:
    """ReleaseClient.wait_for_stage's calls for a workflow that is not a release: describe,
    follow the history's search attribute upserts until `stage`, then query `status`."""
    run = await client.get_workflow_handle(workflow_id).describe()
    handle = client.get_workflow_handle(workflow_id, run_id=run.run_id)
    latest: StageChange | None = None
    async for event in handle.fetch_history_events(wait_new_event=True, skip_archival=True):
        latest = stage_change(event, latest) or latest
        if latest is not None and latest.stage is stage and event.event_id >= run.history_length:
            break
    status: dict[str, Any] = await client.get_workflow_handle(workflow_id).query("status")
    return status
