"""The reference model: the release and mini service processes as the seeds and the
documentation (docs/releases.md, docs/mini-services.md) describe them, written apart from
`mpr/domain/` so that the model-based tests compare two independent descriptions.

It borrows only vocabulary (stage, status, role and reviewer names) and never the domain's
rules or transition tables. Commands reach it already judged well-formed or not by whoever
built them (the test generators know what they built), so it holds no payload validation.
"""

from dataclasses import dataclass, field, replace
from typing import Any

from mpr.domain.core.models import Role
from mpr.domain.mini_service.stages import ServiceStatus as Status
from mpr.domain.release.models import Reviewer
from mpr.domain.release.stages import Stage

Payload = dict[str, Any]

# --- Releases ----------------------------------------------------------------------------

# Seed 000: "the owner, masters, and developers have permission to proceed with the release
# process" (docs/releases.md adds the workspace admin).
BUILDERS = frozenset({Role.OWNER, Role.ADMIN, Role.MASTER, Role.DEVELOPER})
# Seed 001: "Workspace admin ... or Admin for the mini program you want to release".
GO_LIVE = frozenset({Role.ADMIN, Role.PROGRAM_ADMIN})
# docs/releases.md: withdrawing a release is for those who lead it.
WITHDRAWERS = frozenset({Role.OWNER, Role.ADMIN, Role.MASTER, Role.PROGRAM_ADMIN})
REVIEWER_ROLE = {Reviewer.PLATFORM: Role.PLATFORM_REVIEWER,
                 Reviewer.PARTNER_APP: Role.PARTNER_REVIEWER}

BEFORE_REVIEW = frozenset({Stage.BUILD_FAILED, Stage.READY_TO_APPLY, Stage.REJECTED})
APPLICABLE = frozenset({Stage.READY_TO_APPLY, Stage.REJECTED})
PREPARED = frozenset({Stage.RELEASE_PREPARATION, Stage.WHITELIST_TESTING, Stage.GRAYSCALE})
# docs/releases.md: "Only one release per (mini program, target app, environment) may be between
# UNDER_REVIEW and GRAYSCALE".
HOLDING = frozenset({Stage.UNDER_REVIEW}) | PREPARED
FINAL = frozenset({Stage.RELEASED, Stage.CANCELED})

# docs/releases.md, "Commands": where each command may be sent, and by whom (reviews: see
# REVIEWER_ROLE).
WHEN: dict[str, frozenset[Stage]] = {
    "update_config": BEFORE_REVIEW | HOLDING,
    "rebuild": BEFORE_REVIEW,
    "retest_compatibility": APPLICABLE,
    "apply_release": APPLICABLE,
    "approve_review": frozenset({Stage.UNDER_REVIEW}),
    "reject_review": frozenset({Stage.UNDER_REVIEW}),
    "start_whitelist_test": frozenset({Stage.RELEASE_PREPARATION, Stage.WHITELIST_TESTING}),
    "set_grayscale": PREPARED,
    "full_release": PREPARED,
    "cancel_grayscale": frozenset({Stage.GRAYSCALE}),
    "reset_grayscale": frozenset({Stage.GRAYSCALE}),
    "cancel_release": frozenset(Stage) - FINAL,
}
WHO: dict[str, frozenset[Role]] = {
    "update_config": BUILDERS, "rebuild": BUILDERS, "retest_compatibility": BUILDERS,
    "apply_release": BUILDERS,
    "approve_review": frozenset(REVIEWER_ROLE.values()),
    "reject_review": frozenset(REVIEWER_ROLE.values()),
    "start_whitelist_test": GO_LIVE, "set_grayscale": GO_LIVE, "full_release": GO_LIVE,
    "cancel_grayscale": GO_LIVE, "reset_grayscale": GO_LIVE,
    "cancel_release": WITHDRAWERS,
}


@dataclass(frozen=True)
class Policy:
    """What a target app asks of releases to it."""

    reviewers: frozenset[Reviewer]
    first_release_full_only: bool
    whitelist_test: bool
    ladder: tuple[int, ...]


@dataclass(frozen=True)
class Release:
    release_id: str
    version: str
    first_release: bool
    stage: Stage
    work: str | None
    """What the release waits for: "build" or "test" (the compatibility matrix)."""
    source: str
    config: Payload
    """basic_info (a dict or None), server_domain_whitelist and h5_domain_whitelist."""
    percent: int = 0
    whitelist: tuple[str, ...] = ()
    approvals: frozenset[Reviewer] = frozenset()
    review_round: int = 0


