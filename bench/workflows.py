"""What the benchmarks run besides the release itself, on the same worker process and task queue
(bench/worker.py), with the same data converter:

- `BenchBaselineRelease`: the release's baseline. It asks the server for exactly what a release
  on the benchmarked path asks for, with none of the work: the same activities in the same order
  and with the same options (trivial ones, `bench_noop`, heartbeating where the real build and
  cells heartbeat), the same search attribute upserts at the same moments, the same version
  markers (`workflow.patched(VERIFIED_IDENTITY)`, `workflow.patched(LOCAL_CATALOG_READS)`,
  `PREFILL_BASIC_INFO` once built, `CHANNEL_NOTICE` and the `notify_channel` step once released),
  the same commands as updates (each runs what a command runs: `authenticate_release_actor` as
  a local activity, then the catalog write as a regular one), the
  same `status` query, and the same end. Its start input and command payloads carry the
  sender's identity token as the release's do, and the token goes to the authenticate step as
  it goes to the release's; the step does not verify it, as the other steps do not read roles
  or write the catalog: the verification is part of the work the release is measured doing.
- `BenchFloorRelease`: the lifecycle's floor, what Temporal itself costs on the release's path:
  the same start, stage moves (search attribute upserts), `status` query and seven commands as
  updates, but only the build and the compatibility cell as activities (`bench_noop`, with
  their options), no other activity at all: no authenticate step, no catalog read or write,
  no version markers. A command's handler decodes its payload, moves the stage and answers.
- `BenchCommandFloor`: the command round trip's floor: a parked workflow whose `update_config`
  update handler runs no activity and does nothing but answer, with a status-sized answer
  given in its start input (a parked release's own `status`, so the client decodes the same
  bytes into the same model).
- `BenchMatrixRun`: the release's compatibility step alone: every cell of a matrix as one
  activity, all at once, with the release's own `run_cell`.
"""

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from mpr.domain.core.identity import TOKEN_FIELD
    from mpr.domain.release.models import CellResult, MatrixCell, PackageFacts
    from workflows import search_attributes as sa
    from workflows.command_core import (
        CATALOG_LOCAL_RETRY_THRESHOLD,
        CATALOG_RETRY,
        CATALOG_TIMEOUT,
        LOCAL_CATALOG_READS,
        VERIFIED_IDENTITY,
    )
    from workflows.release import (
        BUILD_HEARTBEAT,
        BUILD_RETRY,
        BUILD_TIMEOUT,
        CELL_HEARTBEAT,
        CELL_RETRY,
        CELL_TIMEOUT,
        CHANNEL_NOTICE,
        PREFILL_BASIC_INFO,
        STILL_STARTING,
        run_cell,
    )

BASELINE_WORKFLOW = "BenchBaselineRelease"
LIFECYCLE_FLOOR_WORKFLOW = "BenchFloorRelease"
COMMAND_FLOOR_WORKFLOW = "BenchCommandFloor"
MATRIX_WORKFLOW = "BenchMatrixRun"
NOOP = "bench_noop"
REQUIRED_APPROVALS = 2
"""alipaycn's reviewers: platform and partner app."""
AUTHENTICATE = "authenticate_release_actor"


@activity.defn(name=NOOP)
async def bench_noop(step: dict[str, Any]) -> dict[str, Any]:
    """A trivial activity: heartbeats once where the real one heartbeats, returns its input
    (but a token: the real authenticate step answers with a verdict, not the token)."""
    if step.get("heartbeat"):
        activity.heartbeat({"stage": "starting"})
    return {name: value for name, value in step.items() if name != TOKEN_FIELD}


