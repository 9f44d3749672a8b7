"""QR codes of a mini program: deep-link templates, the link a code carries, and its refusals.

Pure: the catalog answers what a code is about (a `CodeSubject`), and `plan_code` decides the
link or refuses in one line. Rendering the image is the client library's (starters.qr_codes).

Two kinds of code (docs/qr-codes.md):

- an **official** code opens whatever the channel serves (its link names no version); the
  page it opens must be a page of the channel's stable version;
- a **trial** code opens one release's version, for its testers only: its link carries the
  trial marker `mpr_trial={release_id}`, which `resolve_version(trial=...)` understands.

A target app's link templates name their placeholders in braces. Every value is
percent-encoded in full before it is put in, so a page's slashes or a query's `&` and `=`
never break the link apart (Alipay's documented form takes `page` and `query` encoded).
"""

import re
import string
from enum import StrEnum
from typing import Self
from urllib.parse import parse_qs, quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mpr.domain.core.models import IDENTIFIER, Strict
from mpr.domain.release.models import SEMVER, Environment
from mpr.domain.release.release_id import release_id
from mpr.domain.release.stages import Stage

TRIAL_MARKER = "mpr_trial"
"""The query parameter of a trial link naming its release (the value `resolve_version`'s
`trial` takes)."""

OFFICIAL_PLACEHOLDERS = frozenset({"mini_program_id", "page", "query"})
TRIAL_PLACEHOLDERS = OFFICIAL_PLACEHOLDERS | {"release_id", "version"}
TRIAL_MARKER_FIELD = f"{TRIAL_MARKER}={{release_id}}"

# Alipay China's documented launch link. The trial one adds what Alipay's container reads for
# a trial (体验版) version in public tooling (nbsource=debug, nbsn=TRIAL, nbsv: the version;
# not in the field notes, so unconfirmed for alipaycn) and the project's own marker.
ALIPAY_OFFICIAL_TEMPLATE = (
    "alipays://platformapi/startapp?appId={mini_program_id}&page={page}&query={query}"
)
ALIPAY_TRIAL_TEMPLATE = (
    f"{ALIPAY_OFFICIAL_TEMPLATE}&nbsource=debug&nbsn=TRIAL&nbsv={{version}}&{TRIAL_MARKER_FIELD}"
)

# Built, tested and not yet out or withdrawn: READY_TO_APPLY to GRAYSCALE. REJECTED is in:
# its testers reproduce what the reviewers found, and it may be re-applied as it is. Not
# before (no tested package yet); not RELEASED (what an official code opens); not CANCELED,
# ARCHIVED or ROLLED_BACK (withdrawn: nobody should be served them).
TRIAL_STAGES = frozenset({
    Stage.READY_TO_APPLY, Stage.UNDER_REVIEW, Stage.REJECTED, Stage.RELEASE_PREPARATION,
    Stage.WHITELIST_TESTING, Stage.GRAYSCALE,
})
TRIAL_STAGE_NAMES = frozenset(stage.value for stage in TRIAL_STAGES)

MAX_TEMPLATE_CHARS = 512
MAX_QUERY_CHARS = 256
MAX_PAGE_CHARS = 256
# A QR code of version 40 at error correction M holds 2,331 bytes; stay well inside it.
MAX_LINK_CHARS = 2048
DEFAULT_SCALE = 8
MAX_SCALE = 40
"""Pixels per module: 40 makes a version-40 code (177 modules and its quiet zone) 7,400
pixels wide, as large as anyone prints."""
QUIET_ZONE = 4
"""Modules of light margin around the code, as ISO/IEC 18004 asks."""

SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Characters a URI may hold as they are (RFC 3986's unreserved, reserved and '%').
URI_CHARACTERS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")


class CodeKind(StrEnum):
    OFFICIAL = "official"
    TRIAL = "trial"


class ImageFormat(StrEnum):
    PNG = "png"
    SVG = "svg"


class Refusal(StrEnum):
    """Why a code was not made, for the caller's exit code: bad input, a state that forbids
    it, or a release that does not exist."""

    INVALID = "invalid"
    REFUSED = "refused"
    NOT_FOUND = "not_found"


class QrCodeRefused(Exception):
    """A code that cannot be made; the message is one line saying what to do."""

    def __init__(self, message: str, refusal: Refusal = Refusal.REFUSED) -> None:
        super().__init__(message)
        self.refusal = refusal


# --- templates -------------------------------------------------------------------------------


def check_template(kind: CodeKind, template: str) -> str:
    """The template if it is usable for `kind`, else ValueError saying why."""
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"a link template is at most {MAX_TEMPLATE_CHARS} characters")
    if not SCHEME.match(template):
        raise ValueError("a link template starts with its scheme, such as alipays: or https:")
    allowed = TRIAL_PLACEHOLDERS if kind is CodeKind.TRIAL else OFFICIAL_PLACEHOLDERS
    names = _placeholders(template, allowed)
    if "mini_program_id" not in names:
        raise ValueError("a link template must contain {mini_program_id}")
    if kind is CodeKind.TRIAL and not _has_trial_marker(template):
        raise ValueError(
            f"a trial link template must carry the trial marker as a query parameter: "
            f"...?{TRIAL_MARKER_FIELD} or ...&{TRIAL_MARKER_FIELD}"
        )
    if kind is CodeKind.OFFICIAL and TRIAL_MARKER in parse_qs(urlsplit(template).query):
        raise ValueError(f"an official link template must not carry the trial marker "
                         f"{TRIAL_MARKER}")
    return template


