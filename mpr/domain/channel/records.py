"""What the channel workflow asks the catalog to write, one transaction per channel event."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from mpr.domain.channel.models import ChannelKey, ChannelView, Takedown
from mpr.domain.channel.stages import ChannelState, TakedownKind
from mpr.domain.core.models import CLAIMED_ACTOR


class ChannelEvent(BaseModel):
    """One audit row of a channel; `event_id` is the idempotency key."""

    event_id: str
    key: ChannelKey
    seq: int
    command: str
    actor: str | None
    claimed_actor: str | None = CLAIMED_ACTOR
    actor_kind: TakedownKind | None = None
    """As which kind of actor an accepted take_offline or bring_online was sent."""
    accepted: bool
    reason: str | None = None
    state_before: ChannelState
    state_after: ChannelState
    payload: dict[str, Any] | None = None
    at: datetime


class RollbackChange(BaseModel):
    from_release_id: str
    from_version: str
    to_release_id: str
    to_version: str


class ChannelTransition(BaseModel):
    """Everything one channel event changes; nothing but the event when refused."""

    event: ChannelEvent
    expected_revision: int | None = None
    """The channel row's revision the decision was made on; None for a refusal."""
    rollback: RollbackChange | None = None
    takedown: Takedown | None = None
    online: bool = False
    """Lift the takedown."""


class ChannelTransitionResult(BaseModel):
    applied: bool
    reason: str | None = None
    """Why the catalog did not apply it (the channel changed since the decision)."""
    view: ChannelView | None = None
    """The channel as the catalog has it after an accepted event (None after a refused
    command, which changed nothing)."""

    def refusal(self) -> str:
        return self.reason or "the catalog refused the change"
