"""Compatibility: the pure evaluator rule by rule, properties of verdicts, the shipped tables,
and test_compatibility_cell on real bundles through ActivityEnvironment."""

import asyncio
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.release.compatibility import CompatibilityActivities, load_tables
from mpr.domain.release.compatibility import (
    SEVERITY,
    CompatibilityTables,
    UnknownCell,
    evaluate_cell,
)
from mpr.domain.release.models import (
    DEVICE_TIERS,
    NETWORKS,
    OPERATING_SYSTEMS,
    AppManifest,
    CellResult,
    CellTestRequest,
    CompatibilityMatrix,
    CompatibilityReport,
    MatrixCell,
    PackageFacts,
    Verdict,
)
from tests.activities.conftest import Build

KiB, MiB = 1024, 1024 * 1024
TABLES = load_tables()


def package(
    size_bytes: int = 50 * KiB,
    uncompressed_bytes: int | None = None,
    min_base_version: str | None = "2.6.0",
    jsapis: tuple[str, ...] = ("my.request", "my.tradePay"),
) -> PackageFacts:
    return PackageFacts(
        sha256="0" * 64,
        size_bytes=size_bytes,
        uncompressed_bytes=uncompressed_bytes if uncompressed_bytes is not None else size_bytes * 3,
        file_count=10,
        artifact_path="/unused.zip",
        manifest=AppManifest(
            name="Shop",
            version="1.0.0",
            pages=["pages/index/index"],
            min_base_version=min_base_version,
            jsapis=list(jsapis),
        ),
    )


def check(result: CellResult, name: str) -> tuple[Verdict, str]:
    (found,) = [c for c in result.checks if c.name == name]
    return found.verdict, found.detail


def cell(os_name: str = "android", network: str = "wifi", tier: str = "high") -> MatrixCell:
    return MatrixCell(os=os_name, network=network, device_tier=tier)


# --- Rules -----------------------------------------------------------------------------------


def test_a_small_package_passes_everything() -> None:
    result = evaluate_cell(cell("ios", "4g", "mid"), package(), TABLES)
    assert result.verdict == "pass"
    assert [c.name for c in result.checks] == ["download", "base_version", "jsapis", "package_size"]
    assert [c.verdict for c in result.checks] == ["pass"] * 4


def test_a_big_package_fails_on_2g_and_low_end_devices() -> None:
    big = package(size_bytes=3 * MiB, uncompressed_bytes=9 * MiB)

    slow = evaluate_cell(cell("android", "2g", "low"), big, TABLES)

    assert slow.verdict == "fail"
    assert check(slow, "download") == (
        "fail",
        "download 504.1 s on 2g exceeds the 10.0 s budget",
    )
    assert check(slow, "package_size") == (
        "fail",
        "package 3.0 MiB exceeds the 2.0 MiB limit for low devices; "
        "unpacked 9.0 MiB exceeds the 8.0 MiB limit for low devices",
    )
    fast = evaluate_cell(cell("android", "wifi", "high"), big, TABLES)
    assert check(fast, "download") == ("pass", "download 0.9 s on wifi is within the 2.0 s target")
    assert check(fast, "package_size")[0] == "pass"


def test_a_download_between_target_and_budget_warns() -> None:
    # 2g: 50 kbit/s and 0.8 s latency; 40 KiB takes 7.4 s against a 5 s target, 10 s budget.
    result = evaluate_cell(cell(network="2g"), package(size_bytes=40 * KiB), TABLES)
    assert check(result, "download") == (
        "warn",
        "download 7.4 s on 2g is over the 5.0 s target (budget 10.0 s)",
    )


def test_size_warns_over_the_tier_target() -> None:
    result = evaluate_cell(
        cell(tier="mid"), package(size_bytes=3 * MiB, uncompressed_bytes=MiB), TABLES
    )
    assert check(result, "package_size") == (
        "warn",
        "package 3.0 MiB is over the 2.0 MiB target for mid devices",
    )


def test_an_api_unsupported_on_ios_fails_there_only() -> None:
    nfc = package(jsapis=("my.request", "my.getWifiList", "my.getNFC"))

    ios = evaluate_cell(cell("ios"), nfc, TABLES)
    android = evaluate_cell(cell("android"), nfc, TABLES)

    assert ios.verdict == "fail"
    assert check(ios, "jsapis") == ("fail", "unsupported on ios: my.getNFC, my.getWifiList")
    assert check(android, "jsapis") == ("pass", "all 3 declared APIs are supported on android")


