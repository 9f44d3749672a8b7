"""The whole state of one mini service version, and the read-only views operators query."""

from datetime import datetime

from pydantic import BaseModel

from mpr.domain.core.ledger import Ledger
from mpr.domain.core.models import LastRejection
from mpr.domain.mini_service.models import (
    MiniServiceContent,
    ServiceAuditEntry,
    ServiceVersionSummary,
    mini_service_id,
)
from mpr.domain.mini_service.stages import ServiceStatus

ServiceLedger = Ledger[ServiceAuditEntry]


class MiniServiceState(BaseModel):
    """Everything a mini service version knows; carried across continue-as-new beside its
    ledger."""

    super_app: str
    version_no: int
    created_by: str
    duplicated_from: int | None
    status: ServiceStatus
    content: MiniServiceContent
    ladder: list[int]
    percent: int = 0
    testers: list[str] = []
    next_section: int = 1
    deleted_sections: list[str] = []
    removed_programs: list[str] = []
    """'section_id/mini_program_id' pairs removed in this version: they cannot come back."""
    history: list[ServiceVersionSummary] = []
    """The super app's versions as of `history_as_of`, the last catalog write."""
    history_as_of: datetime | None = None
    created_at: datetime
    updated_at: datetime
    status_changed_at: datetime
    released_at: datetime | None = None

    @property
    def workflow_id(self) -> str:
        return mini_service_id(self.super_app, self.version_no)

    def status_view(self, ledger: "ServiceLedger") -> "MiniServiceStatus":
        return MiniServiceStatus(
            workflow_id=self.workflow_id,
            super_app=self.super_app,
            version_no=self.version_no,
            status=self.status,
            percent=self.percent,
            grayscale_ladder=self.ladder,
            testers=len(self.testers),
            sections=len(self.content.sections),
            mini_programs=sum(len(s.mini_program_ids) for s in self.content.sections),
            created_by=self.created_by,
            duplicated_from=self.duplicated_from,
            last_rejection=ledger.last_rejection,
            audit_count=ledger.count,
            created_at=self.created_at,
            updated_at=self.updated_at,
            status_changed_at=self.status_changed_at,
            released_at=self.released_at,
        )


class MiniServiceStatus(BaseModel):
    """The `status` query. Tester emails are personal data: only their number is shown."""

    workflow_id: str
    super_app: str
    version_no: int
    status: ServiceStatus
    percent: int
    grayscale_ladder: list[int]
    testers: int
    sections: int
    mini_programs: int
    created_by: str
    duplicated_from: int | None
    last_rejection: LastRejection | None
    audit_count: int
    created_at: datetime
    updated_at: datetime
    status_changed_at: datetime
    released_at: datetime | None


class ServiceHistory(BaseModel):
    """The `history` query: this super app's versions, as of the last catalog write."""

    as_of: datetime | None
    versions: list[ServiceVersionSummary]
