"""The release workflow on the time-skipping test server, with in-memory activities."""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from mpr.domain.core.ledger import Carried, Ledger
from mpr.domain.core.models import Role
from mpr.domain.release.models import AuditEntry, ReleaseContext, StartInput
from mpr.domain.release.release_id import release_id
from mpr.domain.release.rules import start_release
from mpr.domain.release.stages import Stage
from tests.stack import TEST_CONVERTER
from tests.workflows.driving import (
    Releases,
    command,
    start_input,
    until_answering,
    wait_for_stage,
)
from tests.workflows.release_fakes import POLICIES, FakeCatalog
from workflows import search_attributes as sa
from workflows.release import PREFILL_BASIC_INFO, MiniProgramRelease


async def refused(handle: Any, name: str, **payload: Any) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update(name, payload)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "CommandRejected"
    return cause.message


async def approved_release(releases: Releases, **overrides: Any) -> Any:
    handle = await releases.start(**overrides)
    await wait_for_stage(handle, "READY_TO_APPLY")
    await command(handle, "apply_release", actor="dev")
    target = overrides.get("target_app", "alipaycn")
    if target == "alipaycn":
        await command(handle, "approve_review", actor="platform-rev", reviewer="platform")
    await command(handle, "approve_review", actor="partner-rev", reviewer="partner_app")
    await wait_for_stage(handle, "RELEASE_PREPARATION")
    return handle


async def test_production_release_through_grayscale(releases: Releases, catalog: FakeCatalog):
    handle = await releases.start()
    status = await wait_for_stage(handle, "READY_TO_APPLY")
    assert status["package"]["sha256"] == "ab" * 32
    assert status["compatibility"]["cells"] == 24
    assert status["first_release"] is True

    status = await command(handle, "apply_release", actor="dev",
                           server_domain_whitelist=["api.coffee.example"])
    assert status["stage"] == "UNDER_REVIEW"
    assert status["config"]["server_domain_whitelist"] == ["api.coffee.example"]
    status = await command(handle, "approve_review", actor="platform-rev", reviewer="platform",
                           comment="looks good")
    assert status["stage"] == "UNDER_REVIEW", "partner_app has not approved yet"
    status = await command(handle, "approve_review", actor="partner-rev", reviewer="partner_app")
    assert status["stage"] == "RELEASE_PREPARATION"

    for percent in (1, 5, 50):
        status = await command(handle, "set_grayscale", actor="admin", percent=percent)
        assert (status["stage"], status["percent"]) == ("GRAYSCALE", percent)
    status = await command(handle, "set_grayscale", actor="pa", percent=100)
    assert status["stage"] == "RELEASED"

    result = await handle.result()
    assert result["stage"] == "RELEASED" and result["percent"] == 100
    description = await handle.describe()
    assert description.typed_search_attributes.get(sa.RELEASE_STAGE) == "RELEASED"
    assert description.typed_search_attributes.get(sa.GRAYSCALE_PERCENT) == 100
    assert description.typed_search_attributes.get(sa.TARGET_APP) == "alipaycn"

    reviews = catalog.events("apply_release")[0].open_reviews
    assert reviews is not None and [str(o) for o in reviews.organisations] == [
        "platform", "partner_app"]
    rollouts = [t.rollout.percent for t in catalog.transitions if t.rollout]
    assert rollouts == [1, 5, 50, 0], "each grayscale step and the promotion write the channel"
    assert catalog.transitions[-1].promote
    assert [e["command"] for e in (await handle.query("audit_log"))["entries"]][:3] == [
        "start_release", "build_succeeded", "compatibility_tested"]


async def test_refused_commands_change_nothing_and_are_recorded(releases: Releases):
    handle = await releases.start()
    await wait_for_stage(handle, "READY_TO_APPLY")
    before = await handle.query("status")

    reason = await refused(handle, "set_grayscale", actor="admin", percent=5)
    assert "not allowed in stage READY_TO_APPLY" in reason
    reason = await refused(handle, "apply_release", actor="stranger")
    assert "stranger is not authorised to apply_release" in reason
    reason = await refused(handle, "apply_release", actor="dev", percent=3)
    assert "percent: unknown field" in reason
    reason = await refused(handle, "update_config", actor="dev",
                           config={"server_domain_whitelist": ["not a domain"]})
    assert "not a domain name" in reason

    after = await handle.query("status")
    assert after["stage"] == before["stage"] and after["config"] == before["config"]
    assert after["last_rejection"]["command"] == "update_config"
    log = await handle.query("audit_log")
    refusals = [e for e in log["entries"] if not e["accepted"]]
    assert [e["command"] for e in refusals] == [
        "set_grayscale", "apply_release", "apply_release", "update_config"]
    assert refusals[1]["actor"] == "stranger"