def test_a_partially_supported_api_warns() -> None:
    bluetooth = package(jsapis=("my.startBluetoothDevicesDiscovery", "my.getNFC"))
    assert check(evaluate_cell(cell("ios"), bluetooth, TABLES), "jsapis") == (
        "fail",
        "unsupported on ios: my.getNFC; partially supported on ios: "
        "my.startBluetoothDevicesDiscovery",
    )
    only_partial = package(jsapis=("my.startBluetoothDevicesDiscovery",))
    assert check(evaluate_cell(cell("ios"), only_partial, TABLES), "jsapis") == (
        "warn",
        "partially supported on ios: my.startBluetoothDevicesDiscovery",
    )


def test_an_api_no_container_lists_fails() -> None:
    result = evaluate_cell(cell("android"), package(jsapis=("my.teleport",)), TABLES)
    assert check(result, "jsapis") == ("fail", "unsupported on android: my.teleport")


@pytest.mark.parametrize(
    ("required", "verdict", "detail"),
    [
        ("3.0.0", "fail", "needs base library 3.0.0; ios containers ship at most 2.9.3"),
        ("2.9.4", "fail", "needs base library 2.9.4; ios containers ship at most 2.9.3"),
        (
            "2.8",
            "warn",
            "needs base library 2.8; ios containers from 2.7.0 are still in use and cannot open it",
        ),
        ("2.7.0", "pass", "needs base library 2.7.0; every ios container in use has it"),
        ("1", "pass", "needs base library 1; every ios container in use has it"),
        (None, "pass", "no minBaseVersion declared"),
    ],
)
def test_min_base_version_against_the_os_containers(
    required: str | None, verdict: str, detail: str
) -> None:
    result = evaluate_cell(cell("ios"), package(min_base_version=required), TABLES)
    assert check(result, "base_version") == (verdict, detail)


def test_the_failing_summary_names_the_cell_and_the_reasons() -> None:
    result = evaluate_cell(cell("ios", "2g", "high"), package(size_bytes=100 * KiB), TABLES)
    report = CompatibilityReport(
        report_id="r", package_sha256="0" * 64, results=[result], created_at="2026-01-01T00:00:00Z"
    )
    assert report.summary().failing_cells == [
        "ios/2g/high: download 17.2 s on 2g exceeds the 10.0 s budget"
    ]


def test_a_cell_outside_the_tables_is_an_error() -> None:
    with pytest.raises(UnknownCell, match="no compatibility data for '5g'"):
        evaluate_cell(cell(network="5g"), package(), TABLES)


# --- Properties ------------------------------------------------------------------------------

cells = st.builds(
    MatrixCell,
    os=st.sampled_from(OPERATING_SYSTEMS),
    network=st.sampled_from(NETWORKS),
    device_tier=st.sampled_from(DEVICE_TIERS),
)
versions = st.none() | st.lists(st.integers(0, 12), min_size=1, max_size=3).map(
    lambda parts: ".".join(map(str, parts))
)
apis = st.lists(
    st.sampled_from([*sorted(TABLES.operating_systems["ios"].jsapis), "my.teleport"]),
    unique=True,
    max_size=5,
)
packages = st.builds(
    lambda size, ratio, version, jsapis: package(size, size * ratio, version, tuple(jsapis)),
    st.integers(0, 20 * MiB),
    st.integers(1, 8),
    versions,
    apis,
)


@given(cells, packages)
def test_the_cell_verdict_is_its_worst_check(matrix_cell: MatrixCell, facts: PackageFacts) -> None:
    result = evaluate_cell(matrix_cell, facts, TABLES)
    assert SEVERITY[result.verdict] == max(SEVERITY[c.verdict] for c in result.checks)
    assert result.cell == matrix_cell


@given(cells, packages, st.integers(0, 20 * MiB))
def test_a_smaller_package_never_gets_a_worse_size_verdict(
    matrix_cell: MatrixCell, facts: PackageFacts, smaller_by: int
) -> None:
    smaller = facts.model_copy(
        update={
            "size_bytes": max(0, facts.size_bytes - smaller_by),
            "uncompressed_bytes": max(0, facts.uncompressed_bytes - smaller_by),
        }
    )
    big, small = (
        evaluate_cell(matrix_cell, facts, TABLES),
        evaluate_cell(matrix_cell, smaller, TABLES),
    )
    for name in ("download", "package_size"):
        assert SEVERITY[check(small, name)[0]] <= SEVERITY[check(big, name)[0]]


