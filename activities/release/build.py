"""The build_package activity: untrusted source -> validated, deterministic, stored bundle.

Reading (package_source.py), validating app.json (mpr/domain/release/manifest.py) and
zipping (bundle.py) are blocking, so they run in a worker thread while the event
loop heartbeats the progress. A bad package is the developer's to fix, not something a retry
can cure: it fails with a non-retryable ApplicationError of type "InvalidPackage" listing
every problem. Anything else (a full disk, a permission error) stays retryable.

A source is named by whoever starts or rebuilds a release, so the worker reads it only inside
the directories it is configured with (BUILD_SOURCE_ROOTS): a release cannot make the worker
package /etc or another team's checkout. The check is made on the resolved path, so symbolic
links and `..` cannot step outside.
"""

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from structlog.contextvars import bound_contextvars
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.progress import Progress, heartbeating
from activities.release.bundle import bundle_bytes, store_bundle
from activities.release.package_source import (
    DEFAULT_LIMITS,
    Limits,
    PackageSourceError,
    read_source,
)
from mpr.domain.release.manifest import ManifestError, manifest_from_files
from mpr.domain.release.models import BuildRequest, PackageFacts
from mpr.infra.logging import get_logger

HEARTBEAT_EVERY_SECONDS = 2.0
INVALID_PACKAGE = "InvalidPackage"

log = get_logger(__name__)


class BuildActivities:
    def __init__(
        self,
        artifact_dir: Path,
        source_roots: Sequence[Path],
        limits: Limits = DEFAULT_LIMITS,
        heartbeat_every_seconds: float = HEARTBEAT_EVERY_SECONDS,
    ) -> None:
        self._artifact_dir = artifact_dir
        self._source_roots = [root.resolve() for root in source_roots]
        self._limits = limits
        self._heartbeat_every_seconds = heartbeat_every_seconds

    @activity.defn(name="build_package")
    async def build_package(self, request: BuildRequest) -> PackageFacts:
        with bound_contextvars(
            activity="build_package",
            workflow_id=activity.info().workflow_id,
            release_id=request.release_id,
        ):
            started = time.monotonic()
            log.info("build started", source=request.source, version=request.version)
            progress = Progress()
            try:
                async with heartbeating(progress, self._heartbeat_every_seconds):
                    package = await asyncio.to_thread(self._build, request, progress)
            except (PackageSourceError, ManifestError) as error:
                log.warning("package refused", problems=error.problems)
                raise ApplicationError(
                    "; ".join(error.problems),
                    error.problems,
                    type=INVALID_PACKAGE,
                    non_retryable=True,
                ) from error
            log.info(
                "build finished",
                sha256=package.sha256,
                size_bytes=package.size_bytes,
                uncompressed_bytes=package.uncompressed_bytes,
                file_count=package.file_count,
                duration_ms=round((time.monotonic() - started) * 1000),
            )
            return package

    def _build(self, request: BuildRequest, progress: Progress) -> PackageFacts:
        """Runs in a worker thread."""
        progress.stage = "reading"
        files = read_source(self._allowed_source(request.source), self._limits, progress)
        progress.stage = "validating"
        manifest = manifest_from_files(files, request.version)
        progress.stage = "bundling"
        bundle = bundle_bytes(files, progress)
        progress.stage = "storing"
        stored = store_bundle(bundle, self._artifact_dir)
        return PackageFacts(
            sha256=stored.sha256,
            size_bytes=stored.size_bytes,
            uncompressed_bytes=sum(len(content) for content in files.values()),
            file_count=len(files),
            artifact_path=str(stored.path),
            manifest=manifest,
        )

    def _allowed_source(self, source: str) -> Path:
        resolved = Path(source).resolve()
        if any(resolved.is_relative_to(root) for root in self._source_roots):
            return resolved
        roots = ", ".join(str(root) for root in self._source_roots)
        raise PackageSourceError([
            f"source {source} is outside the directories builds may read ({roots}); "
            "put the package there or ask the platform team to add its directory to "
            "BUILD_SOURCE_ROOTS"
        ])
