"""Builders for catalog writes, shaped like the ones the release workflow sends."""

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from mpr.catalog.releases import record_transition
from mpr.domain.release.models import (
    AppManifest,
    Environment,
    PackageFacts,
    ReleaseContextRequest,
    Reviewer,
    Rollout,
    StartInput,
)
from mpr.domain.release.records import (
    CatalogTransition,
    ReleaseEvent,
    ReleaseRow,
    ReviewRound,
    TransitionResult,
)
from mpr.domain.release.release_id import release_id
from mpr.domain.release.stages import Stage

START = datetime(2025, 1, 1, tzinfo=UTC)
BOTH = [Reviewer.PLATFORM, Reviewer.PARTNER_APP]


def package(content: str = "bundle") -> PackageFacts:
    return PackageFacts(
        sha256=hashlib.sha256(content.encode()).hexdigest(),
        size_bytes=1024,
        uncompressed_bytes=4096,
        file_count=3,
        artifact_path=f"/artifacts/{content}.zip",
        manifest=AppManifest(name="demo", version="1.0.0", pages=["pages/index"]),
    )


def context_request(
    version: str = "2.0.0",
    *,
    app: str = "gopay",
    environment: Environment = Environment.PRODUCTION,
    workspace: str = "ws",
) -> ReleaseContextRequest:
    start = StartInput(
        mini_program_id="prog",
        version=version,
        target_app=app,
        environment=environment,
        workspace_id=workspace,
        requested_by="dev",
        source="git@example.com:prog.git#main",
    )
    return ReleaseContextRequest(
        release_id=release_id("prog", version, app, environment), request=start
    )


class Release:
    """One release's catalog writes, in order, each with a fresh event id."""

    def __init__(
        self,
        version: str = "1.0.0",
        *,
        program: str = "prog",
        app: str = "gopay",
        environment: Environment = Environment.PRODUCTION,
        workspace: str = "ws",
        start: datetime = START,
    ) -> None:
        self.seq = 0
        self.start = start
        self.row = ReleaseRow(
            release_id=release_id(program, version, app, environment),
            mini_program_id=program,
            version=version,
            target_app=app,
            environment=environment,
            workspace_id=workspace,
            requested_by="dev",
            stage=Stage.BUILDING,
            percent=0,
            package_sha256=None,
            first_release=True,
            at=start,
        )

    @property
    def release_id(self) -> str:
        return self.row.release_id

    def to(self, stage: Stage, *, command: str = "move", **changes: Any) -> CatalogTransition:
        """The transition moving this release to `stage`; `changes` are CatalogTransition
        fields, plus `percent` and `package_sha256` for the release row."""
        self.seq += 1
        at = self.start + timedelta(seconds=self.seq)
        row_changes: dict[str, Any] = {
            k: changes.pop(k) for k in ("percent", "package_sha256") if k in changes
        }
        return CatalogTransition(
            event=self.event(command, stage, at=at),
            release=self.row.model_copy(update={"stage": stage, "at": at, **row_changes}),
            **changes,
        )

    def refused(self, command: str = "approve_review") -> CatalogTransition:
        self.seq += 1
        event = self.event(command, self.row.stage, at=self.start + timedelta(seconds=self.seq))
        return CatalogTransition(
            event=event.model_copy(update={"accepted": False, "reason": "not allowed"})
        )

    def event(self, command: str, stage_after: Stage, *, at: datetime) -> ReleaseEvent:
        return ReleaseEvent(
            event_id=str(uuid.uuid4()),
            release_id=self.release_id,
            seq=self.seq,
            command=command,
            actor="dev",
            accepted=True,
            stage_before=self.row.stage,
            stage_after=stage_after,
            payload={"note": "test"},
            at=at,
        )

    async def record(self, pool: asyncpg.Pool, transition: CatalogTransition) -> TransitionResult:
        result = await record_transition(pool, transition)
        if result.applied and transition.release is not None:
            self.row = transition.release
        return result

    async def move(self, pool: asyncpg.Pool, stage: Stage, **changes: Any) -> TransitionResult:
        return await self.record(pool, self.to(stage, **changes))


async def to_review(pool: asyncpg.Pool, release: Release) -> TransitionResult:
    """Build, test and apply: the release ends UNDER_REVIEW (if the channel is free)."""
    built = package(release.release_id)
    await release.move(
        pool, Stage.COMPATIBILITY_TESTING, package=built, package_sha256=built.sha256
    )
    await release.move(pool, Stage.READY_TO_APPLY)
    return await release.move(
        pool, Stage.UNDER_REVIEW, open_reviews=ReviewRound(round=1, organisations=BOTH)
    )


async def to_released(pool: asyncpg.Pool, release: Release) -> None:
    assert (await to_review(pool, release)).applied
    await release.move(pool, Stage.RELEASE_PREPARATION)
    await release.move(
        pool,
        Stage.GRAYSCALE,
        percent=10,
        rollout=Rollout(
            candidate_version=release.row.version,
            candidate_release_id=release.release_id,
            percent=10,
            whitelist=[],
        ),
    )
    await release.move(pool, Stage.RELEASED, percent=100, rollout=cleared(), promote=True)


def cleared() -> Rollout:
    return Rollout(candidate_version=None, candidate_release_id=None, percent=0, whitelist=[])
