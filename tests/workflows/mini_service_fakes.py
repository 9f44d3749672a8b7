"""In-memory stand-ins for the mini service catalog activities (same names and types)."""

from dataclasses import dataclass, field

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.identity import Authenticator
from mpr.domain.core.identity import IdentityVerdict
from mpr.domain.core.models import Role
from mpr.domain.mini_service.models import (
    ServiceAuthentication,
    ServiceContext,
    ServiceRolesRequest,
    ServiceVersionRef,
    ServiceVersionSummary,
)
from mpr.domain.mini_service.records import ServiceTransition, ServiceTransitionResult
from mpr.domain.mini_service.stages import IN_FLIGHT, ServiceStatus


@dataclass
class FakeServiceCatalog:
    roles: dict[str, set[Role]] = field(default_factory=dict)
    versions: dict[tuple[str, int], ServiceVersionSummary] = field(default_factory=dict)
    transitions: list[ServiceTransition] = field(default_factory=list)
    identity: Authenticator = field(default_factory=lambda: Authenticator(None))
    """MPR_AUTH=off unless a test verifies identities (tests/identity.py)."""

    @activity.defn(name="load_service_context")
    async def load_service_context(self, super_app: str) -> ServiceContext:
        if super_app == "nowhere":
            raise ApplicationError("unknown target app 'nowhere'", type="UnknownTargetApp",
                                   non_retryable=True)
        return ServiceContext(grayscale_ladder=[1, 5, 20, 50, 100])

    @activity.defn(name="authenticate_service_actor")
    async def authenticate_service_actor(
        self, request: ServiceAuthentication
    ) -> IdentityVerdict:
        return await self.identity.verdict(request, self._roles_of)

    async def _roles_of(self, subject: str) -> list[Role]:
        return sorted(self.roles.get(subject, set()))

    @activity.defn(name="load_service_roles")
    async def load_service_roles(self, request: ServiceRolesRequest) -> list[Role]:
        return sorted(self.roles.get(request.actor, set()))

    @activity.defn(name="record_service_transition")
    async def record_service_transition(
        self, transition: ServiceTransition
    ) -> ServiceTransitionResult:
        row = transition.row
        archived_version = None
        if row is not None:
            app = row.super_app
            if row.status in IN_FLIGHT:
                other = next((v for (a, n), v in self.versions.items() if a == app
                              and n != row.version_no and v.status in IN_FLIGHT), None)
                if other:
                    return ServiceTransitionResult(
                        applied=False,
                        reason=f"mini service version {other.version_no} of {app} is already "
                               f"{other.status}; revert or release it first")
            if transition.promote:
                for (a, n), version in self.versions.items():
                    if a == app and version.status is ServiceStatus.RELEASED:
                        self.versions[(a, n)] = version.model_copy(
                            update={"status": ServiceStatus.ARCHIVED})
                        archived_version = n
            self.versions[(app, row.version_no)] = ServiceVersionSummary(
                version_no=row.version_no, status=row.status, percent=row.percent,
                created_by=row.created_by, updated_at=row.at,
                duplicated_from=row.duplicated_from)
        self.transitions.append(transition)
        app = transition.event.super_app
        history = sorted((v for (a, _), v in self.versions.items() if a == app),
                         key=lambda v: -v.version_no)
        return ServiceTransitionResult(applied=True, archived_version=archived_version,
                                       history=history)

    @activity.defn(name="is_service_archived")
    async def is_service_archived(self, ref: ServiceVersionRef) -> bool:
        version = self.versions.get((ref.super_app, ref.version_no))
        return version is not None and version.status is ServiceStatus.ARCHIVED

    @property
    def activities(self) -> list[object]:
        return [self.load_service_context, self.authenticate_service_actor,
                self.load_service_roles,
                self.record_service_transition, self.is_service_archived]