async def test_malformed_signals_reach_the_workflow_and_are_refused(releases: Releases):
    handle = await releases.start()
    await wait_for_stage(handle, "READY_TO_APPLY")
    await handle.signal("apply_release", "not an object")
    await handle.signal("apply_release", {"actor": "dev", "basic_info": {"name": ""}})
    await handle.signal("aply_release", {"actor": "dev"})
    await handle.signal("set_grayscale", {"actor": "admin", "percent": "ten"})
    await handle.signal("apply_release", {"actor": "dev"})
    status = await wait_for_stage(handle, "UNDER_REVIEW")
    log = await handle.query("audit_log")
    reasons = [e["reason"] for e in log["entries"] if not e["accepted"]]
    assert reasons[0] == "apply_release payload must be a JSON object, got a string"
    assert "basic_info.name" in reasons[1]
    assert reasons[2].startswith("unknown command 'aply_release'")
    assert "percent" in reasons[3]
    assert status["last_rejection"]["command"] == "set_grayscale"


async def test_first_release_to_gopay_is_full_release_only(releases: Releases):
    handle = await approved_release(releases, target_app="gopay")
    status = await handle.query("status")
    assert status["full_release_only"] is True
    assert "can only be a full release" in await refused(
        handle, "start_whitelist_test", actor="admin", user_ids=["u1"])
    assert "can only be a full release" in await refused(
        handle, "set_grayscale", actor="admin", percent=1)
    assert "not authorised" in await refused(handle, "full_release", actor="dev")
    status = await command(handle, "full_release", actor="admin")
    assert status["stage"] == "RELEASED"


async def test_later_gopay_release_whitelist_grayscale_reset_and_cancel(
    releases: Releases, catalog: FakeCatalog
):
    program = f"coffee-{uuid.uuid4().hex[:8]}"
    catalog.stable[(program, "gopay", "production")] = "1.0.0"
    handle = await approved_release(releases, target_app="gopay", mini_program_id=program,
                                    version="1.1.0")
    status = await handle.query("status")
    assert status["first_release"] is False and status["previous_stable_version"] == "1.0.0"

    status = await command(handle, "start_whitelist_test", actor="admin", user_ids=["u1", "u2"])
    assert (status["stage"], status["whitelist_size"]) == ("WHITELIST_TESTING", 2)
    status = await command(handle, "start_whitelist_test", actor="admin", user_ids=["u3"])
    assert status["whitelist_size"] == 1, "a new whitelist replaces the old one"
    status = await command(handle, "set_grayscale", actor="admin", percent=10)
    assert status["stage"] == "GRAYSCALE"
    assert "only increases" in await refused(handle, "set_grayscale", actor="admin", percent=5)
    assert "not on gopay's grayscale ladder" in await refused(
        handle, "set_grayscale", actor="admin", percent=15)

    status = await command(handle, "reset_grayscale", actor="pa")
    assert (status["stage"], status["percent"], status["whitelist_size"]) == (
        "RELEASE_PREPARATION", 0, 0)
    await command(handle, "set_grayscale", actor="admin", percent=2)
    status = await command(handle, "cancel_grayscale", actor="admin", reason="crash reports")
    assert status["stage"] == "CANCELED" and status["cancel_reason"] == "crash reports"
    await handle.result()
    last = catalog.transitions[-1].rollout
    assert last is not None and last.candidate_version is None, "cancel clears the candidate"
    whitelist_write = next(t for t in catalog.transitions if t.event.command ==
                           "start_whitelist_test")
    assert whitelist_write.event.payload == {"actor": "admin", "user_ids": "<2 user ids>"}


async def test_alipaycn_offers_no_whitelist_test(releases: Releases):
    handle = await approved_release(releases)
    reason = await refused(handle, "start_whitelist_test", actor="admin", user_ids=["u1"])
    assert reason == "target app alipaycn does not offer whitelist tests"