def merge_config(config: Payload, patch: Payload) -> Payload | None:
    """Fields absent from the patch keep their value; basic information merges field by field
    and must keep a name. None when the result would have no name."""
    merged = {**config, **{key: value for key, value in patch.items() if key != "basic_info"}}
    if "basic_info" in patch:
        info = {"description": "", "icon": "", **(config["basic_info"] or {}),
                **patch["basic_info"]}
        if "name" not in info:
            return None
        merged["basic_info"] = info
    return merged


# The name in app.json of every package the model tests build (and no description).
MANIFEST_NAME = "Coffee"


def _prefilled(config: Payload) -> Payload:
    """A build fills an absent basic_info from app.json; a given one stays."""
    if config.get("basic_info") is not None:
        return config
    return {**config, "basic_info": {"name": MANIFEST_NAME, "description": "", "icon": ""}}


@dataclass
class ReleaseModel:
    """The releases of one mini program on one channel, and the channel's hold."""

    policy: Policy
    releases: dict[str, Release] = field(default_factory=dict)
    stable_version: str | None = None
    production: bool = True
    """Seed 001: releases to development, test or sandbox go out once tested, unreviewed."""

    def start(self, release_id: str, version: str, source: str, config: Payload) -> None:
        self.releases[release_id] = Release(
            release_id=release_id, version=version, first_release=self.stable_version is None,
            stage=Stage.BUILDING, work="build", source=source, config=config)

    def work_done(self, release_id: str, succeeded: bool = True) -> None:
        """The build (which may fail) or the compatibility matrix finished."""
        release = self.releases[release_id]
        if release.work == "build" and succeeded:
            release = replace(release, stage=Stage.COMPATIBILITY_TESTING, work="test",
                              config=_prefilled(release.config))
        elif release.work == "build":
            release = replace(release, stage=Stage.BUILD_FAILED, work=None)
        elif release.work == "test" and self.production:  # waits for an apply
            release = replace(release, stage=Stage.READY_TO_APPLY, work=None)
        elif release.work == "test":
            release = _released(release)
            self.stable_version = release.version
        self.releases[release_id] = release

    def holder(self) -> str | None:
        return next((r.release_id for r in self.releases.values() if r.stage in HOLDING), None)

    def command(self, release_id: str, name: str, payload: Payload | None,
                roles: frozenset[Role]) -> bool:
        """Apply a command (payload None: malformed); False when it is refused."""
        after = None if payload is None else self._next(self.releases[release_id], name,
                                                        payload, roles)
        if after is None:
            return False
        if after.stage in HOLDING and self.holder() not in (None, release_id):
            return False
        self.releases[release_id] = after
        if after.stage is Stage.RELEASED:
            self.stable_version = after.version
        return True

    def may(self, name: str, payload: Payload, roles: frozenset[Role]) -> bool:
        if name in ("approve_review", "reject_review"):
            return REVIEWER_ROLE[Reviewer(payload["reviewer"])] in roles
        return bool(WHO[name] & roles)

    def _next(self, r: Release, name: str, p: Payload, roles: frozenset[Role]) -> Release | None:
        if r.stage in FINAL or r.stage not in WHEN[name] or not self.may(name, p, roles):
            return None
        policy = self.policy
        # Seed 002: "For the first release, you may only do official release."
        full_only = r.first_release and policy.first_release_full_only
        match name:
            case "update_config":
                patch = p["config"]
                if not patch or (r.stage in HOLDING and set(patch) != {"basic_info"}):
                    return None  # seed 000: only basic information during the release
                config = merge_config(r.config, patch)
                return None if config is None else replace(r, config=config)
            case "rebuild":
                return replace(r, stage=Stage.BUILDING, work="build",
                               source=p.get("source") or r.source)
            case "retest_compatibility":
                return replace(r, stage=Stage.COMPATIBILITY_TESTING, work="test")
            case "apply_release":
                config = merge_config(r.config, p)
                if config is None or config["basic_info"] is None:
                    return None
                return replace(r, stage=Stage.UNDER_REVIEW, config=config,
                               review_round=r.review_round + 1, approvals=frozenset())
            case "approve_review":
                reviewer = Reviewer(p["reviewer"])
                if reviewer not in policy.reviewers or reviewer in r.approvals:
                    return None
                approvals = r.approvals | {reviewer}
                done = approvals == policy.reviewers
                return replace(r, approvals=approvals,
                               stage=Stage.RELEASE_PREPARATION if done else r.stage)
            case "reject_review":
                if Reviewer(p["reviewer"]) not in policy.reviewers:
                    return None
                return replace(r, stage=Stage.REJECTED)
            case "start_whitelist_test":
                if not policy.whitelist_test or full_only:
                    return None
                return replace(r, stage=Stage.WHITELIST_TESTING, whitelist=tuple(p["user_ids"]))
            case "set_grayscale":
                percent = p["percent"]
                if full_only or percent not in policy.ladder or percent <= r.percent:
                    return None
                if percent == 100:  # seed 001: "setting the percentage to 100% ... full release"
                    return _released(r)
                return replace(r, stage=Stage.GRAYSCALE, percent=percent)
            case "full_release":
                return _released(r)
            case "cancel_grayscale":
                return replace(r, stage=Stage.CANCELED)
            case "reset_grayscale":  # seed 001: "reverts the mini program to 0% release"
                return replace(r, stage=Stage.RELEASE_PREPARATION, percent=0, whitelist=())
            case "cancel_release":
                return replace(r, stage=Stage.CANCELED, work=None)
        raise AssertionError(f"the model has no rule for {name}")


