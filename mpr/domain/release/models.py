"""Typed models of a release, shared by its workflow, activities, catalog and clients.

Every release model that crosses a boundary (workflow input, command payload, activity input
or output, query result) lives here so that all sides agree on one schema.
"""

import itertools
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from mpr.domain.core.identity import IdentityCheck
from mpr.domain.core.models import CLAIMED_ACTOR, IDENTIFIER, Strict, UserId

# A release's environment is every lifecycle's (a channel's too): defined in the core.
from mpr.domain.core.models import Environment as Environment
from mpr.domain.release.stages import Stage

SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(\*\.)?([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)

MAX_DOMAINS = 100
MAX_WHITELIST_USERS = 1000
MAX_DESCRIPTION_LENGTH = 1000
"""Of basic_info's description, and of the description a package's app.json may carry."""


class Reviewer(StrEnum):
    PLATFORM = "platform"
    PARTNER_APP = "partner_app"


def _domain(value: str) -> str:
    host = value.removeprefix("https://").rstrip("/")
    if not HOSTNAME.match(host):
        raise ValueError(f"{value!r} is not a domain name (e.g. api.example.com)")
    return host.lower()


Domain = Annotated[str, AfterValidator(_domain)]


def _unique(values: list[str]) -> list[str]:
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"duplicate entries: {', '.join(duplicates)}")
    return values


DomainList = Annotated[list[Domain], Field(max_length=MAX_DOMAINS), AfterValidator(_unique)]


class BasicInfo(Strict):
    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=MAX_DESCRIPTION_LENGTH)
    icon: str = Field(default="", max_length=2048)


class BasicInfoPatch(Strict):
    """Fields of basic information to change; absent fields keep their value."""

    name: str | None = Field(default=None, min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_LENGTH)
    icon: str | None = Field(default=None, max_length=2048)


OPERATING_SYSTEMS = ("android", "ios")
NETWORKS = ("2g", "3g", "4g", "wifi")
DEVICE_TIERS = ("low", "mid", "high")


def _known(allowed: tuple[str, ...], kind: str) -> AfterValidator:
    def check(values: list[str]) -> list[str]:
        unknown = [v for v in values if v not in allowed]
        if unknown:
            raise ValueError(f"unknown {kind} {unknown}; known: {list(allowed)}")
        return _unique(values)

    return AfterValidator(check)


class CompatibilityMatrix(Strict):
    """Which cells of operating system x network x device tier to test."""

    operating_systems: Annotated[
        list[str], Field(min_length=1), _known(OPERATING_SYSTEMS, "operating systems")
    ] = list(OPERATING_SYSTEMS)
    networks: Annotated[list[str], Field(min_length=1), _known(NETWORKS, "networks")] = list(
        NETWORKS
    )
    device_tiers: Annotated[
        list[str], Field(min_length=1), _known(DEVICE_TIERS, "device tiers")
    ] = list(DEVICE_TIERS)

    def cells(self) -> list["MatrixCell"]:
        return [
            MatrixCell(os=os_name, network=network, device_tier=tier)
            for os_name in self.operating_systems
            for network in self.networks
            for tier in self.device_tiers
        ]


class ReleaseConfig(Strict):
    basic_info: BasicInfo | None = None
    server_domain_whitelist: DomainList = []
    h5_domain_whitelist: DomainList = []
    compatibility: CompatibilityMatrix | None = None


class ConfigPatch(Strict):
    """A change to the release configuration; absent fields keep their value."""

    basic_info: BasicInfoPatch | None = None
    server_domain_whitelist: DomainList | None = None
    h5_domain_whitelist: DomainList | None = None
    compatibility: CompatibilityMatrix | None = None

    def only_basic_info(self) -> bool:
        return self.model_fields_set <= {"basic_info"}


class StartInput(Strict):
    """What a service or an operator gives to start a release."""

    mini_program_id: str = Field(pattern=IDENTIFIER)
    version: str = Field(pattern=SEMVER, max_length=64)
    target_app: str = Field(pattern=IDENTIFIER)
    environment: Environment = Environment.PRODUCTION
    workspace_id: str = Field(pattern=IDENTIFIER)
    requested_by: UserId | None = None
    """Who asks: filled in with the verified subject of the start's identity token; when sent,
    it must name that subject."""
    source: str = Field(min_length=1, max_length=4096)
    config: ReleaseConfig = ReleaseConfig()

    @property
    def requester(self) -> str:
        if self.requested_by is None:
            raise ValueError("a release is begun only once who requested it is verified")
        return self.requested_by


class Channel(Strict):
    """Where versions of one mini program are served: (program, target app, environment)."""

    mini_program_id: str
    target_app: str
    environment: Environment