async def test_review_rejection_then_change_and_reapply(releases: Releases, catalog: FakeCatalog):
    handle = await releases.start()
    await wait_for_stage(handle, "READY_TO_APPLY")
    await command(handle, "apply_release", actor="dev")
    assert "does not take" not in await refused(
        handle, "reject_review", actor="partner-rev", reviewer="platform", reason="x")
    status = await command(handle, "reject_review", actor="partner-rev", reviewer="partner_app",
                           reason="icon is blurry")
    assert status["stage"] == "REJECTED"
    assert status["review_rejection"]["reason"] == "icon is blurry"

    status = await command(handle, "update_config", actor="dev",
                           config={"basic_info": {"icon": "https://cdn.example.com/icon.png"}})
    assert status["config"]["basic_info"] == {
        "name": "Coffee Shop", "description": "", "icon": "https://cdn.example.com/icon.png"}
    status = await command(handle, "apply_release", actor="owner")
    assert (status["stage"], status["review_round"], status["approvals"]) == (
        "UNDER_REVIEW", 2, {})
    reason = await refused(handle, "update_config", actor="dev",
                           config={"h5_domain_whitelist": ["h5.example.com"]})
    assert "only basic_info can be changed" in reason
    await command(handle, "update_config", actor="dev", config={"basic_info": {"name": "Cafe"}})
    assert [t.open_reviews.round for t in catalog.transitions if t.open_reviews] == [1, 2]


async def test_build_failure_then_rebuild(releases: Releases):
    handle = await releases.start(source="/samples/coffee-broken")
    status = await wait_for_stage(handle, "BUILD_FAILED")
    assert "pages/cart/cart" in status["build_error"]
    assert "not allowed in stage BUILD_FAILED" in await refused(
        handle, "apply_release", actor="dev")
    status = await command(handle, "rebuild", actor="dev", source="/samples/coffee")
    assert status["stage"] == "BUILDING"
    status = await wait_for_stage(handle, "READY_TO_APPLY")
    assert status["build_error"] is None and status["source"] == "/samples/coffee"


async def test_failing_compatibility_cells_are_shown_but_do_not_block(
    releases: Releases, catalog: FakeCatalog
):
    catalog.failing_cells = {"ios/2g/low"}
    handle = await releases.start()
    status = await wait_for_stage(handle, "READY_TO_APPLY")
    assert status["compatibility"]["failed"] == 1
    assert status["compatibility"]["failing_cells"] == ["ios/2g/low: download too slow"]
    report = await handle.query("compatibility_report")
    assert len(report["results"]) == 24
    await command(handle, "apply_release", actor="dev")
    entry = (await handle.query("audit_log"))["entries"][-1]
    assert entry["accepted"] and "1 failing compatibility cell" in entry["reason"]

    catalog.failing_cells = set()
    await command(handle, "reject_review", actor="platform-rev", reviewer="platform", reason="r")
    await command(handle, "retest_compatibility", actor="dev")
    status = await wait_for_stage(handle, "READY_TO_APPLY")
    assert status["compatibility"]["failed"] == 0


async def test_compatibility_matrix_override(releases: Releases):
    matrix = {"operating_systems": ["ios"], "networks": ["wifi", "4g"], "device_tiers": ["low"]}
    handle = await releases.start(config={"basic_info": {"name": "C"}, "compatibility": matrix})
    status = await wait_for_stage(handle, "READY_TO_APPLY")
    assert status["compatibility"]["cells"] == 2


async def test_one_release_per_channel_between_review_and_grayscale(releases: Releases):
    program = f"coffee-{uuid.uuid4().hex[:8]}"
    first = await releases.start(mini_program_id=program, version="1.0.0")
    second = await releases.start(mini_program_id=program, version="1.0.1")
    await wait_for_stage(first, "READY_TO_APPLY")
    await wait_for_stage(second, "READY_TO_APPLY")
    await command(first, "apply_release", actor="dev")
    reason = await refused(second, "apply_release", actor="dev")
    assert f"release:{program}:1.0.0:alipaycn:production" in reason
    assert (await second.query("status"))["stage"] == "READY_TO_APPLY"
    await command(first, "cancel_release", actor="owner", reason="superseded")
    status = await command(second, "apply_release", actor="dev")
    assert status["stage"] == "UNDER_REVIEW"


async def test_non_production_releases_skip_review(releases: Releases, catalog: FakeCatalog):
    handle = await releases.start(environment="sandbox")
    result = await handle.result()
    assert result["stage"] == "RELEASED" and result["environment"] == "sandbox"
    assert catalog.transitions[-1].promote
    assert not any(t.open_reviews for t in catalog.transitions)


async def test_cancel_while_building_stops_the_build(releases: Releases, catalog: FakeCatalog):
    catalog.builds_wait_for = asyncio.Event()
    handle = await releases.start()
    status = await command(handle, "cancel_release", actor="owner", reason="wrong branch")
    assert status["stage"] == "CANCELED"
    result = await handle.result()
    assert result["cancel_reason"] == "wrong branch" and result["package"] is None


