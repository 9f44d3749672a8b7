"""Benchmark 5: the full default compatibility matrix (24 cells) against one cell alone, each
run as the release runs it (every cell one `test_compatibility_cell` activity, all started at
once, BenchMatrixRun) through the real worker, on the bundle built from the 50 MiB tree.

Each run is timed from the workflow's start to its result, one run at a time, alternating one
cell and the matrix; each figure is the median. Every run reads a bundle of its own (the same
bytes at a new path), so no run profits from an earlier one.
"""

import os
import statistics
import time
import uuid
from pathlib import Path

from temporalio.client import Client

from activities.progress import Progress
from activities.release.bundle import bundle_bytes, store_bundle
from activities.release.package_source import DEFAULT_LIMITS, read_source
from bench.results import Result, Target, figure
from bench.workflows import MATRIX_WORKFLOW
from mpr.domain.release.manifest import manifest_from_files
from mpr.domain.release.models import CellResult, CompatibilityMatrix, MatrixCell, PackageFacts

RATIO_TARGET = Target("ratio", "<=", 3)


def build_package(tree: Path, artifact_dir: Path, version: str = "1.0.0") -> PackageFacts:
    progress = Progress()
    files = read_source(tree, DEFAULT_LIMITS, progress)
    manifest = manifest_from_files(files, version)
    stored = store_bundle(bundle_bytes(files, progress), artifact_dir)
    return PackageFacts(
        sha256=stored.sha256, size_bytes=stored.size_bytes,
        uncompressed_bytes=sum(len(content) for content in files.values()),
        file_count=len(files), artifact_path=str(stored.path), manifest=manifest,
    )


def fresh_copy(package: PackageFacts, artifact_dir: Path) -> PackageFacts:
    """The same bundle at a new path (a hard link: same bytes, no copying)."""
    path = artifact_dir / "runs" / f"{uuid.uuid4().hex}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.link(package.artifact_path, path)
    return package.model_copy(update={"artifact_path": str(path)})


async def run_matrix(client: Client, task_queue: str, package: PackageFacts,
                     cells: list[MatrixCell]) -> float:
    started = time.perf_counter()
    results: list[CellResult] = await client.execute_workflow(
        MATRIX_WORKFLOW, args=[package, cells], id=f"bench-matrix-{uuid.uuid4().hex}",
        task_queue=task_queue, result_type=list[CellResult],
    )
    seconds = time.perf_counter() - started
    if len(results) != len(cells):
        raise RuntimeError(f"{len(cells)} cells asked, {len(results)} answered")
    return seconds


async def run(client: Client, task_queue: str, package: PackageFacts, artifact_dir: Path,
              rounds: int = 5) -> tuple[list[Result], dict[str, object]]:
    matrix = CompatibilityMatrix().cells()
    # Warm up the worker (its first workflow run of a type imports the sandboxed modules).
    await run_matrix(client, task_queue, fresh_copy(package, artifact_dir), matrix[:1])
    await run_matrix(client, task_queue, fresh_copy(package, artifact_dir), matrix)
    one: list[float] = []
    full: list[float] = []
    for _ in range(rounds):
        one.append(await run_matrix(client, task_queue, fresh_copy(package, artifact_dir),
                                    matrix[:1]))
        full.append(await run_matrix(client, task_queue, fresh_copy(package, artifact_dir),
                                     matrix))
    results = [figure("compatibility_matrix_seconds_vs_one_cell", statistics.median(full), "s",
                      statistics.median(one), RATIO_TARGET)]
    details: dict[str, object] = {
        "cells": len(matrix), "bundle_files": package.file_count,
        "bundle_bytes": package.size_bytes, "one_cell_seconds": one, "matrix_seconds": full,
    }
    return results, details
