"""The smaller model-based run: the same random commands sent as updates (and mistyped signal
names) to the real MiniProgramRelease workflows on the time-skipping server, with in-memory
catalog activities that keep the channel hold; after every step each release's `status`
query must match the reference model, and a refused command must leave it as it was.
"""

import asyncio
import time
import uuid
from typing import Any

from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from temporalio.client import (
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from mpr.domain.core.identity import TOKEN_FIELD
from mpr.domain.release.release_id import release_id
from mpr.domain.release.rules import RELEASE
from tests.identity import ISSUER, verifying
from tests.model import reference
from tests.model.reference import Payload, ReleaseModel, merge_config
from tests.model.test_release_model import (
    BLANK_CONFIG,
    PERSONAS,
    RELEASES,
    Sent,
    among,
    draw_command,
    model_policy,
    mostly_named,
    roles_of,
)
from tests.workflows.driving import start_input
from tests.workflows.release_fakes import POLICIES, FakeCatalog
from workflows.release import MiniProgramRelease

# One compatibility cell rather than 24: this run is about the process, not the matrix.
ONE_CELL = {"operating_systems": ["android"], "networks": ["wifi"], "device_tiers": ["high"]}
STEPS = 15
# Fewer steps than the pure machine takes: lean forward, to reach the rollout all the same.
FLAVOURS = ("forward", "accepted", "forward", "refused", "unauthorised", "any stage",
            "malformed")
MAX_RELEASES = 3
WORK = {None: None, "BUILD": "build", "COMPATIBILITY": "test"}
# What a refusal may change in `status`: the refusal itself, and the audit trail's length.
REFUSAL_FIELDS = ("last_rejection", "audit_count")


def status_projection(status: dict[str, Any]) -> Payload:
    """What the model describes of a release, from its `status` query (which shows the
    whitelist's size, never its user ids)."""
    config = status["config"]
    return {
        "stage": status["stage"], "work": WORK[status["pending_work"]],
        "source": status["source"], "first_release": status["first_release"],
        "percent": status["percent"], "whitelist": status["whitelist_size"],
        "approvals": sorted(status["approvals"]), "review_round": status["review_round"],
        "config": {key: config[key] for key in BLANK_CONFIG},
    }


def model_projection(release: reference.Release) -> Payload:
    return {
        "stage": release.stage, "work": release.work, "source": release.source,
        "first_release": release.first_release, "percent": release.percent,
        "whitelist": len(release.whitelist), "approvals": sorted(release.approvals),
        "review_round": release.review_round,
        "config": {key: release.config[key] for key in BLANK_CONFIG},
    }


async def settled_status(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """The status once the release waits for no build or test (the fakes finish at once)."""
    deadline = time.monotonic() + 60  # generous: the machine may be busy with other servers
    while True:
        try:
            status: dict[str, Any] = await handle.query("status")
            if status["pending_work"] is None:
                return status
        except WorkflowQueryFailedError:  # still loading its policy from the catalog
            pass
        assert time.monotonic() < deadline, f"{handle.id} kept working"
        await asyncio.sleep(0.02)


class Run:
    """The releases of one example: one channel, its fake catalog, and the model."""

    def __init__(self, env: WorkflowEnvironment, queue: str, app: str,
                 catalog: FakeCatalog) -> None:
        self.env, self.queue, self.app, self.catalog = env, queue, app, catalog
        self.program = f"coffee-{uuid.uuid4().hex[:8]}"
        self.model = ReleaseModel(model_policy(POLICIES[app]))
        self.handles: dict[str, WorkflowHandle[Any, Any]] = {}

    async def start(self, named: bool) -> None:
        version = f"1.{len(self.handles)}.0"
        config: Payload = {"compatibility": ONE_CELL}
        if named:
            config["basic_info"] = {"name": "Coffee Shop"}
        request = start_input(mini_program_id=self.program, version=version,
                              target_app=self.app, config=config)
        del request["requested_by"]  # the developer's token says who
        release = release_id(self.program, version, self.app, "production")
        self.handles[release] = await self.env.client.start_workflow(
            "MiniProgramRelease", {**request, TOKEN_FIELD: await self.token("alice")}, id=release,
            task_queue=self.queue)
        modelled_config = merge_config(BLANK_CONFIG, {k: v for k, v in config.items()
                                                      if k != "compatibility"})
        assert modelled_config is not None
        self.model.start(release, version, request["source"], modelled_config)
        await self.check(release, await self.settle(release))

    async def token(self, user: str) -> str:
        """A token valid at the test server's time, read afresh: waiting for a release's
        result lets the time-skipping server leap on (ten years, measured, when it has no timer
        to stop at), past the lifetime of any token issued before."""
        now = (await self.env.get_current_time()).timestamp()
        return ISSUER.token(user, now=now)

    async def identified(self, command: Sent) -> list[Any]:
        """The command's arguments, its sender's token in the payload where there is one."""
        args = list(command.args)
        if len(args) == 1 and isinstance(args[0], dict):
            args[0] = {**args[0], TOKEN_FIELD: await self.token(command.sender)}
        return args

    async def settle(self, release: str) -> dict[str, Any]:
        handle = self.handles[release]
        status = await settled_status(handle)
        if status["stage"] in reference.FINAL:
            # It ends there: wait for that, so that the next command finds it ended, not
            # ending.
            await asyncio.wait_for(handle.result(), timeout=60)
        while (work := self.model.releases[release]).work is not None:
            # The fake build fails exactly for sources with "broken" in them.
            self.model.work_done(release, succeeded="broken" not in work.source)
        return status

    async def check(self, release: str, status: dict[str, Any]) -> None:
        real = status_projection(status)
        model = model_projection(self.model.releases[release])
        assert real == model, f"{release}: the workflow {real}, the model {model}"

    async def send(self, release: str, command: Sent) -> None:
        note(f"{release} <- {command}")
        handle = self.handles[release]
        if command.actor is not None:
            self.catalog.roles[command.actor] = set(roles_of(command.actor))
        before = await handle.query("status")
        accepted = await self._deliver(handle, command)
        expected = self.model.command(release, command.name, command.payload,
                                      roles_of(command.actor))
        assert accepted == expected, (
            f"{command} was {'accepted' if accepted else 'refused'} by the workflow but "
            f"{'accepted' if expected else 'refused'} by the model")
        if accepted:
            await self.check(release, await self.settle(release))
            return
        after = await handle.query("status")
        if after["audit_count"] > before["audit_count"]:  # the refusal was recorded
            assert after["last_rejection"]["command"] == command.name
        else:  # only an ended workflow records nothing
            assert after["stage"] in reference.FINAL, after["stage"]
        unchanged = {k: v for k, v in after.items() if k not in REFUSAL_FIELDS}
        assert unchanged == {k: v for k, v in before.items() if k not in REFUSAL_FIELDS}

    async def _deliver(self, handle: WorkflowHandle[Any, Any], command: Sent) -> bool:
        if (await handle.describe()).close_time is not None:
            # It ended at RELEASED or CANCELED: nothing reaches it any more. Its close time
            # says so; "not RUNNING" need not, since the description's status is None when the
            # server leaves it unspecified, and a running release must still get the command.
            return False
        if command.name not in RELEASE.rules:
            # No update handler by that name: as a signal it is recorded as a refusal.
            count = (await handle.query("status"))["audit_count"]
            await handle.signal(command.name, *(await self.identified(command)))
            deadline = time.monotonic() + 60
            while (await handle.query("status"))["audit_count"] == count:
                assert time.monotonic() < deadline, "the mistyped signal was not recorded"
                await asyncio.sleep(0.02)
            return False
        try:
            await handle.execute_update(command.name, args=await self.identified(command))
        except WorkflowUpdateFailedError as failure:
            cause = failure.cause
            assert isinstance(cause, ApplicationError) and cause.type == "CommandRejected"
            return False
        return True


# No shrinking: shrinking a workflow run takes minutes; the drawn steps are printed anyway.
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(data=st.data())
async def test_the_release_workflow_follows_the_model(
    env: WorkflowEnvironment, data: st.DataObject
) -> None:
    catalog = FakeCatalog(roles={name: set(roles) for name, roles in PERSONAS.items()},
                          identity=verifying())
    queue = f"model-test-{uuid.uuid4()}"
    app = data.draw(st.sampled_from(sorted(POLICIES)), label="target app")
    async with Worker(env.client, task_queue=queue, workflows=[MiniProgramRelease],
                      activities=catalog.activities):
        run = Run(env, queue, app, catalog)
        if data.draw(st.booleans(), label="released before"):
            # The channel serves 0.9.0 already: none of these is a first release.
            catalog.stable[(run.program, app, "production")] = "0.9.0"
            run.model.stable_version = "0.9.0"
        await run.start(data.draw(mostly_named, label="named"))
        for _ in range(STEPS):
            if len(run.handles) < MAX_RELEASES and data.draw(
                    st.integers(0, 5).map(lambda n: n == 5), label="start another release"):
                await run.start(data.draw(mostly_named, label="named"))
                continue
            live = [r for r in sorted(run.handles)
                    if run.model.releases[r].stage not in reference.FINAL]
            release = data.draw(among(tuple(live * 3 + sorted(run.handles))), label="release")
            await run.send(release, draw_command(data.draw, RELEASES, run.model, release,
                                                 FLAVOURS))
