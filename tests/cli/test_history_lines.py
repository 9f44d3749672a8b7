"""`mpr history`'s lines for a recorded history (no server): local activities, patches and a
mini service's catalog writes read as the operator needs them."""

from mpr.cli.history import readable
from tests.workflows.test_replay_histories import HISTORIES, load


def lines_of(name: str) -> list[str]:
    history = load(HISTORIES / name)
    return readable(history.workflow_id, "run-1", ["run-1"], history).splitlines()


def with_all(lines: list[str], *parts: str) -> list[str]:
    return [line for line in lines if all(part in line for part in parts)]


def test_a_mini_service_history_shows_its_reads_patches_and_writes() -> None:
    lines = lines_of("mini_service_local_catalog_reads.v2.json")

    assert with_all(lines, "MarkerRecorded", "patch local-catalog-reads")
    assert with_all(lines, "MarkerRecorded", "local activity authenticate_service_actor #1",
                    'result={"subject":"olly","roles":["service_operator"]')
    assert with_all(lines, "MarkerRecorded", "local activity load_service_context")
    assert with_all(lines, "ActivityTaskScheduled", "record_service_transition",
                    "create by olly: DRAFT -> DRAFT")
    assert with_all(lines, "ActivityTaskScheduled", "record_service_transition",
                    "release by olly: DRAFT -> DRAFT refused: olly is not authorised")
    assert with_all(lines, "ActivityTaskScheduled", "record_service_transition",
                    "release by ada: TESTING -> RELEASED")


def test_a_history_from_before_the_patch_shows_its_reads_as_activities() -> None:
    lines = lines_of("release_verified_identity.json")

    assert not with_all(lines, "local activity")
    assert not with_all(lines, "patch local-catalog-reads")
    assert with_all(lines, "ActivityTaskScheduled", "authenticate_release_actor")