def _released(release: Release) -> Release:
    return replace(release, stage=Stage.RELEASED, percent=100, whitelist=(), work=None)


# --- Mini service (seed 004) ----------------------------------------------------------------

OPERATORS = frozenset({Role.SERVICE_OPERATOR, Role.SERVICE_ADMIN})
EDITS = frozenset({"edit_title", "add_section", "edit_section", "move_section", "delete_section",
                   "add_mini_program", "remove_mini_program", "move_mini_program"})
IN_FLIGHT = frozenset({Status.TESTING, Status.RELEASING})
ENDED = frozenset({Status.ARCHIVED, Status.DELETED})
# Seed 004's table of statuses and possible actions.
SERVICE_WHEN: dict[str, frozenset[Status]] = {
    **{name: frozenset({Status.DRAFT}) for name in EDITS},
    "test": frozenset({Status.DRAFT}),
    "retest": frozenset({Status.TESTING}),
    "revert": IN_FLIGHT,
    "release": IN_FLIGHT,
    "delete": frozenset({Status.DRAFT}),
}
# docs/mini-services.md: only a service admin puts a page in front of users.
SERVICE_WHO = {name: OPERATORS for name in SERVICE_WHEN} | {"release": frozenset(
    {Role.SERVICE_ADMIN})}
DEFAULT_SECTIONS = (("carousel", "carousel"), ("banner", "banner"), ("favorite", "favorite"),
                    ("recently-used", "recently_used"))
WITH_IMAGES = frozenset({"carousel", "banner"})
MAX_SECTIONS = 50
MAX_PROGRAMS = 100


@dataclass(frozen=True)
class Section:
    section_id: str
    kind: str
    title: Payload = field(default_factory=dict)
    programs: tuple[str, ...] = ()
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class Version:
    version_no: int
    status: Status = Status.DRAFT
    percent: int = 0
    testers: tuple[str, ...] = ()
    title: Payload = field(default_factory=lambda: {"default_language": "en",
                                                    "texts": {"en": "Mini Services"}})
    sections: tuple[Section, ...] = tuple(Section(i, kind) for i, kind in DEFAULT_SECTIONS)
    last_number: int = 0
    """The highest section-N number this version has used: a new section takes the next."""
    removed: frozenset[tuple[str, str]] = frozenset()
    """(section, mini program) pairs removed: seed 004 "you can't undo this action"."""

    def find(self, section_id: str) -> int | None:
        return next((i for i, s in enumerate(self.sections) if s.section_id == section_id), None)


