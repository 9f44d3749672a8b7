"""basic_info prefilled from the package's app.json when a build succeeds (issue 15; seed 000,
"Check the basic information"), and the manifest's optional description it takes."""

from typing import Any

import pytest
from pydantic import ValidationError

from mpr.domain.release.manifest import validate_manifest
from mpr.domain.release.models import (
    MAX_DESCRIPTION_LENGTH,
    AppManifest,
    BasicInfo,
    PackageFacts,
    ReleaseConfig,
)
from mpr.domain.release.rules import build_succeeded
from mpr.domain.release.stages import Stage
from mpr.domain.release.state import ReleaseState, Work
from tests.domain.test_rules import EVERYONE, NOW, accepted, decide, make, refusal, state_at

NEEDS_BASIC_INFO = "apply_release needs basic_info (at least a name) in the config or payload"


def package(name: str = "Coffee Shop", description: str | None = None) -> PackageFacts:
    manifest = AppManifest(name=name, version="1.0.0", pages=["p"], description=description)
    return PackageFacts(sha256="0" * 64, size_bytes=10, uncompressed_bytes=20, file_count=2,
                        artifact_path="/a.zip", manifest=manifest)


def building(basic_info: BasicInfo | None = None) -> ReleaseState:
    """A release building its package, with `basic_info` in its config (none by default)."""
    config = ReleaseConfig(basic_info=basic_info)
    state = state_at(Stage.BUILDING, pending_work=Work.BUILD, package=None, config=config)
    return state.model_copy(update={"request": state.request.model_copy(update={"config": config})})


def built(state: ReleaseState, facts: PackageFacts, *, prefill: bool = True) -> ReleaseState:
    """Build, test (nothing fails) and wait for an apply, as the workflow does."""
    decision = build_succeeded(state, facts, NOW, prefill_basic_info=prefill)
    assert decision.state.stage is Stage.COMPATIBILITY_TESTING
    assert decision.state.package == facts
    return decision.state.model_copy(update={"stage": Stage.READY_TO_APPLY, "pending_work": None})


def applied(state: ReleaseState, **payload: Any) -> ReleaseState:
    after = accepted(decide(state, make("apply_release", actor="dev", **payload), EVERYONE, NOW))
    assert after.stage is Stage.UNDER_REVIEW
    return after


# --- the rule --------------------------------------------------------------------------------


def test_without_the_patch_nothing_is_prefilled_and_apply_still_refuses() -> None:
    decision = build_succeeded(building(), package(description="Order ahead"), NOW)
    assert decision.state.config.basic_info is None
    assert decision.note is None
    state = built(building(), package(description="Order ahead"), prefill=False)
    assert refusal(decide(state, make("apply_release", actor="dev"), EVERYONE, NOW)) == (
        NEEDS_BASIC_INFO)


def test_the_name_is_prefilled_from_the_manifest() -> None:
    decision = build_succeeded(building(), package(), NOW, prefill_basic_info=True)
    assert decision.state.config.basic_info == BasicInfo(name="Coffee Shop")
    assert decision.note == "basic_info prefilled from app.json (name)"
    assert decision.state.request.config.basic_info is None, "the start input stays as sent"
    under_review = applied(built(building(), package()))
    assert under_review.config.basic_info == BasicInfo(name="Coffee Shop")


def test_the_description_is_prefilled_where_the_manifest_has_one() -> None:
    decision = build_succeeded(building(), package(description="Order coffee ahead"), NOW,
                               prefill_basic_info=True)
    assert decision.state.config.basic_info == BasicInfo(
        name="Coffee Shop", description="Order coffee ahead", icon="")
    assert decision.note == "basic_info prefilled from app.json (name and description)"


def test_the_rest_of_the_config_is_kept() -> None:
    state = building().model_copy(update={"config": ReleaseConfig(
        server_domain_whitelist=["api.coffee.example"])})
    after = build_succeeded(state, package(), NOW, prefill_basic_info=True).state
    assert after.config.server_domain_whitelist == ["api.coffee.example"]
    assert after.config.basic_info == BasicInfo(name="Coffee Shop")


@pytest.mark.parametrize("given", [
    BasicInfo(name="Cafe"),
    BasicInfo(name="Cafe", description="typed by an operator", icon="https://cdn.example/i.png"),
])
def test_a_basic_info_already_set_is_never_overwritten(given: BasicInfo) -> None:
    decision = build_succeeded(building(given), package(description="from app.json"), NOW,
                               prefill_basic_info=True)
    assert decision.state.config.basic_info == given
    assert decision.note is None


