"""In-memory stand-ins for the activities, with the same names and types as the real ones.

They keep just enough of the catalog (roles, events, the channel hold) for the workflow's
behaviour to be observable; the real activities are tested against PostgreSQL elsewhere.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.identity import Authenticator
from mpr.domain.channel.models import ChannelNotice
from mpr.domain.core.identity import IdentityVerdict
from mpr.domain.core.models import Role
from mpr.domain.release.models import (
    ActorRolesRequest,
    AppManifest,
    BuildRequest,
    CellCheck,
    CellResult,
    CellTestRequest,
    Channel,
    PackageFacts,
    ReleaseAuthentication,
    ReleaseContext,
    ReleaseContextRequest,
    Reviewer,
    TargetAppPolicy,
)
from mpr.domain.release.records import CatalogTransition, ReleaseRow, TransitionResult
from mpr.domain.release.stages import CHANNEL_HOLDING_STAGES

POLICIES = {
    "alipaycn": TargetAppPolicy(
        target_app="alipaycn",
        required_reviewers=[Reviewer.PLATFORM, Reviewer.PARTNER_APP],
        first_release_full_only=False,
        whitelist_allowed=False,
    ),
    "gopay": TargetAppPolicy(
        target_app="gopay",
        required_reviewers=[Reviewer.PARTNER_APP],
        first_release_full_only=True,
        whitelist_allowed=True,
    ),
}

# Who holds which role in the workflow tests.
MEMBERS = {
    "dev": {Role.DEVELOPER},
    "owner": {Role.OWNER},
    "admin": {Role.ADMIN},
    "pa": {Role.PROGRAM_ADMIN},
    "platform-rev": {Role.PLATFORM_REVIEWER},
    "partner-rev": {Role.PARTNER_REVIEWER},
}


@dataclass
class FakeCatalog:
    roles: dict[str, set[Role]] = field(default_factory=dict)
    transitions: list[CatalogTransition] = field(default_factory=list)
    holders: dict[tuple[str, str, str], str] = field(default_factory=dict)
    stable: dict[tuple[str, str, str], str] = field(default_factory=dict)
    builds_wait_for: asyncio.Event | None = None
    """When set, builds run until the event is set (or the activity is cancelled)."""
    failing_cells: set[str] = field(default_factory=set)
    writes_wait_for: asyncio.Event | None = None
    """When set, catalog writes wait until the event is set (a database outage)."""
    refused_commands: set[str] = field(default_factory=set)
    reads_down: bool = False
    """When set, identity checks fail as reads do while the database is down (and retry)."""
    failed_reads: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    """One item per identity check failed while `reads_down`."""
    build_started: int = 0
    identity: Authenticator = field(default_factory=lambda: Authenticator(None))
    """MPR_AUTH=off unless a test verifies identities (tests/identity.py)."""
    takedowns: dict[tuple[str, str, str], str] = field(default_factory=dict)
    """Why each channel taken offline is (channel_fakes.FakeChannelCatalog keeps it)."""
    promoted: Callable[[ReleaseRow], None] | None = None
    """Told of every release made its channel's stable version (a channel fake follows)."""
    notices: list[ChannelNotice] = field(default_factory=list)
    """The channels told that a release of theirs reached RELEASED."""

    @activity.defn(name="load_release_context")
    async def load_release_context(self, request: ReleaseContextRequest) -> ReleaseContext:
        start = request.request
        if start.target_app not in POLICIES:
            raise ApplicationError(
                f"unknown target app {start.target_app!r}", type="UnknownTargetApp",
                non_retryable=True,
            )
        previous = self.stable.get((start.mini_program_id, start.target_app, start.environment))
        return ReleaseContext(policy=POLICIES[start.target_app], first_release=previous is None,
                              previous_stable_version=previous)

    @activity.defn(name="authenticate_release_actor")
    async def authenticate_release_actor(self, request: ReleaseAuthentication) -> IdentityVerdict:
        if self.reads_down:
            self.failed_reads.put_nowait(None)
            raise ConnectionRefusedError("the catalog's database is down")
        return await self.identity.verdict(request, self._roles_of)

    async def _roles_of(self, subject: str) -> list[Role]:
        return sorted(self.roles.get(subject, set()))

    @activity.defn(name="load_actor_roles")
    async def load_actor_roles(self, request: ActorRolesRequest) -> list[Role]:
        return sorted(self.roles.get(request.actor, set()))

    @activity.defn(name="record_transition")
    async def record_transition(self, transition: CatalogTransition) -> TransitionResult:
        if self.writes_wait_for is not None:
            await self.writes_wait_for.wait()
        if any(t.event.event_id == transition.event.event_id for t in self.transitions):
            return TransitionResult(applied=True)
        if transition.event.command in self.refused_commands:
            raise ApplicationError("check constraint violated", type="CatalogRejected",
                                   non_retryable=True)
        release = transition.release
        if release is not None:
            key = (release.mini_program_id, release.target_app, release.environment.value)
            holder = self.holders.get(key)
            if release.stage in CHANNEL_HOLDING_STAGES:
                if holder not in (None, release.release_id):
                    return TransitionResult(
                        applied=False, blocked_by=holder,
                        reason=f"release {holder} is already between UNDER_REVIEW and GRAYSCALE",
                    )
                self.holders[key] = release.release_id
            elif holder == release.release_id:
                del self.holders[key]
            if transition.promote:
                self.stable[key] = release.version
                if self.promoted is not None:
                    self.promoted(release)
        self.transitions.append(transition)
        return TransitionResult(applied=True)

    @activity.defn(name="channel_takedown")
    async def channel_takedown(self, channel: Channel) -> str | None:
        return self.takedowns.get((channel.mini_program_id, channel.target_app,
                                   channel.environment.value))

    @activity.defn(name="notify_channel")
    async def notify_channel(self, notice: ChannelNotice) -> str:
        self.notices.append(notice)
        return ""

    @activity.defn(name="build_package")
    async def build_package(self, request: BuildRequest) -> PackageFacts:
        self.build_started += 1
        if self.builds_wait_for is not None:
            await self.builds_wait_for.wait()
        if "broken" in request.source:
            raise ApplicationError(
                "page 'pages/cart/cart' has no file (looked for pages/cart/cart.*)",
                type="InvalidPackage", non_retryable=True,
            )
        return PackageFacts(
            sha256="ab" * 32, size_bytes=120_000, uncompressed_bytes=300_000, file_count=12,
            artifact_path=f"/artifacts/{request.version}.zip",
            manifest=AppManifest(name="Coffee", version=request.version, pages=["pages/index"]),
        )

    @activity.defn(name="test_compatibility_cell")
    async def test_compatibility_cell(self, request: CellTestRequest) -> CellResult:
        label = request.cell.label
        verdict = "fail" if label in self.failing_cells else "pass"
        detail = "download too slow" if verdict == "fail" else "ok"
        check = CellCheck(name="download", verdict=verdict, detail=detail)
        return CellResult(cell=request.cell, verdict=verdict, checks=[check])

    @property
    def activities(self) -> list[object]:
        return [self.load_release_context, self.authenticate_release_actor,
                self.load_actor_roles, self.record_transition, self.channel_takedown,
                self.notify_channel, self.build_package, self.test_compatibility_cell]

    def events(self, command: str | None = None) -> list[CatalogTransition]:
        return [t for t in self.transitions if command is None or t.event.command == command]