class TargetAppPolicy(Strict):
    """How a target app (super app) accepts releases; stored in the catalog."""

    target_app: str = Field(pattern=IDENTIFIER)
    display_name: str = ""
    required_reviewers: list[Reviewer] = Field(min_length=1)
    first_release_full_only: bool = False
    whitelist_allowed: bool = True
    grayscale_ladder: list[int] = [1, 2, 5, 10, 20, 50, 100]

    @field_validator("grayscale_ladder")
    @classmethod
    def _ladder(cls, ladder: list[int]) -> list[int]:
        if not ladder or ladder[-1] != 100:
            raise ValueError("the grayscale ladder must end at 100")
        if any(not 1 <= p <= 100 for p in ladder):
            raise ValueError("grayscale percentages must be between 1 and 100")
        if any(a >= b for a, b in itertools.pairwise(ladder)):
            raise ValueError("the grayscale ladder must be strictly increasing")
        return ladder

    @field_validator("required_reviewers")
    @classmethod
    def _reviewers(cls, reviewers: list[Reviewer]) -> list[Reviewer]:
        if len(set(reviewers)) != len(reviewers):
            raise ValueError("duplicate reviewer organisations")
        return reviewers


# --- Build -------------------------------------------------------------------------------


class AppManifest(BaseModel):
    """The facts the release needs from the package's app.json."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    pages: list[str]
    min_base_version: str | None = None
    jsapis: list[str] = []
    # Left out of what is written when unset, so that what runs carry (and workers of the
    # previous version read) stays as it was for packages without one.
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_LENGTH,
                                    exclude_if=lambda value: value is None)
    """app.json's `description` when it is a non-blank string that fits basic_info's
    description; None otherwise (packages built before the field existed have None too)."""


class BuildRequest(BaseModel):
    release_id: str
    mini_program_id: str
    version: str
    source: str


class PackageFacts(BaseModel):
    """A built, content-addressed bundle."""

    model_config = ConfigDict(frozen=True)

    sha256: str
    size_bytes: int
    uncompressed_bytes: int
    file_count: int
    artifact_path: str
    manifest: AppManifest


# --- Compatibility -----------------------------------------------------------------------

Verdict = Literal["pass", "warn", "fail"]


class MatrixCell(BaseModel):
    model_config = ConfigDict(frozen=True)

    os: str
    network: str
    device_tier: str

    @property
    def label(self) -> str:
        return f"{self.os}/{self.network}/{self.device_tier}"


class CellCheck(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    verdict: Verdict
    detail: str


class CellResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    cell: MatrixCell
    verdict: Verdict
    checks: list[CellCheck]


class CellTestRequest(BaseModel):
    package: PackageFacts
    cell: MatrixCell


class CompatibilitySummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    package_sha256: str
    cells: int
    passed: int
    warned: int
    failed: int
    failing_cells: list[str]
    """One line per failing cell: 'ios/2g/low: download 12.4 s exceeds the 8 s budget'."""


class CompatibilityReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    report_id: str
    package_sha256: str
    results: list[CellResult]
    created_at: datetime

    def summary(self) -> CompatibilitySummary:
        failed = [r for r in self.results if r.verdict == "fail"]
        return CompatibilitySummary(
            package_sha256=self.package_sha256,
            cells=len(self.results),
            passed=sum(r.verdict == "pass" for r in self.results),
            warned=sum(r.verdict == "warn" for r in self.results),
            failed=len(failed),
            failing_cells=[
                f"{r.cell.label}: "
                + "; ".join(c.detail for c in r.checks if c.verdict == "fail")
                for r in failed
            ],
        )


# --- Review, rollout, audit ----------------------------------------------------------------


class Approval(BaseModel):
    model_config = ConfigDict(frozen=True)

    actor: str
    comment: str = ""
    at: datetime


class ReviewOutcome(BaseModel):
    """A review decision to record in the catalog."""

    model_config = ConfigDict(frozen=True)

    round: int
    reviewer: Reviewer
    approved: bool
    actor: str
    comment: str


class AuditEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    event_id: str
    command: str
    actor: str | None
    claimed_actor: str | None = CLAIMED_ACTOR
    """Who the payload claimed to be, kept when the identity was not verified."""
    accepted: bool
    reason: str | None = None
    stage_before: Stage
    stage_after: Stage
    at: datetime


class Rollout(BaseModel):
    """The candidate side of a channel as the release wants it served."""

    model_config = ConfigDict(frozen=True)

    candidate_version: str | None
    candidate_release_id: str | None
    percent: int
    whitelist: list[str]


class ReleaseAuthentication(IdentityCheck):
    """Verify who sent a release's command or start, and load their roles for the release."""

    workspace_id: str
    mini_program_id: str
    target_app: str


class ActorRolesRequest(BaseModel):
    workspace_id: str
    mini_program_id: str
    target_app: str
    actor: str


class ReleaseContextRequest(BaseModel):
    release_id: str
    request: StartInput


class ReleaseContext(BaseModel):
    """What the catalog knows when a release starts."""

    policy: TargetAppPolicy
    first_release: bool
    previous_stable_version: str | None
