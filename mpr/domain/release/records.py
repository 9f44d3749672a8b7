"""What the workflow asks the catalog to write, one transaction per release event."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from mpr.domain.core.models import CLAIMED_ACTOR
from mpr.domain.release.models import (
    Channel,
    CompatibilityReport,
    Environment,
    PackageFacts,
    Reviewer,
    ReviewOutcome,
    Rollout,
)
from mpr.domain.release.stages import Stage


class ReleaseEvent(BaseModel):
    """One audit row: a command (accepted or refused) or a stage change made by the system.

    `event_id` is the idempotency key: a retried write of the same event changes nothing.
    """

    event_id: str
    release_id: str
    seq: int
    command: str
    actor: str | None
    claimed_actor: str | None = CLAIMED_ACTOR
    accepted: bool
    reason: str | None = None
    stage_before: Stage
    stage_after: Stage
    payload: dict[str, Any] | None = None
    at: datetime


class ReleaseRow(BaseModel):
    """The catalog's copy of a release's progress."""

    release_id: str
    mini_program_id: str
    version: str
    target_app: str
    environment: Environment
    workspace_id: str
    requested_by: str
    stage: Stage
    percent: int
    package_sha256: str | None
    first_release: bool
    at: datetime

    @property
    def channel(self) -> Channel:
        return Channel(
            mini_program_id=self.mini_program_id,
            target_app=self.target_app,
            environment=self.environment,
        )


class ReviewRound(BaseModel):
    round: int
    organisations: list[Reviewer]


class CatalogTransition(BaseModel):
    """Everything one release event changes in the catalog, written in one transaction."""

    event: ReleaseEvent
    release: ReleaseRow | None = None
    """None when the event changes nothing (a refused command)."""
    open_reviews: ReviewRound | None = None
    review: ReviewOutcome | None = None
    rollout: Rollout | None = None
    promote: bool = False
    package: PackageFacts | None = None
    """A freshly built package to record (content-addressed: recording it twice is a no-op)."""
    compatibility_report: CompatibilityReport | None = None


class TransitionResult(BaseModel):
    applied: bool
    """False when the release row could not move (see blocked_by); the event is then a refusal."""
    blocked_by: str | None = None
    """The release that holds the channel between UNDER_REVIEW and GRAYSCALE."""
    reason: str | None = None
    """Why the transition did not happen, as recorded in the audit row."""

    def refusal(self) -> str:
        return self.reason or f"the catalog refused the change (held by {self.blocked_by})"
