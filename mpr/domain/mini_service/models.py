"""Mini service content, and the models its workflow, activities and clients exchange."""

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, model_validator

from mpr.domain.core.identity import IdentityCheck
from mpr.domain.core.models import CLAIMED_ACTOR, IDENTIFIER, Strict
from mpr.domain.mini_service.stages import ServiceStatus

MAX_TESTERS = 200
MAX_SECTIONS = 50
MAX_PROGRAMS_PER_SECTION = 100
MAX_IMAGES = 20
MAX_LANGUAGES = 30
MAX_LANGUAGE_CODE_LENGTH = 35
LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")


def _translations(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_LANGUAGES:
        raise ValueError(f"at most {MAX_LANGUAGES} languages")
    for language, text in value.items():
        if len(language) > MAX_LANGUAGE_CODE_LENGTH or not LANGUAGE.match(language):
            raise ValueError(f"{language!r} is not a language code (e.g. en, zh-CN)")
        if not text.strip() or len(text) > 100:
            raise ValueError(f"the {language} text must have 1 to 100 characters")
    return value


Translations = Annotated[dict[str, str], AfterValidator(_translations)]


def _email(value: str) -> str:
    if not EMAIL.match(value):
        # The value is not repeated: refusal reasons are kept in plain text (update failures,
        # the audit log), and a near-miss email is still personal data.
        raise ValueError("the value is not an email address")
    return value.lower()


Email = Annotated[str, AfterValidator(_email)]
MiniProgramId = Annotated[str, Field(pattern=IDENTIFIER)]


class Title(Strict):
    """A title in several languages; `default_language` is what others fall back to."""

    default_language: str = Field(max_length=MAX_LANGUAGE_CODE_LENGTH)
    texts: Translations = Field(min_length=1)

    @model_validator(mode="after")
    def _default_is_translated(self) -> "Title":
        if self.default_language not in self.texts:
            raise ValueError(f"the default language {self.default_language!r} has no text")
        return self

    def text_for(self, language: str) -> str:
        return self.texts.get(language) or self.texts[self.default_language]


class SectionKind(StrEnum):
    CAROUSEL = "carousel"
    BANNER = "banner"
    FAVORITE = "favorite"
    RECENTLY_USED = "recently_used"
    RECOMMENDED = "recommended"


class Section(BaseModel):
    section_id: str
    kind: SectionKind
    title: dict[str, str] = {}
    """Translations; empty for default sections, whose names the super app renders itself."""
    mini_program_ids: list[str] = []
    images: list[str] = []

    @property
    def is_default(self) -> bool:
        return self.kind is not SectionKind.RECOMMENDED


DEFAULT_SECTIONS = (
    Section(section_id="carousel", kind=SectionKind.CAROUSEL),
    Section(section_id="banner", kind=SectionKind.BANNER),
    Section(section_id="favorite", kind=SectionKind.FAVORITE),
    Section(section_id="recently-used", kind=SectionKind.RECENTLY_USED),
)


class MiniServiceContent(BaseModel):
    title: Title
    sections: list[Section]

    @classmethod
    def new(cls) -> "MiniServiceContent":
        return cls(title=Title(default_language="en", texts={"en": "Mini Services"}),
                   sections=list(DEFAULT_SECTIONS))


class ServiceStart(Strict):
    """What starts a mini service version (the catalog allocated `version_no`)."""

    super_app: str = Field(pattern=IDENTIFIER)
    version_no: int = Field(ge=1)
    created_by: str | None = Field(default=None, min_length=1, max_length=128)
    """Filled in with the verified subject of the start's identity token; when sent, it must
    name that subject."""
    content: MiniServiceContent | None = None
    """None starts from the default page; `duplicate` passes a released version's content."""
    duplicated_from: int | None = None

    @property
    def creator(self) -> str:
        if self.created_by is None:
            raise ValueError("a version is begun only once who created it is verified")
        return self.created_by


class ServiceContext(BaseModel):
    """What the catalog knows when a version starts: the super app's grayscale ladder."""

    grayscale_ladder: list[int]


class ServiceVersionSummary(BaseModel):
    version_no: int
    status: ServiceStatus
    percent: int
    created_by: str
    updated_at: datetime
    duplicated_from: int | None = None


class ServiceAuditEntry(BaseModel):
    seq: int
    event_id: str
    command: str
    actor: str | None
    claimed_actor: str | None = CLAIMED_ACTOR
    """Who the payload claimed to be, kept when the identity was not verified."""
    accepted: bool
    reason: str | None = None
    status_before: ServiceStatus
    status_after: ServiceStatus
    at: datetime


class PreviewSection(BaseModel):
    section_id: str
    kind: SectionKind
    title: str | None
    mini_program_ids: list[str]
    images: list[str]


class Preview(BaseModel):
    """The page as a user with `language` sees it (seed 004 "Multi-language preview")."""

    language: str
    title: str
    sections: list[PreviewSection]


def mini_service_id(super_app: str, version_no: int) -> str:
    return f"mini-service:{super_app}:{version_no}"


def preview(content: MiniServiceContent, language: str) -> Preview:
    """Each translated field falls back to the default language when `language` lacks it."""
    fallback = content.title.default_language
    return Preview(
        language=language,
        title=content.title.text_for(language),
        sections=[
            PreviewSection(
                section_id=s.section_id, kind=s.kind,
                title=(s.title.get(language) or s.title.get(fallback)
                       or next(iter(s.title.values()), None)),
                mini_program_ids=list(s.mini_program_ids), images=list(s.images),
            )
            for s in content.sections
        ],
    )


class ServiceAuthentication(IdentityCheck):
    """Verify who sent a mini service command or start, and load their roles in the super app."""

    super_app: str


class ServiceRolesRequest(BaseModel):
    super_app: str
    actor: str


class ServiceVersionRef(BaseModel):
    super_app: str
    version_no: int
