"""The whole state of one release, and the read-only view operators query."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from mpr.domain.core.ledger import Ledger
from mpr.domain.core.models import LastRejection
from mpr.domain.release.models import (
    Approval,
    AuditEntry,
    Channel,
    CompatibilityReport,
    CompatibilitySummary,
    Environment,
    PackageFacts,
    ReleaseConfig,
    Reviewer,
    Rollout,
    StartInput,
    TargetAppPolicy,
)
from mpr.domain.release.records import ReleaseRow
from mpr.domain.release.stages import Stage


class Work(StrEnum):
    """Long-running work the release is waiting for."""

    BUILD = "BUILD"
    COMPATIBILITY = "COMPATIBILITY"


class ReviewRejection(BaseModel):
    reviewer: Reviewer
    actor: str
    reason: str
    at: datetime


class ReleaseState(BaseModel):
    """Everything the release knows; carried across continue-as-new beside its ledger."""

    release_id: str
    request: StartInput
    policy: TargetAppPolicy
    first_release: bool
    previous_stable_version: str | None
    stage: Stage
    pending_work: Work | None
    source: str
    config: ReleaseConfig
    percent: int = 0
    whitelist: list[str] = []
    package: PackageFacts | None = None
    build_error: str | None = None
    compatibility: CompatibilityReport | None = None
    review_round: int = 0
    approvals: dict[Reviewer, Approval] = {}
    review_rejection: ReviewRejection | None = None
    cancel_reason: str | None = None
    created_at: datetime
    updated_at: datetime
    stage_changed_at: datetime
    released_at: datetime | None = None

    @property
    def full_release_only(self) -> bool:
        """Seed 002: on a first release some target apps allow only the official release."""
        return self.first_release and self.policy.first_release_full_only

    def rollout(self) -> Rollout:
        candidate = self.stage not in (Stage.CANCELED, Stage.RELEASED)
        return Rollout(
            candidate_version=self.request.version if candidate else None,
            candidate_release_id=self.release_id if candidate else None,
            percent=self.percent if candidate else 0,
            whitelist=list(self.whitelist) if candidate else [],
        )

    @property
    def channel(self) -> Channel:
        request = self.request
        return Channel(mini_program_id=request.mini_program_id, target_app=request.target_app,
                       environment=request.environment)

    def catalog_row(self) -> ReleaseRow:
        request = self.request
        return ReleaseRow(
            release_id=self.release_id,
            mini_program_id=request.mini_program_id,
            version=request.version,
            target_app=request.target_app,
            environment=request.environment,
            workspace_id=request.workspace_id,
            requested_by=request.requester,
            stage=self.stage,
            percent=self.percent,
            package_sha256=self.package.sha256 if self.package else None,
            first_release=self.first_release,
            at=self.updated_at,
        )

    def status(self, ledger: "ReleaseLedger") -> "ReleaseStatus":
        request = self.request
        return ReleaseStatus(
            release_id=self.release_id,
            mini_program_id=request.mini_program_id,
            version=request.version,
            target_app=request.target_app,
            environment=request.environment,
            workspace_id=request.workspace_id,
            requested_by=request.requester,
            stage=self.stage,
            percent=self.percent,
            grayscale_ladder=self.policy.grayscale_ladder,
            first_release=self.first_release,
            full_release_only=self.full_release_only,
            whitelist_allowed=self.policy.whitelist_allowed and not self.full_release_only,
            whitelist_size=len(self.whitelist),
            required_reviewers=self.policy.required_reviewers,
            review_round=self.review_round,
            approvals=self.approvals,
            review_rejection=self.review_rejection,
            pending_work=self.pending_work,
            source=self.source,
            package=self.package,
            build_error=self.build_error,
            compatibility=self.compatibility.summary() if self.compatibility else None,
            config=self.config,
            previous_stable_version=self.previous_stable_version,
            last_rejection=ledger.last_rejection,
            cancel_reason=self.cancel_reason,
            audit_count=ledger.count,
            created_at=self.created_at,
            updated_at=self.updated_at,
            stage_changed_at=self.stage_changed_at,
            released_at=self.released_at,
        )


class ReleaseStatus(BaseModel):
    """The `status` query: what an operator needs to decide the next step.

    It carries the whitelist's size, never its user ids (personal data).
    """

    release_id: str
    mini_program_id: str
    version: str
    target_app: str
    environment: Environment
    workspace_id: str
    requested_by: str
    stage: Stage
    percent: int
    grayscale_ladder: list[int]
    first_release: bool
    full_release_only: bool
    whitelist_allowed: bool
    whitelist_size: int
    required_reviewers: list[Reviewer]
    review_round: int
    approvals: dict[Reviewer, Approval]
    review_rejection: ReviewRejection | None
    pending_work: Work | None
    source: str
    package: PackageFacts | None
    build_error: str | None
    compatibility: CompatibilitySummary | None
    config: ReleaseConfig
    previous_stable_version: str | None
    last_rejection: LastRejection | None
    cancel_reason: str | None
    audit_count: int
    created_at: datetime
    updated_at: datetime
    stage_changed_at: datetime
    released_at: datetime | None


class AuditLog(BaseModel):
    """The `audit_log` query: the most recent entries; the catalog holds every one."""

    total: int
    entries: list[AuditEntry]


ReleaseLedger = Ledger[AuditEntry]