# --- Tables ----------------------------------------------------------------------------------


def test_the_shipped_tables_cover_exactly_the_matrix() -> None:
    assert set(TABLES.networks) == set(NETWORKS)
    assert set(TABLES.devices) == set(DEVICE_TIERS)
    assert set(TABLES.operating_systems) == set(OPERATING_SYSTEMS)


def table_data() -> dict[str, Any]:
    return TABLES.model_dump()


def test_tables_missing_a_row_are_rejected() -> None:
    data = table_data()
    del data["networks"]["2g"]
    with pytest.raises(ValidationError, match="networks must cover exactly"):
        CompatibilityTables.model_validate(data)


@pytest.mark.parametrize(
    ("table", "row", "changes", "message"),
    [
        ("networks", "3g", {"warn_seconds": 9.0}, "warn_seconds must not exceed fail_seconds"),
        ("networks", "3g", {"bandwidth": 1}, "Extra inputs are not permitted"),
        ("devices", "low", {"warn_package_bytes": 10**9}, "must not exceed fail_package_bytes"),
        ("operating_systems", "ios", {"oldest_base_version": "3.0"}, "must not be newer"),
        ("operating_systems", "ios", {"latest_base_version": "v3"}, "should match pattern"),
    ],
)
def test_inconsistent_tables_are_rejected(
    table: str, row: str, changes: dict[str, object], message: str
) -> None:
    data = table_data()
    data[table][row].update(changes)
    with pytest.raises(ValidationError, match=message):
        CompatibilityTables.model_validate(data)


# --- The activity ----------------------------------------------------------------------------


async def run_cell(facts: PackageFacts, matrix_cell: MatrixCell) -> CellResult:
    activities = CompatibilityActivities(TABLES)
    request = CellTestRequest(package=facts, cell=matrix_cell)
    return await ActivityEnvironment().run(activities.test_compatibility_cell, request)


async def test_the_first_sample_passes_every_cell(build: Build, samples: Path) -> None:
    built = await build(samples / "1.0.0", "1.0.0")
    for matrix_cell in CompatibilityMatrix().cells():
        result = await run_cell(built, matrix_cell)
        assert result.verdict == "pass", result


async def test_the_update_warns_on_android_for_its_base_library(
    build: Build, samples: Path
) -> None:
    built = await build(samples / "1.1.0", "1.1.0")
    android = await run_cell(built, cell("android", "3g", "low"))
    ios = await run_cell(built, cell("ios", "3g", "low"))
    assert android.verdict == "warn"
    assert check(android, "base_version")[0] == "warn"
    assert ios.verdict == "pass"


async def test_the_cell_is_judged_on_the_artifact(build: Build, samples: Path) -> None:
    built = await build(samples / "1.1.0", "1.1.0")
    result = await run_cell(built, cell("ios", "2g", "low"))
    assert check(result, "download")[1].startswith(
        f"download {(built.size_bytes * 8 / 50_000 + 0.8):.1f} s on 2g"
    )
    assert check(result, "jsapis") == ("pass", "all 11 declared APIs are supported on ios")


async def artifact_error(facts: PackageFacts) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await run_cell(facts, cell())
    assert caught.value.type == "ArtifactMissing"
    assert caught.value.non_retryable
    return caught.value


async def test_a_missing_artifact_is_reported(build: Build, samples: Path) -> None:
    built = await build(samples / "1.0.0", "1.0.0")
    os.unlink(built.artifact_path)
    error = await artifact_error(built)
    assert error.message == f"artifact {built.artifact_path} does not exist"


async def test_a_truncated_artifact_is_reported(build: Build, samples: Path) -> None:
    built = await build(samples / "1.0.0", "1.0.0")
    os.truncate(built.artifact_path, built.size_bytes - 100)
    error = await artifact_error(built)
    assert error.message.startswith(f"artifact {built.artifact_path} is not a readable zip")


