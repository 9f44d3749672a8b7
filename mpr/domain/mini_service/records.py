"""What the workflow asks the catalog to write, one transaction per mini service event."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from mpr.domain.core.models import CLAIMED_ACTOR
from mpr.domain.mini_service.models import MiniServiceContent, ServiceVersionSummary
from mpr.domain.mini_service.stages import ServiceStatus


class ServiceEvent(BaseModel):
    """One audit row of a mini service version; `event_id` makes writing it idempotent."""

    event_id: str
    super_app: str
    version_no: int
    seq: int
    command: str
    actor: str | None
    claimed_actor: str | None = CLAIMED_ACTOR
    accepted: bool
    reason: str | None = None
    status_before: ServiceStatus
    status_after: ServiceStatus
    payload: dict[str, Any] | None = None
    at: datetime


class ServiceRow(BaseModel):
    """The catalog's copy of a mini service version."""

    super_app: str
    version_no: int
    status: ServiceStatus
    percent: int
    content: MiniServiceContent
    testers: list[str]
    created_by: str
    duplicated_from: int | None
    at: datetime


class ServiceTransition(BaseModel):
    """Everything one event changes in the catalog, in one transaction."""

    event: ServiceEvent
    row: ServiceRow | None = None
    """None when nothing changes (a refused command)."""
    promote: bool = False
    """This version became RELEASED: the previously released one becomes ARCHIVED."""


class ServiceTransitionResult(BaseModel):
    applied: bool
    reason: str | None = None
    """Why the catalog refused the move (another version is TESTING or RELEASING)."""
    archived_version: int | None = None
    """The version this promotion archived."""
    history: list[ServiceVersionSummary] = []
    """The super app's versions after this write, newest first."""

    def refusal(self) -> str:
        return self.reason or "the catalog refused the change"
