"""The mini service rules (seed 004): edit a DRAFT, pilot-test it, roll it out, archive it.

The statuses, and the commands that move a version between them:

    DRAFT --test--> TESTING --release N%--> RELEASING --release 100%--> RELEASED
      ^  |            |  ^ retest              |                          |
      |  +--delete--> DELETED                  |             (a newer version released)
      +----revert-----+------------revert------+                          v
                                                                       ARCHIVED

Only a DRAFT can be edited (title, sections, mini programs); a release at 100% archives the
version released before. ARCHIVED and DELETED are final. `RULES` below is the whole table of
who may send what where; `MINI_SERVICE.decide` never changes the state it is given.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mpr.domain.core.commands import Command
from mpr.domain.core.models import Role
from mpr.domain.core.rules import Accepted, Lifecycle, Rejected, Rule
from mpr.domain.mini_service.commands import (
    AddMiniProgram,
    AddSection,
    Delete,
    DeleteSection,
    EditSection,
    EditTitle,
    MoveMiniProgram,
    MoveSection,
    Release,
    RemoveMiniProgram,
    Retest,
    Revert,
    StartTest,
)
from mpr.domain.mini_service.models import (
    MAX_PROGRAMS_PER_SECTION,
    MAX_SECTIONS,
    MiniServiceContent,
    Section,
    SectionKind,
    ServiceStart,
)
from mpr.domain.mini_service.stages import FINAL_STATUSES, ServiceStatus
from mpr.domain.mini_service.state import MiniServiceState

SECTION_NUMBER = re.compile(r"section-(\d+)")


@dataclass(frozen=True)
class ServiceEffects:
    promote: bool = False
    """The version became RELEASED: the catalog archives the one released before."""


Decision = Accepted[MiniServiceState, ServiceEffects] | Rejected

OPERATORS = frozenset({Role.SERVICE_OPERATOR, Role.SERVICE_ADMIN})
# Putting a page in front of every user of the super app is for its admins only.
ADMINS = frozenset({Role.SERVICE_ADMIN})
DRAFT = frozenset({ServiceStatus.DRAFT})
PILOT_OR_ROLLOUT = frozenset({ServiceStatus.TESTING, ServiceStatus.RELEASING})
# A refused edit says what to do instead.
EDIT_HINTS = {
    ServiceStatus.TESTING: "only a DRAFT can be edited: revert it to DRAFT to edit",
    ServiceStatus.RELEASING: "only a DRAFT can be edited: revert it to DRAFT to edit",
    ServiceStatus.RELEASED: "only a DRAFT can be edited: duplicate it to make a new version",
}


def _after_highest_section_number(sections: list[Section]) -> int:
    """Numbering goes on after the highest section-N, not the count: a duplicated page may
    have gaps (deleted sections), and a new section must not take an id already on it."""
    numbers = [int(match.group(1)) for section in sections
               if (match := SECTION_NUMBER.fullmatch(section.section_id))]
    return max(numbers, default=0) + 1


def start_service(request: ServiceStart, ladder: list[int], now: datetime) -> MiniServiceState:
    content = request.content or MiniServiceContent.new()
    recommended = [s for s in content.sections if not s.is_default]
    return MiniServiceState(
        super_app=request.super_app,
        version_no=request.version_no,
        created_by=request.creator,
        duplicated_from=request.duplicated_from,
        status=ServiceStatus.DRAFT,
        content=content,
        ladder=ladder,
        next_section=_after_highest_section_number(recommended),
        created_at=now,
        updated_at=now,
        status_changed_at=now,
    )


def _edit_title(state: MiniServiceState, command: EditTitle, now: datetime) -> Decision:
    return _edited(state, now, state.content.model_copy(update={"title": command.title}))


def _start_test(state: MiniServiceState, command: StartTest | Retest, now: datetime) -> Decision:
    return _accepted(_moved(state, ServiceStatus.TESTING, now, testers=list(command.testers)))


def _revert(state: MiniServiceState, command: Revert, now: datetime) -> Decision:
    return _accepted(_moved(state, ServiceStatus.DRAFT, now, percent=0, testers=[]))


def _delete(state: MiniServiceState, command: Delete, now: datetime) -> Decision:
    return _accepted(_moved(state, ServiceStatus.DELETED, now))


def archived(state: MiniServiceState, now: datetime) -> MiniServiceState:
    """A newer version was released (the catalog archived this one)."""
    return _moved(state, ServiceStatus.ARCHIVED, now, percent=0)


def _add_section(state: MiniServiceState, command: AddSection, now: datetime) -> Decision:
    sections = state.content.sections
    if len(sections) >= MAX_SECTIONS:
        return Rejected(f"a mini service has at most {MAX_SECTIONS} sections")
    section = Section(section_id=f"section-{state.next_section}", kind=SectionKind.RECOMMENDED,
                      title=dict(command.title), mini_program_ids=list(command.mini_program_ids))
    position = len(sections) if command.position is None else command.position
    if position > len(sections):
        return Rejected(f"position {position} is past the end (0 to {len(sections)})")
    content = state.content.model_copy(
        update={"sections": [*sections[:position], section, *sections[position:]]})
    return _edited(state, now, content, next_section=state.next_section + 1)


def _change_section(
    state: MiniServiceState, command: EditSection | MoveSection | DeleteSection, now: datetime
) -> Decision:
    found = _find_section(state, command.section_id)
    if isinstance(found, Rejected):
        return found
    index, section = found
    sections = list(state.content.sections)
    match command:
        case EditSection():
            if command.title is not None and section.is_default:
                return Rejected(f"the {section.kind} section's name is the super app's own; "
                                "only recommendation sections have titles")
            if command.images is not None and section.kind not in (SectionKind.CAROUSEL,
                                                                   SectionKind.BANNER):
                return Rejected("only the carousel and the banner show images")
            changes: dict[str, Any] = {}
            if command.title is not None:
                changes["title"] = dict(command.title)
            if command.images is not None:
                changes["images"] = [str(url) for url in command.images]
            sections[index] = section.model_copy(update=changes)
        case MoveSection():
            if command.position >= len(sections):
                return Rejected(f"position {command.position} is past the end "
                                f"(0 to {len(sections) - 1})")
            sections.insert(command.position, sections.pop(index))
        case DeleteSection():
            if section.is_default:
                return Rejected(f"the {section.kind} section is one of the four default "
                                "sections and cannot be deleted")
            del sections[index]
            content = state.content.model_copy(update={"sections": sections})
            return _edited(state, now, content,
                           deleted_sections=[*state.deleted_sections, section.section_id])
    return _edited(state, now, state.content.model_copy(update={"sections": sections}))


def _change_programs(
    state: MiniServiceState,
    command: AddMiniProgram | RemoveMiniProgram | MoveMiniProgram,
    now: datetime,
) -> Decision:
    found = _find_section(state, command.section_id)
    if isinstance(found, Rejected):
        return found
    index, section = found
    if section.kind is not SectionKind.RECOMMENDED:
        return Rejected(f"the {section.kind} section does not list mini programs "
                        "chosen by operators")
    programs = list(section.mini_program_ids)
    program = command.mini_program_id
    key = f"{section.section_id}/{program}"
    removed = list(state.removed_programs)
    match command:
        case AddMiniProgram():
            if key in removed:
                return Rejected(f"{program} was deleted from {section.section_id} and cannot "
                                "be brought back in this version")
            if program in programs:
                return Rejected(f"{program} is already in {section.section_id}")
            if len(programs) >= MAX_PROGRAMS_PER_SECTION:
                return Rejected(f"a section lists at most {MAX_PROGRAMS_PER_SECTION} programs")
            position = len(programs) if command.position is None else command.position
            if position > len(programs):
                return Rejected(f"position {position} is past the end (0 to {len(programs)})")
            programs.insert(position, program)
        case RemoveMiniProgram() | MoveMiniProgram() if program not in programs:
            return Rejected(f"{program} is not in {section.section_id}")
        case RemoveMiniProgram():
            programs.remove(program)
            removed.append(key)
        case MoveMiniProgram():
            if command.position >= len(programs):
                return Rejected(f"position {command.position} is past the end "
                                f"(0 to {len(programs) - 1})")
            programs.insert(command.position, programs.pop(programs.index(program)))
    sections = list(state.content.sections)
    sections[index] = section.model_copy(update={"mini_program_ids": programs})
    return _edited(state, now, state.content.model_copy(update={"sections": sections}),
                   removed_programs=removed)


def _release(state: MiniServiceState, command: Release, now: datetime) -> Decision:
    if command.percent not in state.ladder:
        steps = ", ".join(f"{p}%" for p in state.ladder)
        return Rejected(f"{command.percent}% is not on {state.super_app}'s grayscale ladder "
                        f"({steps})")
    if command.percent <= state.percent:
        return Rejected(f"the release only increases: currently {state.percent}%, "
                        f"asked {command.percent}% (revert starts over)")
    if command.percent == 100:
        return _accepted(
            _moved(state, ServiceStatus.RELEASED, now, percent=100, released_at=now),
            ServiceEffects(promote=True),
        )
    return _accepted(_moved(state, ServiceStatus.RELEASING, now, percent=command.percent))


def _find_section(state: MiniServiceState, section_id: str) -> tuple[int, Section] | Rejected:
    for index, section in enumerate(state.content.sections):
        if section.section_id == section_id:
            return index, section
    if section_id in state.deleted_sections:
        return Rejected(f"section {section_id} was deleted and cannot be brought back")
    known = ", ".join(s.section_id for s in state.content.sections)
    return Rejected(f"no section {section_id!r} (sections: {known})")


def _edited(state: MiniServiceState, now: datetime, content: MiniServiceContent,
            **changes: Any) -> Decision:
    return _accepted(state.model_copy(update={"content": content, "updated_at": now,
                                              **changes}))


def _accepted(
    state: MiniServiceState, effects: ServiceEffects | None = None
) -> Accepted[MiniServiceState, ServiceEffects]:
    return Accepted(state, effects or ServiceEffects())


def _moved(state: MiniServiceState, status: ServiceStatus, now: datetime,
           **changes: Any) -> MiniServiceState:
    return state.model_copy(update={"status": status, "status_changed_at": now,
                                    "updated_at": now, **changes})


def _edit(
    payload: type[Command], apply: Callable[[MiniServiceState, Any, datetime], Decision]
) -> Rule[MiniServiceState, ServiceEffects, ServiceStatus]:
    """Content edits: DRAFT only, by the super app's operators."""
    return Rule(payload, DRAFT, OPERATORS, apply, hints=EDIT_HINTS)


