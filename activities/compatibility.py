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
"""

import asyncio
import json
from importlib import resources
from pathlib import Path

from structlog.contextvars import bound_contextvars
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.bundle import BundleUnreadable, read_bundle
from activities.progress import Progress, heartbeating
from domain.compatibility import CompatibilityTables, UnknownCell, evaluate_cell
from domain.manifest import ManifestError, decode_manifest, validate_manifest
from domain.models import CellResult, CellTestRequest, PackageFacts
from infra.logging import get_logger

# Well inside the workflow's CELL_HEARTBEAT (the SDK sends at most one per 0.8 x that timeout).
HEARTBEAT_EVERY_SECONDS = 2.0
ARTIFACT_MISSING = "ArtifactMissing"
UNKNOWN_CELL = "UnknownCell"
TABLE_FILES = {
    "networks": "networks.json",
    "devices": "devices.json",
    "operating_systems": "os_support.json",
}

log = get_logger(__name__)


def load_tables() -> CompatibilityTables:
    """The tables shipped in domain/data, validated (see domain/data/README.md)."""
    data = resources.files("domain") / "data"
    return CompatibilityTables.model_validate(
        {
            field: json.loads((data / name).read_text(encoding="utf-8"))
            for field, name in TABLE_FILES.items()
        }
    )


class ArtifactMismatch(Exception):
    """The stored bundle is readable but is not the package the build reported."""


class CompatibilityActivities:
    def __init__(self, tables: CompatibilityTables) -> None:
        self._tables = tables

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
                    package = await asyncio.to_thread(measure_artifact, request.package)
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
