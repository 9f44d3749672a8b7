"""The channel workflow's state and its `status` view."""

from datetime import datetime

from pydantic import BaseModel

from mpr.domain.channel.models import (
    ChannelAuditEntry,
    ChannelKey,
    ChannelVersions,
    ChannelView,
    InFlight,
    LastRollback,
    Takedown,
)
from mpr.domain.channel.stages import ChannelState
from mpr.domain.core.ledger import Ledger
from mpr.domain.core.models import LastRejection

RECENT_AUDIT_SHOWN = 20


class ChannelWorkflowState(BaseModel):
    """Bounded whatever the channel's age: the view holds a bounded number of versions, and
    the full history stays in the catalog."""

    key: ChannelKey
    view: ChannelView
    view_as_of: datetime
    last_rollback: LastRollback | None = None

    @property
    def state(self) -> ChannelState:
        return self.view.state

    def seen(self, view: ChannelView, at: datetime) -> "ChannelWorkflowState":
        """The state once the catalog was read again."""
        return self.model_copy(update={"view": view, "view_as_of": at})

    def status_view(self, ledger: Ledger[ChannelAuditEntry]) -> "ChannelStatus":
        view = self.view
        return ChannelStatus(
            channel_id=self.key.workflow_id, mini_program_id=self.key.mini_program_id,
            target_app=self.key.target_app, environment=self.key.environment.value,
            state=view.state, stable_version=view.stable_version,
            stable_release_id=view.stable_release_id, in_flight=view.in_flight,
            offline=view.takedown, last_rollback=self.last_rollback, as_of=self.view_as_of,
            audit_count=ledger.count, last_rejection=ledger.last_rejection,
            recent_audit=ledger.entries[-RECENT_AUDIT_SHOWN:])

    def versions(self) -> ChannelVersions:
        return ChannelVersions(as_of=self.view_as_of, versions=self.view.released)


class ChannelStatus(BaseModel):
    channel_id: str
    mini_program_id: str
    target_app: str
    environment: str
    state: ChannelState
    stable_version: str | None
    stable_release_id: str | None
    in_flight: InFlight | None
    """The release between UNDER_REVIEW and GRAYSCALE on the channel, as of `as_of`."""
    offline: Takedown | None
    """Why, by whom and as which kind of actor it was taken offline."""
    last_rollback: LastRollback | None
    as_of: datetime
    """When the catalog was last read (each command and each release reaching RELEASED)."""
    audit_count: int
    last_rejection: LastRejection | None
    recent_audit: list[ChannelAuditEntry]
