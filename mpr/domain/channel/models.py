"""Typed models of a channel, shared by its workflow, activities, catalog and clients.

A channel is where versions of one mini program are served: (program, target app,
environment). Its workflow decides on a `ChannelView`, what the catalog says of the channel
when a command arrives, so that releases reaching RELEASED meanwhile are never missed.
"""

from datetime import datetime

from pydantic import BaseModel, Field

from mpr.domain.channel.stages import ROLLING_OUT_STAGES, ChannelState, TakedownKind, VersionStatus
from mpr.domain.core.identity import IdentityCheck, IdentityVerdict
from mpr.domain.core.models import CLAIMED_ACTOR, IDENTIFIER, Environment, Strict

PREFIX = "channel"
RECENT_FOR_ROLLBACK = 5
"""`rollback to_version` names one of the last five versions released on the channel."""
VERSIONS_KEPT = 20
"""The most recently released versions a view holds (the stable history's too, if older)."""
STABLE_HISTORY_KEPT = 50
"""How far back a view remembers which versions were stable, for repeated rollbacks."""
CHANGES_KEPT = 10
"""The most recent changes a view holds per version (the catalog keeps them all)."""


class ChannelKey(Strict):
    mini_program_id: str = Field(pattern=IDENTIFIER)
    target_app: str = Field(pattern=IDENTIFIER)
    environment: Environment = Environment.PRODUCTION

    @property
    def workflow_id(self) -> str:
        return channel_id(self.mini_program_id, self.target_app, self.environment)

    @property
    def label(self) -> str:
        return f"{self.mini_program_id}/{self.target_app}/{self.environment.value}"


def channel_id(mini_program_id: str, target_app: str, environment: str) -> str:
    return f"{PREFIX}:{mini_program_id}:{target_app}:{Environment(environment).value}"


def parse_channel_id(value: str) -> ChannelKey:
    parts = value.split(":")
    if len(parts) != 4 or parts[0] != PREFIX:
        raise ValueError(f"not a channel id: {value!r} "
                         "(expected channel:{mini_program_id}:{target_app}:{environment})")
    return ChannelKey(mini_program_id=parts[1], target_app=parts[2], environment=parts[3])


class Takedown(BaseModel):
    kind: TakedownKind
    reason: str
    by: str
    at: datetime


class InFlight(BaseModel):
    """The release of the channel between UNDER_REVIEW and GRAYSCALE, if any."""

    release_id: str
    version: str
    stage: str
    percent: int

    @property
    def rolling_out(self) -> bool:
        return self.stage in ROLLING_OUT_STAGES


class VersionChange(BaseModel):
    change: str
    """released, archived, rolled_back or restored."""
    at: datetime
    by: str | None
    reason: str | None = None


class ReleasedVersion(BaseModel):
    version: str
    release_id: str
    status: VersionStatus
    released_at: datetime
    released_by: str | None
    package_sha256: str | None
    bundle_present: bool
    """Its bundle is still in the artifact store: only then can it be served again."""
    changes: list[VersionChange] = []
    """Newest first, at most CHANGES_KEPT."""


class ChannelView(BaseModel):
    """What the catalog says of a channel: what the rules decide on."""

    workspace_id: str
    stable_version: str | None = None
    stable_release_id: str | None = None
    takedown: Takedown | None = None
    in_flight: InFlight | None = None
    released: list[ReleasedVersion] = []
    """Newest release first: the last VERSIONS_KEPT, and every version in stable_history."""
    stable_history: list[str] = []
    """Release ids, newest first, each time one became stable (released or restored)."""
    revision: int = 0
    """The channel row's revision: a write decided on this view applies only if unchanged."""

    @property
    def state(self) -> ChannelState:
        if self.stable_release_id is None:
            return ChannelState.NOT_RELEASED
        return ChannelState.OFFLINE if self.takedown else ChannelState.ONLINE

    def version(self, release_id: str) -> ReleasedVersion | None:
        return next((v for v in self.released if v.release_id == release_id), None)


class LastRollback(BaseModel):
    from_version: str
    to_version: str
    by: str
    reason: str
    at: datetime


class ChannelStart(Strict):
    """The start input: the channel alone. Starting one acts on nothing (it reads the
    catalog), so a release that reached RELEASED starts it without a user's identity."""

    mini_program_id: str = Field(pattern=IDENTIFIER)
    target_app: str = Field(pattern=IDENTIFIER)
    environment: Environment = Environment.PRODUCTION

    @property
    def key(self) -> ChannelKey:
        return ChannelKey(mini_program_id=self.mini_program_id, target_app=self.target_app,
                          environment=self.environment)


class ChannelAuthentication(IdentityCheck):
    """Verify who sent a channel command and load their roles on the channel, with the view
    the command is decided on."""

    key: ChannelKey


class ChannelAuditEntry(BaseModel):
    seq: int
    event_id: str
    command: str
    actor: str | None
    claimed_actor: str | None = CLAIMED_ACTOR
    accepted: bool
    reason: str | None = None
    state_before: ChannelState
    state_after: ChannelState
    at: datetime


class ChannelVersions(BaseModel):
    """The `versions` query: the channel's released versions newest first, as of a time."""

    as_of: datetime
    versions: list[ReleasedVersion]


class ChannelVerdict(IdentityVerdict):
    """Who sent a channel command, with the channel as the catalog has it when it arrived:
    the command is decided on that, never on what the workflow saw before."""

    view: ChannelView | None = None


class ChannelNotice(Strict):
    """Tell a channel to read the catalog again (a release of it reached RELEASED), starting
    its workflow if it has none: a message between workflows, which changes nothing itself."""

    key: ChannelKey
    task_queue: str
    release_id: str