@dataclass
class ServiceModel:
    """The versions of one super app's mini service page."""

    ladder: tuple[int, ...]
    versions: dict[int, Version] = field(default_factory=dict)

    def create(self, version_no: int, copy_of: int | None = None) -> None:
        """A new DRAFT, from the default page or duplicating a released or archived version."""
        if copy_of is None:
            self.versions[version_no] = Version(version_no)
            return
        source = self.versions[copy_of]
        numbers = [int(s.section_id.removeprefix("section-")) for s in source.sections
                   if s.kind == "recommended"]
        self.versions[version_no] = Version(version_no, title=source.title,
                                            sections=source.sections,
                                            last_number=max(numbers, default=0))

    def command(self, version_no: int, name: str, payload: Payload | None,
                roles: frozenset[Role]) -> bool:
        version = self.versions[version_no]
        after = None if payload is None else self._next(version, name, payload, roles)
        if after is None:
            return False
        # docs/mini-services.md: "Only one version per super app may be TESTING or RELEASING at a
        # time".
        if after.status in IN_FLIGHT and any(
                v.status in IN_FLIGHT for n, v in self.versions.items() if n != version_no):
            return False
        if after.status is Status.RELEASED:  # releasing archives the version released before
            for n, v in self.versions.items():
                if v.status is Status.RELEASED:
                    self.versions[n] = replace(v, status=Status.ARCHIVED, percent=0)
        self.versions[version_no] = after
        return True

    def _next(self, v: Version, name: str, p: Payload, roles: frozenset[Role]) -> Version | None:
        if v.status in ENDED or v.status not in SERVICE_WHEN[name]:
            return None
        if not SERVICE_WHO[name] & roles:
            return None
        if name in EDITS:
            return _edited(v, name, p)
        match name:
            case "test" | "retest":
                return replace(v, status=Status.TESTING, testers=tuple(p["testers"]))
            case "revert":
                return replace(v, status=Status.DRAFT, percent=0, testers=())
            case "release":
                percent = p["percent"]
                if percent not in self.ladder or percent <= v.percent:
                    return None
                return replace(v, status=Status.RELEASED if percent == 100 else Status.RELEASING,
                               percent=percent)
            case "delete":
                return replace(v, status=Status.DELETED)
        raise AssertionError(f"the model has no rule for {name}")


def _edited(v: Version, name: str, p: Payload) -> Version | None:
    """Seed 004's editing of a DRAFT; None when the edit makes no sense for the page."""
    sections = list(v.sections)
    if name == "edit_title":
        return replace(v, title=p["title"])
    if name == "add_section":
        position = p.get("position", len(sections))
        if len(sections) >= MAX_SECTIONS or position > len(sections):
            return None
        number = v.last_number + 1
        sections.insert(position, Section(f"section-{number}", "recommended", p["title"],
                                          tuple(p.get("mini_program_ids", ()))))
        return replace(v, sections=tuple(sections), last_number=number)
    index = v.find(p["section_id"])
    if index is None:
        return None
    section = sections[index]
    recommended = section.kind == "recommended"
    if name == "edit_section":
        # Default sections are named by the super app; only the carousel and banner show images.
        if ("title" in p and not recommended) or ("images" in p and section.kind
                                                   not in WITH_IMAGES):
            return None
        sections[index] = replace(section, title=p.get("title", section.title),
                                  images=tuple(p.get("images", section.images)))
    elif name == "move_section":
        if p["position"] >= len(sections):
            return None
        sections.insert(p["position"], sections.pop(index))
    elif name == "delete_section":
        if not recommended:  # the four default sections stay
            return None
        del sections[index]
    else:
        return _programs_edited(v, sections, index, name, p)
    return replace(v, sections=tuple(sections))


def _programs_edited(v: Version, sections: list[Section], index: int, name: str,
                     p: Payload) -> Version | None:
    section = sections[index]
    programs = list(section.programs)
    program = p["mini_program_id"]
    key = (section.section_id, program)
    removed = v.removed
    if section.kind != "recommended":
        return None
    if name == "add_mini_program":
        position = p.get("position", len(programs))
        if (key in removed or program in programs or len(programs) >= MAX_PROGRAMS
                or position > len(programs)):
            return None
        programs.insert(position, program)
    elif program not in programs:
        return None
    elif name == "remove_mini_program":
        programs.remove(program)
        removed = removed | {key}
    else:  # move_mini_program
        if p["position"] >= len(programs):
            return None
        programs.insert(p["position"], programs.pop(programs.index(program)))
    sections[index] = replace(section, programs=tuple(programs))
    return replace(v, sections=tuple(sections), removed=removed)
