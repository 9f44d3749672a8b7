"""An in-memory stand-in for the channel's catalog activities, with the same names and types
as the real ones (activities/channel/catalog.py), for recording histories without a database.

It keeps each channel's view as the real catalog would answer it, follows the releases a
release fake promotes, and tells that fake which channels are offline.
"""

from dataclasses import dataclass, field

from temporalio import activity

from activities.identity import Authenticator
from mpr.domain.channel.models import (
    ChannelAuthentication,
    ChannelKey,
    ChannelVerdict,
    ChannelView,
    InFlight,
    ReleasedVersion,
)
from mpr.domain.channel.records import ChannelTransition, ChannelTransitionResult
from mpr.domain.channel.stages import VersionStatus
from mpr.domain.core.models import Role
from mpr.domain.release.records import ReleaseRow
from tests.workflows.release_fakes import FakeCatalog

CHANGED = "the channel changed while the command was being decided"


@dataclass
class FakeChannelCatalog:
    releases: FakeCatalog
    workspace_id: str = "ws-1"
    views: dict[str, ChannelView] = field(default_factory=dict)
    written: dict[str, ChannelTransitionResult] = field(default_factory=dict)
    identity: Authenticator = field(default_factory=lambda: Authenticator(None))

    def __post_init__(self) -> None:
        self.releases.promoted = self.promote

    def promote(self, release: ReleaseRow) -> None:
        label = f"{release.mini_program_id}/{release.target_app}/{release.environment.value}"
        view = self.views.get(label) or ChannelView(workspace_id=self.workspace_id)
        released = [v.model_copy(update={"status": VersionStatus.ARCHIVED})
                    if v.status is VersionStatus.RELEASED else v for v in view.released]
        new = ReleasedVersion(version=release.version, release_id=release.release_id,
                              status=VersionStatus.RELEASED, released_at=release.at,
                              released_by="admin", package_sha256=release.package_sha256,
                              bundle_present=True)
        self.views[label] = view.model_copy(update={
            "stable_version": release.version, "stable_release_id": release.release_id,
            "takedown": None, "in_flight": None, "released": [new, *released],
            "stable_history": [release.release_id, *view.stable_history],
            "revision": view.revision + 1})

    def rolling_out(self, key: ChannelKey, release_id: str, version: str) -> None:
        """A release of the channel is in GRAYSCALE (as the catalog's releases table says)."""
        self.views[key.label] = self.views[key.label].model_copy(update={
            "in_flight": InFlight(release_id=release_id, version=version, stage="GRAYSCALE",
                                  percent=10)})

    @activity.defn(name="load_channel")
    async def load_channel(self, key: ChannelKey) -> ChannelView | None:
        return self.views.get(key.label)

    @activity.defn(name="authenticate_channel_actor")
    async def authenticate_channel_actor(self, request: ChannelAuthentication) -> ChannelVerdict:
        async def roles_of(subject: str) -> list[Role]:
            return sorted(self.releases.roles.get(subject, set()))

        verdict = await self.identity.verdict(request, roles_of)
        return ChannelVerdict(**verdict.model_dump(), view=self.views.get(request.key.label))

    @activity.defn(name="record_channel_transition")
    async def record_channel_transition(
        self, transition: ChannelTransition
    ) -> ChannelTransitionResult:
        event = transition.event
        if event.event_id not in self.written:
            self.written[event.event_id] = self._apply(transition)
        return self.written[event.event_id]

    def _apply(self, transition: ChannelTransition) -> ChannelTransitionResult:
        key = transition.event.key
        view = self.views[key.label]
        if not transition.event.accepted:
            return ChannelTransitionResult(applied=True)
        if transition.expected_revision != view.revision:
            return ChannelTransitionResult(applied=False, reason=CHANGED, view=view)
        changes: dict[str, object] = {"revision": view.revision + 1}
        if transition.rollback:
            change = transition.rollback
            changes |= {
                "stable_version": change.to_version, "stable_release_id": change.to_release_id,
                "stable_history": [change.to_release_id, *view.stable_history],
                "released": [
                    v.model_copy(update={"status": VersionStatus.ROLLED_BACK})
                    if v.release_id == change.from_release_id else
                    v.model_copy(update={"status": VersionStatus.RELEASED})
                    if v.release_id == change.to_release_id else v
                    for v in view.released]}
        channel = (key.mini_program_id, key.target_app, key.environment.value)
        if transition.takedown:
            changes["takedown"] = transition.takedown
            self.releases.takedowns[channel] = transition.takedown.reason
        if transition.online:
            changes["takedown"] = None
            self.releases.takedowns.pop(channel, None)
        self.views[key.label] = view.model_copy(update=changes)
        return ChannelTransitionResult(applied=True, view=self.views[key.label])

    @property
    def activities(self) -> list[object]:
        return [self.load_channel, self.authenticate_channel_actor,
                self.record_channel_transition]