@pytest.mark.parametrize("name", ["x" * 65, "Coffee Shop " * 10])
def test_a_name_that_does_not_fit_basic_info_is_not_prefilled(name: str) -> None:
    decision = build_succeeded(building(), package(name, "fits"), NOW, prefill_basic_info=True)
    assert decision.state.config.basic_info is None
    assert decision.note is not None
    assert decision.note.startswith("basic_info not prefilled: app.json does not fit it (name:")
    assert "at most 64 characters" in decision.note
    state = built(building(), package(name, "fits"))
    assert refusal(decide(state, make("apply_release", actor="dev"), EVERYONE, NOW)) == (
        NEEDS_BASIC_INFO)
    # The operator names it, in the apply or with update_config, as before.
    assert applied(state, basic_info={"name": "Cafe"}).config.basic_info == BasicInfo(name="Cafe")


def test_a_name_at_the_limit_is_prefilled() -> None:
    state = built(building(), package("x" * 64))
    assert state.config.basic_info == BasicInfo(name="x" * 64)


def test_the_operator_changes_a_prefilled_basic_info_with_update_config() -> None:
    state = built(building(), package(description="Order coffee ahead"))
    changed = accepted(decide(state, make("update_config", actor="dev",
                                          config={"basic_info": {"name": "Cafe"}}), EVERYONE, NOW))
    assert changed.config.basic_info == BasicInfo(name="Cafe", description="Order coffee ahead")
    assert applied(changed).config.basic_info == BasicInfo(
        name="Cafe", description="Order coffee ahead")


def test_a_rebuild_keeps_the_basic_info_the_operator_set() -> None:
    state = built(building(), package("Coffee Shop"))
    state = accepted(decide(state, make("update_config", actor="dev",
                                        config={"basic_info": {"name": "Cafe"}}), EVERYONE, NOW))
    rebuilding = accepted(decide(state, make("rebuild", actor="dev"), EVERYONE, NOW))
    assert rebuilding.stage is Stage.BUILDING
    rebuilt = built(rebuilding, package("Coffee Shop 2", "new"))
    assert rebuilt.config.basic_info == BasicInfo(name="Cafe")


def test_a_rebuild_does_not_follow_a_new_manifest_once_prefilled() -> None:
    """The chosen rule: prefill only when basic_info is absent. A prefilled basic_info is the
    release's basic_info like any other; update_config changes it."""
    state = built(building(), package("Coffee Shop"))
    rebuilding = accepted(decide(state, make("rebuild", actor="dev"), EVERYONE, NOW))
    decision = build_succeeded(rebuilding, package("Coffee Shop 2", "new"), NOW,
                               prefill_basic_info=True)
    assert decision.state.config.basic_info == BasicInfo(name="Coffee Shop")
    assert decision.note is None


def test_a_rebuild_prefills_when_the_first_manifest_did_not_fit() -> None:
    state = built(building(), package("x" * 65))
    assert state.config.basic_info is None
    rebuilding = accepted(decide(state, make("rebuild", actor="dev"), EVERYONE, NOW))
    assert built(rebuilding, package("Coffee Shop")).config.basic_info == BasicInfo(
        name="Coffee Shop")


# --- the manifest's description ----------------------------------------------------------------


FILES = ["app.json", "pages/index/index.axml"]


def manifest(**fields: Any) -> AppManifest:
    document = {"name": "Coffee Shop", "version": "1.0.0", "pages": ["pages/index/index"],
                **fields}
    return validate_manifest(document, FILES, "1.0.0")


def test_the_manifest_takes_app_json_description() -> None:
    assert manifest(description="Order coffee ahead").description == "Order coffee ahead"
    assert manifest().description is None
    assert manifest(description=None).description is None
    at_limit = "d" * MAX_DESCRIPTION_LENGTH
    assert manifest(description=at_limit).description == at_limit


@pytest.mark.parametrize("description", [
    "", "   ", "d" * (MAX_DESCRIPTION_LENGTH + 1), 42, ["a list"], {"en": "an object"}, True,
])
def test_a_description_basic_info_could_not_take_is_left_out_without_failing_the_build(
    description: object,
) -> None:
    assert manifest(description=description).description is None


def test_the_manifest_description_is_bounded_as_basic_info_is() -> None:
    with pytest.raises(ValidationError, match="at most 1000 characters"):
        AppManifest(name="C", version="1.0.0", pages=["p"], description="d" * 1001)
    with pytest.raises(ValidationError, match="at most 1000 characters"):
        BasicInfo(name="C", description="d" * 1001)


def test_packages_recorded_before_the_field_still_load() -> None:
    """PackageFacts in histories and carried state recorded before `description` existed."""
    recorded = {"sha256": "0" * 64, "size_bytes": 10, "uncompressed_bytes": 20, "file_count": 2,
                "artifact_path": "/a.zip",
                "manifest": {"name": "C", "version": "1.0.0", "pages": ["p"],
                             "min_base_version": None, "jsapis": []}}
    assert PackageFacts.model_validate(recorded).manifest.description is None
