"""Driving releases and their baselines, call for call alike.

A release goes through the client library services use (starters.releases.ReleaseClient); its
baseline through the same Temporal calls made directly: start with the release's search
attributes, wait until it answers `status` (the very function ReleaseClient.start uses), one
describe, follow the history to READY_TO_APPLY and query `status` (as wait_for_stage does),
then the same updates, then wait for the result.
"""

from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from bench.stack import WORKSPACE
from bench.workflows import BASELINE_WORKFLOW
from mpr.domain.release.models import StartInput
from mpr.domain.release.stages import Stage
from starters.releases import ReleaseClient, StageChange, stage_change, until_answering
from workflows import search_attributes as sa

TARGET_APP = "alipaycn"
"""Platform and partner review, grayscale allowed: every step of the path is taken."""
VERSION = "1.1.0"
PREVIOUS_VERSION = "1.0.0"
ONE_CELL = {"operating_systems": ["ios"], "networks": ["wifi"], "device_tiers": ["high"]}
DEADLINE_SECONDS = 300.0
APPLY = ("apply_release", {"actor": "dev"})
APPROVE_PLATFORM = ("approve_review", {"actor": "platform-rev", "reviewer": "platform"})
APPROVE_PARTNER = ("approve_review", {"actor": "alipay-rev", "reviewer": "partner_app"})
LIFECYCLE_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    APPLY,
    APPROVE_PLATFORM,
    APPROVE_PARTNER,
    ("set_grayscale", {"actor": "admin", "percent": 1}),
    ("set_grayscale", {"actor": "admin", "percent": 5}),
    ("set_grayscale", {"actor": "admin", "percent": 50}),
    ("full_release", {"actor": "admin"}),
]
"""Apply, both required approvals, three grayscale steps, the full release."""


def release_request(program: str, source: Path) -> StartInput:
    return StartInput.model_validate({
        "mini_program_id": program, "version": VERSION, "target_app": TARGET_APP,
        "workspace_id": WORKSPACE, "requested_by": "dev", "source": str(source),
        "config": {"basic_info": {"name": "Bench Shop"}, "compatibility": ONE_CELL},
    })


def baseline_spec(program: str) -> dict[str, Any]:
    return {"mini_program_id": program, "version": VERSION, "target_app": TARGET_APP,
            "environment": "production", "cells": 1}


def baseline_id(program: str) -> str:
    return f"bench-baseline:{program}"


# --- releases --------------------------------------------------------------------------------


async def release_to_ready(releases: ReleaseClient, request: StartInput) -> str:
    ref = await releases.start(request)
    await releases.wait_for_stage(ref, Stage.READY_TO_APPLY, timeout=DEADLINE_SECONDS)
    return ref.release_id


async def drive_release(releases: ReleaseClient, client: Client, request: StartInput) -> None:
    release_id = await release_to_ready(releases, request)
    for name, payload in LIFECYCLE_COMMANDS:
        await releases.command(release_id, name, payload)
    await client.get_workflow_handle(release_id).result()


async def park_release(releases: ReleaseClient, request: StartInput) -> str:
    release_id = await release_to_ready(releases, request)
    name, payload = APPLY
    await releases.command(release_id, name, payload)
    return release_id


# --- baselines -------------------------------------------------------------------------------


async def baseline_to_ready(client: Client, task_queue: str, program: str) -> WorkflowHandle[
        Any, Any]:
    spec = baseline_spec(program)
    handle: WorkflowHandle[Any, Any] = await client.start_workflow(
        BASELINE_WORKFLOW, spec, id=baseline_id(program), task_queue=task_queue,
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


async def drive_baseline(client: Client, task_queue: str, program: str) -> None:
    handle = await baseline_to_ready(client, task_queue, program)
    for name, payload in LIFECYCLE_COMMANDS:
        await handle.execute_update(name, payload, result_type=dict)
    await handle.result()


async def park_baseline(client: Client, task_queue: str, program: str) -> str:
    handle = await baseline_to_ready(client, task_queue, program)
    name, payload = APPLY
    await handle.execute_update(name, payload, result_type=dict)
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