class PathStages:
    """Where a baseline or a floor is on the release path: moved by the commands the release
    takes, published as the release publishes its stage, answered as `status`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.started = False
        self.stage = "BUILDING"
        self.percent = 0
        self.approvals = 0
        self.commands = 0
        self.spec: dict[str, Any] = {}

    def status(self) -> dict[str, Any]:
        if not self.started:
            raise ApplicationError(STILL_STARTING)
        return {"stage": self.stage, "percent": self.percent, "approvals": self.approvals,
                "commands": self.commands}

    def payload(self, name: str, args: Sequence[RawValue]) -> dict[str, Any]:
        """The command's payload, decoded as the release's command core decodes it."""
        payload = workflow.payload_converter().from_payload(args[0].payload) if args else {}
        if not isinstance(payload, dict):
            raise ApplicationError(f"the {self.kind} takes a dict payload for {name}",
                                   non_retryable=True)
        return payload

    def take(self, name: str, payload: dict[str, Any]) -> None:
        """Move as the release moves on the benchmarked path."""
        self.commands += 1
        if name == "apply_release":
            self.move("UNDER_REVIEW")
        elif name == "approve_review":
            self.approvals += 1
            if self.approvals == REQUIRED_APPROVALS:
                self.move("RELEASE_PREPARATION")
        elif name == "set_grayscale":
            self.move("GRAYSCALE", int(payload["percent"]))
        elif name == "full_release":
            self.move("RELEASED", 100)
        else:
            raise ApplicationError(f"the {self.kind} does not know {name}", non_retryable=True)

    async def ready_until_released(self) -> dict[str, Any]:
        """READY_TO_APPLY, then wait for the commands to release it, as the release does."""
        self.move("READY_TO_APPLY")
        await workflow.wait_condition(lambda: self.stage == "RELEASED")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    def move(self, stage: str, percent: int | None = None) -> None:
        self.stage = stage
        if percent is not None:
            self.percent = percent
        workflow.upsert_search_attributes([
            sa.MINI_PROGRAM_ID.value_set(self.spec["mini_program_id"]),
            sa.MINI_PROGRAM_VERSION.value_set(self.spec["version"]),
            sa.TARGET_APP.value_set(self.spec["target_app"]),
            sa.RELEASE_ENVIRONMENT.value_set(self.spec["environment"]),
            sa.RELEASE_STAGE.value_set(self.stage),
            sa.GRAYSCALE_PERCENT.value_set(self.percent),
            sa.RELEASE_STAGE_CHANGED_AT.value_set(workflow.now()),
        ])


@workflow.defn(name=BASELINE_WORKFLOW)
class BaselineRelease:
    def __init__(self) -> None:
        self._path = PathStages("baseline")
        self._lock = asyncio.Lock()

    @workflow.run
    async def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        """`spec`: mini_program_id, version, target_app, environment, cells (how many), and
        the starter's identity_token."""
        self._path.spec = spec
        # The release records these markers as it starts (workflows/release.py `_begin`,
        # the first catalog_read).
        workflow.patched(VERIFIED_IDENTITY)
        workflow.patched(LOCAL_CATALOG_READS)
        await self._read(AUTHENTICATE, identity_token=spec.get(TOKEN_FIELD))
        await self._read("load_release_context")
        await self._step("record_transition")
        self._path.started = True
        self._path.move("BUILDING")
        await self._step("build_package", heartbeat=True, start_to_close=BUILD_TIMEOUT,
                         heartbeat_timeout=BUILD_HEARTBEAT, retry=BUILD_RETRY)
        workflow.patched(PREFILL_BASIC_INFO)  # as the release's `_build` once built
        await self._step("record_transition")
        self._path.move("COMPATIBILITY_TESTING")
        await asyncio.gather(*(
            self._step("test_compatibility_cell", heartbeat=True, start_to_close=CELL_TIMEOUT,
                       heartbeat_timeout=CELL_HEARTBEAT, retry=CELL_RETRY)
            for _ in range(int(spec.get("cells", 1)))
        ))
        await self._step("record_transition")
        return await self._path.ready_until_released()

    @workflow.query
    def status(self) -> dict[str, Any]:
        return self._path.status()

    @workflow.update(dynamic=True)
    async def command(self, name: str, args: Sequence[RawValue]) -> dict[str, Any]:
        await workflow.wait_condition(lambda: self._path.started)
        async with self._lock:
            # As the release's command core: decode the payload, send its token to the
            # authenticate step, then write.
            payload = self._path.payload(name, args)
            await self._read(AUTHENTICATE, identity_token=payload.get(TOKEN_FIELD))
            await self._step("record_transition")
            self._path.take(name, payload)
            if self._path.stage == "RELEASED" and workflow.patched(CHANNEL_NOTICE):
                # The release's notice to its channel; starting the channel's own workflow
                # is work the release's path now causes, and is measured with it.
                await self._step("notify_channel")
        return self._path.status()

    async def _read(self, name: str, *, identity_token: Any = None) -> None:
        """A catalog read, a local activity as the release's `catalog_read` runs it."""
        step: dict[str, Any] = {"step": name, "heartbeat": False}
        if identity_token is not None:
            step[TOKEN_FIELD] = identity_token
        await workflow.execute_local_activity(
            NOOP, step, result_type=dict, start_to_close_timeout=CATALOG_TIMEOUT,
            retry_policy=CATALOG_RETRY, local_retry_threshold=CATALOG_LOCAL_RETRY_THRESHOLD)

    async def _step(self, name: str, *, heartbeat: bool = False,
                    start_to_close: timedelta = CATALOG_TIMEOUT,
                    heartbeat_timeout: timedelta | None = None,
                    retry: Any = CATALOG_RETRY, identity_token: Any = None) -> None:
        step: dict[str, Any] = {"step": name, "heartbeat": heartbeat}
        if identity_token is not None:
            step[TOKEN_FIELD] = identity_token
        await workflow.execute_activity(
            NOOP, step, result_type=dict,
            start_to_close_timeout=start_to_close, heartbeat_timeout=heartbeat_timeout,
            retry_policy=retry,
        )


