"""Catalog rows the benchmarks need before they start, written with the catalog's own
functions (catalog.releases.record_transition) rather than through Temporal: a released
previous version per mini program, so that each benchmarked release's full release archives one."""

import hashlib
import uuid
from datetime import UTC, datetime

import asyncpg

from mpr.catalog.releases import record_transition
from mpr.domain.release.models import AppManifest, Environment, PackageFacts, Rollout
from mpr.domain.release.records import CatalogTransition, ReleaseEvent, ReleaseRow
from mpr.domain.release.release_id import release_id
from mpr.domain.release.stages import Stage


async def seed_stable(pool: asyncpg.Pool, program: str, target_app: str, version: str,
                      workspace: str) -> str:
    """Record `version` of `program` as released and stable on the production channel."""
    rid = release_id(program, version, target_app, Environment.PRODUCTION)
    now = datetime.now(UTC)
    package = PackageFacts(
        sha256=hashlib.sha256(rid.encode()).hexdigest(), size_bytes=1024,
        uncompressed_bytes=4096, file_count=3, artifact_path=f"/seeded/{rid}.zip",
        manifest=AppManifest(name="Bench Shop", version=version, pages=["pages/index/index"]),
    )
    row = ReleaseRow(
        release_id=rid, mini_program_id=program, version=version, target_app=target_app,
        environment=Environment.PRODUCTION, workspace_id=workspace, requested_by="dev",
        stage=Stage.RELEASED, percent=100, package_sha256=package.sha256, first_release=True,
        at=now,
    )
    event = ReleaseEvent(
        event_id=str(uuid.uuid4()), release_id=rid, seq=1, command="seeded_by_bench",
        actor="bench", accepted=True, stage_before=Stage.BUILDING, stage_after=Stage.RELEASED,
        at=now,
    )
    result = await record_transition(pool, CatalogTransition(
        event=event, release=row, package=package, promote=True))
    if not result.applied:
        raise RuntimeError(f"could not seed {rid}: {result.reason}")
    return rid


class Candidate:
    """A candidate version served in grayscale on a production channel, whose percent the
    benchmark moves through the catalog's real write (the one set_grayscale makes)."""

    def __init__(self, program: str, target_app: str, version: str, workspace: str) -> None:
        self.release_id = release_id(program, version, target_app, Environment.PRODUCTION)
        self.seq = 0
        self.row = ReleaseRow(
            release_id=self.release_id, mini_program_id=program, version=version,
            target_app=target_app, environment=Environment.PRODUCTION, workspace_id=workspace,
            requested_by="dev", stage=Stage.GRAYSCALE, percent=0, package_sha256=None,
            first_release=False, at=datetime.now(UTC),
        )

    async def set_percent(self, pool: asyncpg.Pool, percent: int) -> None:
        self.seq += 1
        now = datetime.now(UTC)
        row = self.row.model_copy(update={"percent": percent, "at": now})
        event = ReleaseEvent(
            event_id=str(uuid.uuid4()), release_id=self.release_id, seq=self.seq,
            command="set_grayscale", actor="bench", accepted=True,
            stage_before=Stage.GRAYSCALE, stage_after=Stage.GRAYSCALE, at=now,
        )
        rollout = Rollout(candidate_version=row.version, candidate_release_id=self.release_id,
                          percent=percent, whitelist=[])
        result = await record_transition(pool, CatalogTransition(
            event=event, release=row, rollout=rollout))
        if not result.applied:
            raise RuntimeError(f"could not move {self.release_id} to {percent}%: "
                               f"{result.reason}")
        self.row = row