async def test_workflow_cancellation_cancels_the_release(releases: Releases):
    handle = await releases.start()
    await wait_for_stage(handle, "READY_TO_APPLY")
    await handle.cancel()
    result = await handle.result()
    assert result["stage"] == "CANCELED"
    assert result["cancel_reason"] == "workflow cancellation requested"


async def test_unauthorised_reviewers_and_wrong_roles(releases: Releases, catalog: FakeCatalog):
    catalog.roles["other-partner"] = set()
    handle = await releases.start()
    await wait_for_stage(handle, "READY_TO_APPLY")
    await command(handle, "apply_release", actor="dev")
    assert "needs partner_reviewer" in await refused(
        handle, "approve_review", actor="other-partner", reviewer="partner_app")
    assert "needs platform_reviewer" in await refused(
        handle, "approve_review", actor="partner-rev", reviewer="platform")
    await command(handle, "approve_review", actor="platform-rev", reviewer="platform")
    assert "already approved" in await refused(
        handle, "approve_review", actor="platform-rev", reviewer="platform")


async def test_invalid_start_input_fails_the_workflow_cleanly(releases: Releases):
    bad = start_input(version="one")
    handle = await releases.client.start_workflow(
        "MiniProgramRelease", bad, id=f"release:{uuid.uuid4().hex}", task_queue=releases.task_queue
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "invalid start input: version" in str(failure.value.cause)

    good = start_input()
    handle = await releases.client.start_workflow(
        "MiniProgramRelease", good, id="release:wrong-id", task_queue=releases.task_queue
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "workflow id must be" in str(failure.value.cause)


async def test_unknown_target_app_fails_with_a_clear_message(releases: Releases):
    handle = await releases.start(target_app="nowhere")
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "unknown target app 'nowhere'" in str(failure.value.cause)


async def test_continued_run_resumes_from_carried_state(
    releases: Releases, catalog: FakeCatalog
):
    """What continue-as-new hands to the next run is all that run needs to go on."""
    request = StartInput.model_validate(start_input())
    workflow_id = release_id(request.mini_program_id, request.version, request.target_app,
                             request.environment)
    context = ReleaseContext(policy=POLICIES["alipaycn"], first_release=True,
                             previous_stable_version=None)
    state = start_release(workflow_id, request, context, datetime.now(UTC)).model_copy(
        update={"stage": Stage.GRAYSCALE, "percent": 2, "pending_work": None}
    )
    carried = Carried(state=state, ledger=Ledger[AuditEntry](count=41)).payload()
    handover = await releases.client.start_workflow(
        "Handover", args=["MiniProgramRelease", request.model_dump(mode="json"), carried],
        id=workflow_id, task_queue=releases.task_queue,
    )
    handle = releases.client.get_workflow_handle(workflow_id)
    for _ in range(600):  # until the handover has continued as new (30 s at most)
        if (await handle.describe()).run_id != handover.first_execution_run_id:
            break
        await asyncio.sleep(0.05)
    await until_answering(handle)
    status = await command(handle, "set_grayscale", actor="admin", percent=5)
    assert (status["stage"], status["percent"], status["audit_count"]) == ("GRAYSCALE", 5, 42)
    assert catalog.build_started == 0, "a continued run does not start over"
    assert not catalog.events("start_release")
    await command(handle, "cancel_release", actor="owner")


async def test_a_start_that_brings_its_own_state_is_refused(
    releases: Releases, catalog: FakeCatalog
):
    """A state copied from a history and edited to RELEASE_PREPARATION must not begin a release
    past its build and review: only a run that continued as new takes a carried state."""
    request = StartInput.model_validate(start_input())
    workflow_id = release_id(request.mini_program_id, request.version, request.target_app,
                             request.environment)
    context = ReleaseContext(policy=POLICIES["alipaycn"], first_release=False,
                             previous_stable_version="0.9.0")
    state = start_release(workflow_id, request, context, datetime.now(UTC)).model_copy(
        update={"stage": Stage.RELEASE_PREPARATION, "pending_work": None}
    )
    carried = Carried(state=state, ledger=Ledger[AuditEntry]()).payload()
    handle = await releases.client.start_workflow(
        "MiniProgramRelease", args=[request.model_dump(mode="json"), carried], id=workflow_id,
        task_queue=releases.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidStartInput"
    assert "taken only by a run that continued as new" in cause.message
    assert catalog.transitions == [], "nothing is written"


async def test_history_replays_deterministically(releases: Releases):
    handle = await approved_release(releases)
    await command(handle, "set_grayscale", actor="admin", percent=1)
    await handle.signal("set_grayscale", {"actor": "admin", "percent": "x"})
    await command(handle, "full_release", actor="admin")
    await handle.result()
    history = await handle.fetch_history()
    replayer = Replayer(workflows=[MiniProgramRelease], data_converter=TEST_CONVERTER)
    await replayer.replay_workflow(history)


async def test_roles_are_read_per_command(releases: Releases, catalog: FakeCatalog):
    handle = await approved_release(releases)
    assert "not authorised" in await refused(handle, "full_release", actor="dev")
    catalog.roles["dev"] = {Role.PROGRAM_ADMIN}
    status = await command(handle, "full_release", actor="dev")
    assert status["stage"] == "RELEASED"


async def test_a_command_the_catalog_refuses_changes_nothing(
    releases: Releases, catalog: FakeCatalog
):
    handle = await releases.start()
    await wait_for_stage(handle, "READY_TO_APPLY")
    catalog.refused_commands = {"apply_release"}
    reason = await refused(handle, "apply_release", actor="dev")
    assert reason.startswith("the catalog could not take apply_release")
    status = await handle.query("status")
    assert status["stage"] == "READY_TO_APPLY"
    catalog.refused_commands = set()
    status = await command(handle, "apply_release", actor="dev")
    assert status["stage"] == "UNDER_REVIEW", "the release goes on"


# --- basic_info prefilled from app.json (patch `prefill-basic-info`) -----------------------


def patch_markers(history: Any, patch_id: str) -> int:
    return sum(1 for e in history.events
               if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
               and patch_id.encode() in e.marker_recorded_event_attributes.SerializeToString())


async def test_basic_info_is_prefilled_from_the_manifest_when_the_config_has_none(
    releases: Releases, catalog: FakeCatalog
):
    handle = await releases.start(config={})
    status = await wait_for_stage(handle, "READY_TO_APPLY")
    # The fake build's app.json names the program "Coffee" and has no description.
    assert status["config"]["basic_info"] == {"name": "Coffee", "description": "", "icon": ""}
    entries = (await handle.query("audit_log"))["entries"]
    [noted] = [e for e in entries if e["command"] == "build_succeeded"]
    assert noted["reason"] == "basic_info prefilled from app.json (name)"
    [built] = catalog.events("build_succeeded")
    assert built.event.reason == noted["reason"], "the catalog's audit row says so too"

    status = await command(handle, "apply_release", actor="dev")
    assert status["stage"] == "UNDER_REVIEW"
    assert status["config"]["basic_info"]["name"] == "Coffee"

    await command(handle, "cancel_release", actor="owner")
    await handle.result()
    history = await handle.fetch_history()
    assert patch_markers(history, PREFILL_BASIC_INFO) == 1
    replayer = Replayer(workflows=[MiniProgramRelease], data_converter=TEST_CONVERTER)
    await replayer.replay_workflow(history)


async def test_a_prefilled_basic_info_is_changed_with_update_config_before_apply(
    releases: Releases,
):
    handle = await releases.start(config={})
    status = await wait_for_stage(handle, "READY_TO_APPLY")
    assert status["config"]["basic_info"]["name"] == "Coffee"
    status = await command(handle, "update_config", actor="dev", config={
        "basic_info": {"name": "Coffee Shop", "description": "Order ahead"}})
    assert status["config"]["basic_info"] == {
        "name": "Coffee Shop", "description": "Order ahead", "icon": ""}

    # A rebuild's manifest does not overwrite what the operator set.
    await command(handle, "rebuild", actor="dev")
    status = await wait_for_stage(handle, "READY_TO_APPLY")
    assert status["config"]["basic_info"]["name"] == "Coffee Shop"

    status = await command(handle, "apply_release", actor="dev")
    assert status["stage"] == "UNDER_REVIEW"
    assert status["config"]["basic_info"] == {
        "name": "Coffee Shop", "description": "Order ahead", "icon": ""}
    # Under review, basic_info still changes (and only it), as before.
    status = await command(handle, "update_config", actor="dev",
                           config={"basic_info": {"name": "Cafe"}})
    assert status["config"]["basic_info"]["name"] == "Cafe"


async def test_a_basic_info_given_at_the_start_is_not_prefilled(
    releases: Releases, catalog: FakeCatalog
):
    handle = await releases.start()  # start_input names it "Coffee Shop"; app.json "Coffee"
    status = await wait_for_stage(handle, "READY_TO_APPLY")
    assert status["config"]["basic_info"] == {"name": "Coffee Shop", "description": "",
                                              "icon": ""}
    entries = (await handle.query("audit_log"))["entries"]
    [built] = [e for e in entries if e["command"] == "build_succeeded"]
    assert built["reason"] is None
