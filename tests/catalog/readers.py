"""Readers of the catalog's rows that only the tests need, to check what was written."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from mpr.catalog.db import Database
from mpr.catalog.mini_services import EVENT_COLUMNS, VERSION_KEY, RecordedServiceEvent
from mpr.catalog.releases import RecordedEvent
from mpr.domain.release.models import Channel, CompatibilityReport, Environment, Reviewer


class ReviewRequest(BaseModel):
    release_id: str
    round: int
    organisation: Reviewer
    status: Literal["pending", "approved", "rejected"]
    actor: str | None
    comment: str
    requested_at: datetime
    decided_at: datetime | None


class ChannelState(BaseModel):
    mini_program_id: str
    target_app: str
    environment: Environment
    stable_version: str | None
    stable_release_id: str | None
    candidate_version: str | None
    candidate_release_id: str | None
    percent: int
    whitelist: list[str]
    revision: int
    updated_at: datetime


async def list_events(db: Database, release_id: str) -> list[RecordedEvent]:
    rows = await db.fetch(
        """
        SELECT event_id, release_id, seq, command, actor, accepted, reason, stage_before,
               stage_after, payload, at, blocked_by, claimed_actor
        FROM release_events WHERE release_id = $1 ORDER BY seq, at
        """,
        release_id,
    )
    return [RecordedEvent.model_validate(dict(row)) for row in rows]


async def list_review_requests(db: Database, release_id: str) -> list[ReviewRequest]:
    rows = await db.fetch(
        """
        SELECT release_id, round, organisation, status, actor, comment, requested_at, decided_at
        FROM review_requests WHERE release_id = $1 ORDER BY round, organisation
        """,
        release_id,
    )
    return [ReviewRequest.model_validate(dict(row)) for row in rows]


async def get_compatibility_report(db: Database, report_id: str) -> CompatibilityReport | None:
    row = await db.fetchrow(
        "SELECT report_id, package_sha256, results, created_at "
        "FROM compatibility_reports WHERE report_id = $1",
        report_id,
    )
    return CompatibilityReport.model_validate(dict(row)) if row else None


async def get_channel(db: Database, channel: Channel) -> ChannelState | None:
    row = await db.fetchrow(
        """
        SELECT mini_program_id, target_app, environment, stable_version, stable_release_id,
               candidate_version, candidate_release_id, percent, whitelist, revision, updated_at
        FROM channels
        WHERE mini_program_id = $1 AND target_app = $2 AND environment = $3
        """,
        channel.mini_program_id,
        channel.target_app,
        channel.environment.value,
    )
    return ChannelState.model_validate(dict(row)) if row else None


async def list_service_events(
    db: Database, super_app: str, version_no: int
) -> list[RecordedServiceEvent]:
    rows = await db.fetch(
        f"SELECT {EVENT_COLUMNS} FROM mini_service_events WHERE {VERSION_KEY} ORDER BY seq, at",
        super_app,
        version_no,
    )
    return [RecordedServiceEvent.model_validate(dict(row)) for row in rows]