async def test_a_replaced_artifact_is_reported(build: Build, samples: Path) -> None:
    built = await build(samples / "1.0.0", "1.0.0")
    with zipfile.ZipFile(built.artifact_path, "a") as archive:
        archive.writestr("extra.js", b"console.log('injected');")
    error = await artifact_error(built)
    assert error.message.startswith(f"artifact {built.artifact_path} is not the built package:")
    assert "file_count is 16, expected 15" in error.message


async def test_facts_that_disagree_with_the_artifact_are_reported(
    build: Build, samples: Path
) -> None:
    built = await build(samples / "1.0.0", "1.0.0")
    lying = built.model_copy(update={"size_bytes": 1})
    error = await artifact_error(lying)
    assert f"size_bytes is {built.size_bytes}, expected 1" in error.message


async def test_an_unknown_cell_is_a_non_retryable_error(build: Build, samples: Path) -> None:
    built = await build(samples / "1.0.0", "1.0.0")
    with pytest.raises(ApplicationError) as caught:
        await run_cell(built, cell(os_name="symbian"))
    assert caught.value.type == "UnknownCell"
    assert caught.value.non_retryable


# --- One measurement for the cells of a bundle ------------------------------------------------


async def test_the_cells_of_a_matrix_share_one_reading_of_the_bundle(
    build: Build, samples: Path
) -> None:
    built = await build(samples / "1.1.0", "1.1.0")
    activities = CompatibilityActivities(TABLES)
    env = ActivityEnvironment()
    cells = CompatibilityMatrix().cells()

    results = await asyncio.gather(*(
        env.run(activities.test_compatibility_cell, CellTestRequest(package=built, cell=c))
        for c in cells
    ))
    again = await env.run(activities.test_compatibility_cell,
                          CellTestRequest(package=built, cell=cells[0]))

    assert activities.measurements.reads == 1
    assert [r.cell for r in results] == cells and again == results[0]
    assert results == [await run_cell(built, c) for c in cells], "as if each read it"


async def test_a_bundle_changed_after_a_reading_is_read_again_and_caught(
    build: Build, samples: Path
) -> None:
    built = await build(samples / "1.0.0", "1.0.0")
    activities = CompatibilityActivities(TABLES)
    request = CellTestRequest(package=built, cell=cell())
    assert (await ActivityEnvironment().run(activities.test_compatibility_cell, request)
            ).verdict == "pass"

    with zipfile.ZipFile(built.artifact_path, "a") as archive:
        archive.writestr("extra.js", b"console.log('injected');")
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(activities.test_compatibility_cell, request)

    assert caught.value.type == "ArtifactMissing" and "file_count is 16" in caught.value.message
    assert activities.measurements.reads == 2


async def test_a_failed_reading_is_not_kept(build: Build, samples: Path) -> None:
    built = await build(samples / "1.0.0", "1.0.0")
    activities = CompatibilityActivities(TABLES)
    request = CellTestRequest(package=built.model_copy(update={"size_bytes": 1}), cell=cell())
    for _ in range(2):
        with pytest.raises(ApplicationError):
            await ActivityEnvironment().run(activities.test_compatibility_cell, request)

    assert activities.measurements.reads == 2


async def test_other_facts_of_the_same_file_are_measured_apart(
    build: Build, samples: Path
) -> None:
    built = await build(samples / "1.0.0", "1.0.0")
    activities = CompatibilityActivities(TABLES)
    await ActivityEnvironment().run(activities.test_compatibility_cell,
                                    CellTestRequest(package=built, cell=cell()))
    lying = built.model_copy(update={"file_count": 1})
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(activities.test_compatibility_cell,
                                        CellTestRequest(package=lying, cell=cell()))

    assert "file_count is 15, expected 1" in caught.value.message


async def test_a_package_built_before_descriptions_were_read_still_matches(
    build: Build, samples: Path, tmp_path: Path
) -> None:
    """Its recorded manifest has no description, though its app.json has one: the cells of a
    release built before the change, run on a worker after it, still judge the artifact."""
    source = tmp_path / "described"
    shutil.copytree(samples / "1.0.0", source)
    manifest = json.loads((source / "app.json").read_text())
    (source / "app.json").write_text(json.dumps({**manifest, "description": "Order ahead"}))
    built = await build(source, "1.0.0")
    assert built.manifest.description == "Order ahead"
    recorded_then = built.model_copy(update={
        "manifest": built.manifest.model_copy(update={"description": None})})

    result = await run_cell(recorded_then, cell())

    assert result.verdict != "fail", result