def _placeholders(template: str, allowed: frozenset[str]) -> set[str]:
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as error:  # a lone brace
        raise ValueError(f"a link template has an unmatched brace ({error})") from None
    names = set()
    known = ", ".join(f"{{{name}}}" for name in sorted(allowed))
    for literal, name, spec, conversion in parts:
        if not URI_CHARACTERS.match(literal):
            raise ValueError("a link template holds only URI characters (no spaces or braces) "
                             "besides its placeholders")
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (
                f":{spec}" if spec else "") + "}"
            raise ValueError(f"unknown placeholder {shown} in a link template; known: {known}")
        names.add(name)
    return names


def _has_trial_marker(template: str) -> bool:
    # The marker must be a whole query parameter, for resolve_version to read it back.
    query_at = template.find("?")
    if query_at < 0:
        return False
    query = template[query_at + 1:].split("#", 1)[0]
    return TRIAL_MARKER_FIELD in query.split("&")


class LinkTemplates(Strict):
    """A target app's deep-link templates; None: no code of that kind can be made for it."""

    official: str | None = None
    trial: str | None = None

    @field_validator("official")
    @classmethod
    def _official(cls, template: str | None) -> str | None:
        return None if template is None else check_template(CodeKind.OFFICIAL, template)

    @field_validator("trial")
    @classmethod
    def _trial(cls, template: str | None) -> str | None:
        return None if template is None else check_template(CodeKind.TRIAL, template)

    def of(self, kind: CodeKind) -> str | None:
        return self.official if kind is CodeKind.OFFICIAL else self.trial


def template_flag(kind: CodeKind) -> str:
    return f"--{kind.value}-link-template"


# --- requests --------------------------------------------------------------------------------


class QrRequest(Strict):
    """A code to make. An official code names its channel; a trial code names a release by
    its channel and version."""

    kind: CodeKind = CodeKind.OFFICIAL
    mini_program_id: str = Field(pattern=IDENTIFIER)
    target_app: str = Field(pattern=IDENTIFIER)
    environment: Environment = Environment.PRODUCTION
    version: str | None = Field(default=None, pattern=SEMVER, max_length=64)
    """The release's version, for a trial code only."""
    page: str | None = Field(default=None, min_length=1, max_length=MAX_PAGE_CHARS)
    """A page of the version's manifest; None: its first page (the entry page)."""
    query: str = Field(default="", max_length=MAX_QUERY_CHARS)
    """What the page gets as its query, such as `table=12&promo=spring` (encoded in the link)."""
    image_format: ImageFormat = ImageFormat.PNG
    scale: int = Field(default=DEFAULT_SCALE, ge=1, le=MAX_SCALE)
    """Pixels per module."""

    @field_validator("query")
    @classmethod
    def _printable(cls, query: str) -> str:
        if not query.isprintable():
            raise ValueError("a query holds printable characters only")
        return query

    @model_validator(mode="after")
    def _version(self) -> Self:
        if (self.kind is CodeKind.TRIAL) != (self.version is not None):
            raise ValueError("a trial code names its release's version; an official code none")
        return self

    @property
    def channel_label(self) -> str:
        return f"{self.mini_program_id}/{self.target_app}/{self.environment.value}"

    @property
    def release_id(self) -> str | None:
        """The trial code's release."""
        if self.version is None:
            return None
        return release_id(self.mini_program_id, self.version, self.target_app, self.environment)