@workflow.defn(name=LIFECYCLE_FLOOR_WORKFLOW)
class FloorRelease:
    """The release's path with no activity but the build and the cells (no-ops)."""

    def __init__(self) -> None:
        self._path = PathStages("floor")

    @workflow.run
    async def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        """`spec`: as the baseline's (the token comes and goes unread)."""
        self._path.spec = spec
        self._path.started = True
        self._path.move("BUILDING")
        await workflow.execute_activity(
            NOOP, {"step": "build_package", "heartbeat": True}, result_type=dict,
            start_to_close_timeout=BUILD_TIMEOUT, heartbeat_timeout=BUILD_HEARTBEAT,
            retry_policy=BUILD_RETRY)
        self._path.move("COMPATIBILITY_TESTING")
        await asyncio.gather(*(
            workflow.execute_activity(
                NOOP, {"step": "test_compatibility_cell", "heartbeat": True}, result_type=dict,
                start_to_close_timeout=CELL_TIMEOUT, heartbeat_timeout=CELL_HEARTBEAT,
                retry_policy=CELL_RETRY)
            for _ in range(int(spec.get("cells", 1)))
        ))
        return await self._path.ready_until_released()

    @workflow.query
    def status(self) -> dict[str, Any]:
        return self._path.status()

    @workflow.update(dynamic=True)
    async def command(self, name: str, args: Sequence[RawValue]) -> dict[str, Any]:
        self._path.take(name, self._path.payload(name, args))
        return self._path.status()


@workflow.defn(name=COMMAND_FLOOR_WORKFLOW)
class CommandFloor:
    """Waits, parked, answering `update_config` with the answer it was started with."""

    @workflow.init
    def __init__(self, answer: dict[str, Any]) -> None:
        # In __init__: a replayed floor may run its update handler before `run` starts.
        self._answer = answer
        self._answered = 0

    @workflow.run
    async def run(self, answer: dict[str, Any]) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.query
    def status(self) -> dict[str, Any]:
        return self._answer

    @workflow.update(name="update_config")
    async def update_config(self, payload: dict[str, Any]) -> dict[str, Any]:
        self._answered += 1
        return self._answer


@workflow.defn(name=MATRIX_WORKFLOW)
class MatrixRun:
    @workflow.run
    async def run(self, package: PackageFacts, cells: list[MatrixCell]) -> list[CellResult]:
        return list(await asyncio.gather(*(run_cell(package, cell) for cell in cells)))
