"""The test_compatibility_cell activity: one cell of the matrix, judged on the stored bundle.

The facts come from the artifact itself, not from the request: its size on disk, its unpacked
size, its file list and its app.json (re-validated). They must match what the build reported,
so a replaced or truncated artifact is caught instead of judged.

A missing or unreadable artifact fails with a non-retryable ApplicationError of type
"ArtifactMissing": bundles are immutable and written atomically before the build reports
them, so one that is absent or different now will not come back by retrying the read; the
release needs a rebuild. (This assumes every worker sees the same artifact directory.)
Other I/O errors (permissions, a flaky mount) stay retryable. A cell naming an OS, network
or device tier the tables do not describe fails with non-retryable "UnknownCell".

A cell heartbeats while it reads the artifact (off the event loop, like the build), so that the
workflow's heartbeat timeout notices a cell lost with its worker within seconds instead of
waiting out the whole start-to-close timeout.

The cells of a release all judge the same bundle, so a worker measures a bundle file once for
them: cells arriving while it is read wait for that read, and later ones reuse what it found
for as long as the file is the same file (same inode, size and modification time). Reading is
CPU-bound (the zip's central directory, the manifest against every path) and holds the GIL, so
without this the 24 cells of the default matrix would read it 24 times, one after another.
"""

import asyncio
import json
import os
from collections import OrderedDict
from importlib import resources
from pathlib import Path

from structlog.contextvars import bound_contextvars
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.progress import Progress, heartbeating
from activities.release.bundle import BundleUnreadable, read_bundle
from mpr.domain.release.compatibility import CompatibilityTables, UnknownCell, evaluate_cell
from mpr.domain.release.manifest import ManifestError, decode_manifest, validate_manifest
from mpr.domain.release.models import CellResult, CellTestRequest, PackageFacts
from mpr.infra.logging import get_logger
from mpr.infra.single_flight import SingleFlight

# Well inside the workflow's CELL_HEARTBEAT (the SDK sends at most one per 0.8 x that timeout).
HEARTBEAT_EVERY_SECONDS = 2.0
ARTIFACT_MISSING = "ArtifactMissing"
UNKNOWN_CELL = "UnknownCell"
MEASUREMENTS_KEPT = 64
"""Bundles whose measurement a worker keeps (a few hundred bytes each)."""
TABLE_FILES = {
    "networks": "networks.json",
    "devices": "devices.json",
    "operating_systems": "os_support.json",
}

log = get_logger(__name__)


def load_tables() -> CompatibilityTables:
    """The tables shipped in mpr/domain/release/data, validated (see its README.md)."""
    data = resources.files("mpr.domain.release") / "data"
    return CompatibilityTables.model_validate(
        {
            field: json.loads((data / name).read_text(encoding="utf-8"))
            for field, name in TABLE_FILES.items()
        }
    )


class ArtifactMismatch(Exception):
    """The stored bundle is readable but is not the package the build reported."""


FileIdentity = tuple[int, int, int, int]
"""(device, inode, size, modification time in ns): a file replaced or changed differs."""
MeasurementKey = tuple[str, FileIdentity, str]
"""(artifact path, its file identity, the expected facts as JSON)."""


class ArtifactMeasurements:
    """Measurements of stored bundles (measure_artifact), made once per bundle file and
    expected facts and shared by the cells that ask for them. Failures are not kept: every
    cell asking after one reads the file again."""

    def __init__(self, kept: int = MEASUREMENTS_KEPT) -> None:
        self._kept = kept
        self._measured: OrderedDict[MeasurementKey, PackageFacts] = OrderedDict()
        self._measuring: SingleFlight[MeasurementKey, PackageFacts] = SingleFlight()
        self.reads = 0
        """Bundles read (for tests and benchmarks)."""

    async def measure(self, expected: PackageFacts) -> PackageFacts:
        path = Path(expected.artifact_path)
        key = (str(path), await asyncio.to_thread(file_identity, path),
               expected.model_dump_json())
        measured = self._measured.get(key)
        if measured is not None:
            self._measured.move_to_end(key)
            return measured
        return await self._measuring.run(key, lambda: self._read(key, expected))

    async def _read(self, key: MeasurementKey, expected: PackageFacts) -> PackageFacts:
        self.reads += 1
        measured = await asyncio.to_thread(measure_artifact, expected)
        self._measured[key] = measured
        while len(self._measured) > self._kept:
            self._measured.popitem(last=False)
        return measured


def file_identity(path: Path) -> FileIdentity:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        raise BundleUnreadable(f"artifact {path} does not exist") from None
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


class CompatibilityActivities:
    def __init__(self, tables: CompatibilityTables) -> None:
        self._tables = tables
        self.measurements = ArtifactMeasurements()

    @activity.defn(name="test_compatibility_cell")
    async def test_compatibility_cell(self, request: CellTestRequest) -> CellResult:
        with bound_contextvars(
            activity="test_compatibility_cell",
            workflow_id=activity.info().workflow_id,
            cell=request.cell.label,
            package_sha256=request.package.sha256,
        ):
            log.info("cell started")
            progress = Progress()
            progress.stage = "measuring"
            try:
                async with heartbeating(progress, HEARTBEAT_EVERY_SECONDS):
                    package = await self.measurements.measure(request.package)
                result = evaluate_cell(request.cell, package, self._tables)
            except (BundleUnreadable, ArtifactMismatch) as error:
                log.warning("artifact unusable", error=str(error))
                raise ApplicationError(
                    str(error), type=ARTIFACT_MISSING, non_retryable=True
                ) from error
            except UnknownCell as error:
                raise ApplicationError(str(error), type=UNKNOWN_CELL, non_retryable=True) from error
            log.info("cell tested", verdict=result.verdict)
            return result


def measure_artifact(expected: PackageFacts) -> PackageFacts:
    """The package facts read from the artifact, which must agree with `expected`."""
    path = Path(expected.artifact_path)
    contents = read_bundle(path)
    try:
        manifest = validate_manifest(
            decode_manifest(contents.manifest), contents.paths, expected.manifest.version
        )
    except ManifestError as error:
        raise ArtifactMismatch(f"artifact {path} has an invalid app.json: {error}") from None
    if expected.manifest.description is None:
        # Packages built before app.json's description was read recorded none: the same
        # bundle read now must still match them.
        manifest = manifest.model_copy(update={"description": None})
    measured = expected.model_copy(
        update={
            "size_bytes": contents.size_bytes,
            "uncompressed_bytes": contents.uncompressed_bytes,
            "file_count": len(contents.paths),
            "manifest": manifest,
        }
    )
    differences = [
        f"{field} is {getattr(measured, field)!r}, expected {getattr(expected, field)!r}"
        for field in ("size_bytes", "uncompressed_bytes", "file_count", "manifest")
        if getattr(measured, field) != getattr(expected, field)
    ]
    if differences:
        raise ArtifactMismatch(
            f"artifact {path} is not the built package: {'; '.join(differences)}"
        )
    return measured