RULES: dict[str, Rule[MiniServiceState, ServiceEffects, ServiceStatus]] = {
    "edit_title": _edit(EditTitle, _edit_title),
    "add_section": _edit(AddSection, _add_section),
    "edit_section": _edit(EditSection, _change_section),
    "move_section": _edit(MoveSection, _change_section),
    "delete_section": _edit(DeleteSection, _change_section),
    "add_mini_program": _edit(AddMiniProgram, _change_programs),
    "remove_mini_program": _edit(RemoveMiniProgram, _change_programs),
    "move_mini_program": _edit(MoveMiniProgram, _change_programs),
    "test": Rule(StartTest, DRAFT, OPERATORS, _start_test),
    "retest": Rule(Retest, frozenset({ServiceStatus.TESTING}), OPERATORS, _start_test),
    "revert": Rule(Revert, PILOT_OR_ROLLOUT, OPERATORS, _revert),
    "release": Rule(Release, PILOT_OR_ROLLOUT, ADMINS, _release),
    "delete": Rule(Delete, DRAFT, OPERATORS, _delete),
}

MINI_SERVICE: Lifecycle[MiniServiceState, ServiceEffects, ServiceStatus] = Lifecycle(
    rules=RULES,
    stages=ServiceStatus,
    finished=FINAL_STATUSES,
    stage_of=lambda state: state.status,
    subject=lambda state: f"mini service version {state.version_no}",
    scope=lambda state: f" on the {state.super_app} mini service",
    stage_word="status",
    # Seed 004: the super app's own operators create and duplicate versions of its page.
    start_roles=frozenset({Role.SERVICE_OPERATOR, Role.SERVICE_ADMIN}),
    starts="a version of this mini service",
)
