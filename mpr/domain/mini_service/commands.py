"""Operator commands on a mini service version: their payloads."""

from typing import Annotated

from pydantic import AfterValidator, Field, HttpUrl, model_validator

from mpr.domain.core.commands import Command
from mpr.domain.mini_service.models import (
    MAX_IMAGES,
    MAX_PROGRAMS_PER_SECTION,
    MAX_TESTERS,
    Email,
    MiniProgramId,
    Title,
    Translations,
)


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("entries must be unique")
    return values


Position = Annotated[int, Field(ge=0)]
Testers = Annotated[list[Email], Field(min_length=1, max_length=MAX_TESTERS),
                    AfterValidator(_unique)]
SectionId = Annotated[str, Field(min_length=1, max_length=64)]


class EditTitle(Command):
    title: Title


class AddSection(Command):
    title: Translations = Field(min_length=1)
    mini_program_ids: Annotated[
        list[MiniProgramId], Field(max_length=MAX_PROGRAMS_PER_SECTION), AfterValidator(_unique)
    ] = []
    position: Position | None = None
    """Where the section goes (0 is first); the end when absent."""


class EditSection(Command):
    section_id: SectionId
    title: Translations | None = None
    images: Annotated[list[HttpUrl], Field(max_length=MAX_IMAGES)] | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> "EditSection":
        if self.title is None and self.images is None:
            raise ValueError("edit_section needs a title or images to change")
        return self


class MoveSection(Command):
    section_id: SectionId
    position: Position


class DeleteSection(Command):
    section_id: SectionId


class AddMiniProgram(Command):
    section_id: SectionId
    mini_program_id: MiniProgramId
    position: Position | None = None


class RemoveMiniProgram(Command):
    section_id: SectionId
    mini_program_id: MiniProgramId


class MoveMiniProgram(Command):
    section_id: SectionId
    mini_program_id: MiniProgramId
    position: Position


class StartTest(Command):
    testers: Testers


class Retest(Command):
    testers: Testers


class Revert(Command):
    pass


class Release(Command):
    percent: int = Field(ge=1, le=100)


class Delete(Command):
    pass