def image_format_for(explicit: ImageFormat | None, suffix: str) -> ImageFormat:
    """The format asked for, by name or by the output file's extension (`suffix` as
    pathlib gives it: '.png', or '' for none)."""
    by_suffix = {f".{fmt.value}": fmt for fmt in ImageFormat}.get(suffix.lower())
    if suffix and by_suffix is None:
        raise QrCodeRefused(f"cannot write a QR code as {suffix}: name the file .png or .svg",
                            Refusal.INVALID)
    if explicit and by_suffix and explicit is not by_suffix:
        raise QrCodeRefused(f"--format {explicit} does not match the file's extension {suffix}",
                            Refusal.INVALID)
    return explicit or by_suffix or ImageFormat.PNG


# --- planning a code -------------------------------------------------------------------------


class CodeSubject(BaseModel):
    """What the catalog knows of the code's subject. For an official code: the channel's
    stable release; for a trial code: the release. `release_id` None: none found."""

    model_config = ConfigDict(frozen=True)

    template: str | None
    release_id: str | None = None
    version: str | None = None
    stage: str | None = None
    """The release's stage as the catalog has it (ARCHIVED and ROLLED_BACK included)."""
    pages: list[str] = []
    offline_reason: str | None = None
    """Why the channel is offline (it serves nothing), or None."""


class CodeLink(BaseModel):
    """The link a code carries, and what it is about."""

    model_config = ConfigDict(frozen=True)

    kind: CodeKind
    link: str
    page: str
    version: str
    """The version whose pages were checked: the channel's stable one, or the release's."""
    release_id: str
    notice: str | None = None
    """Something the operator should know though the code was made (the channel is offline)."""


def plan_code(request: QrRequest, subject: CodeSubject) -> CodeLink:
    """The code's link, or QrCodeRefused saying why none can be made."""
    kind = request.kind
    if subject.template is None:
        raise QrCodeRefused(
            f"{request.target_app} has no {kind} link template: set one with `mpr admin "
            f"target-app set --app {request.target_app} {template_flag(kind)} TEMPLATE`"
        )
    if subject.release_id is None or subject.version is None:
        if kind is CodeKind.OFFICIAL:
            raise QrCodeRefused(f"nothing is released on {request.channel_label}: an official "
                                "code opens the released version; make a trial code instead")
        raise QrCodeRefused(f"no release {request.release_id}", Refusal.NOT_FOUND)
    if kind is CodeKind.TRIAL and subject.stage not in TRIAL_STAGE_NAMES:
        stages = ", ".join(stage.value for stage in Stage if stage in TRIAL_STAGES)
        raise QrCodeRefused(
            f"{subject.release_id} is {subject.stage}: a trial code is made for a release in "
            f"{stages}" + ("; make an official code instead" if subject.stage == Stage.RELEASED
                           else "")
        )
    page = choose_page(request.page, subject.pages, subject.version)
    template = subject.template
    if request.query and "{query}" not in template:
        raise QrCodeRefused(f"the {kind} link template of {request.target_app} has no {{query}}",
                            Refusal.INVALID)
    if request.page and "{page}" not in template:
        raise QrCodeRefused(f"the {kind} link template of {request.target_app} has no {{page}}",
                            Refusal.INVALID)
    link = build_link(template, mini_program_id=request.mini_program_id, page=page,
                      query=request.query, release_id=subject.release_id,
                      version=subject.version)
    notice = (f"{request.channel_label} is offline ({subject.offline_reason}): the code opens "
              "nothing until it is back online") if subject.offline_reason else None
    return CodeLink(kind=kind, link=link, page=page, version=subject.version,
                    release_id=subject.release_id, notice=notice)


def choose_page(requested: str | None, pages: list[str], version: str) -> str:
    """The requested page if the version has it; by default its first (entry) page."""
    if not pages:
        raise QrCodeRefused(f"version {version} has no pages in its manifest")
    if requested is None:
        return pages[0]
    if requested not in pages:
        raise QrCodeRefused(
            f"{requested!r} is not a page of version {version}; its pages: {', '.join(pages)}",
            Refusal.INVALID,
        )
    return requested


def build_link(template: str, **values: str) -> str:
    """The template with every placeholder replaced by its value, percent-encoded in full."""
    link = template.format_map({name: quote(value, safe="") for name, value in values.items()})
    if len(link) > MAX_LINK_CHARS:
        raise QrCodeRefused(f"the link would be {len(link)} characters, more than a QR code "
                            f"is made for here ({MAX_LINK_CHARS}): shorten the query",
                            Refusal.INVALID)
    return link


def trial_marker(link: str) -> str | None:
    """The release a trial link names (its `mpr_trial` parameter), or None: what a service
    answering launches passes to `resolve_version(..., trial=...)`."""
    values = parse_qs(urlsplit(link).query).get(TRIAL_MARKER)
    return values[0] if values else None
