"""Benchmark 4: the build of a 50 MiB, 5,000-file source tree against `zip -r -X` of it.

The build is timed as the build activity runs it, without Temporal: read the tree
(activities.package_source.read_source), validate app.json (domain.manifest), bundle
(activities.bundle.bundle_bytes), each with its real limits and progress checks. `zip` is timed
writing its archive to a file. Runs alternate, zip first; each figure is the median. The
bundle's sha256 must be the same in every run.
"""

import hashlib
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from activities.progress import Progress
from activities.release.bundle import bundle_bytes
from activities.release.package_source import DEFAULT_LIMITS, read_source
from bench.results import Result, Target, figure
from bench.sources import TreeFacts, big_tree
from mpr.domain.release.manifest import manifest_from_files

ZIP = "/usr/bin/zip"
TIME_RATIO_TARGET = Target("ratio", "<=", 1.5)
IDENTICAL_TARGET = Target("value", ">=", 1)


@dataclass(frozen=True)
class BuildRun:
    seconds: float
    sha256: str
    size_bytes: int


def build_once(tree: Path, version: str = "1.0.0") -> BuildRun:
    progress = Progress()
    started = time.perf_counter()
    files = read_source(tree, DEFAULT_LIMITS, progress)
    manifest_from_files(files, version)
    data = bundle_bytes(files, progress)
    seconds = time.perf_counter() - started
    return BuildRun(seconds, hashlib.sha256(data).hexdigest(), len(data))


def zip_once(tree: Path, archive: Path) -> float:
    archive.unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run([ZIP, "-r", "-X", "-q", str(archive), "."], cwd=tree, check=True)
    seconds = time.perf_counter() - started
    archive.unlink()
    return seconds


def run(base: Path, rounds: int = 3) -> tuple[list[Result], dict[str, object]]:
    tree: TreeFacts = big_tree(base / "big-tree")
    zips: list[float] = []
    builds: list[BuildRun] = []
    for _ in range(rounds):
        zips.append(zip_once(tree.root, base / "zip-baseline.zip"))
        builds.append(build_once(tree.root))
    build_seconds = statistics.median(run.seconds for run in builds)
    zip_seconds = statistics.median(zips)
    identical = len({run.sha256 for run in builds}) == 1
    results = [
        figure("build_seconds_vs_zip", build_seconds, "s", zip_seconds, TIME_RATIO_TARGET),
        figure("build_byte_identical_runs", 1.0 if identical else 0.0, "bool", None,
               IDENTICAL_TARGET),
    ]
    details: dict[str, object] = {
        "files": tree.files, "bytes": tree.total_bytes,
        "incompressible_bytes": tree.incompressible_bytes,
        "build_seconds": [run.seconds for run in builds], "zip_seconds": zips,
        "bundle_sha256": sorted({run.sha256 for run in builds}),
        "bundle_bytes": builds[0].size_bytes,
    }
    return results, details
