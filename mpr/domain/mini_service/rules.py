"""The mini service rules (seed 004): edit a DRAFT, pilot-test it, roll it out, archive it.

`decide` accepts a command with the next state, or refuses it with a reason; it never
changes the state it is given.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mpr.domain.core.commands import Command
from mpr.domain.core.models import Role
from mpr.domain.mini_service.commands import (
    EDITS,
    SERVICE_COMMAND_NAMES,
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
    service_roles_needed,
)
from mpr.domain.mini_service.models import (
    FINAL_STATUSES,
    MAX_PROGRAMS_PER_SECTION,
    MAX_SECTIONS,
    MiniServiceContent,
    MiniServiceState,
    Section,
    SectionKind,
    ServiceStart,
    ServiceStatus,
)
from mpr.domain.release.rules import Rejected

SECTION_NUMBER = re.compile(r"section-(\d+)")


@dataclass(frozen=True)
class ServiceAccepted:
    state: MiniServiceState
    promote: bool = False
    """The version became RELEASED: the catalog archives the one released before."""


ServiceDecision = ServiceAccepted | Rejected

ALLOWED: dict[str, frozenset[ServiceStatus]] = {
    **{name: frozenset({ServiceStatus.DRAFT}) for name in EDITS},
    "test": frozenset({ServiceStatus.DRAFT}),
    "retest": frozenset({ServiceStatus.TESTING}),
    "revert": frozenset({ServiceStatus.TESTING, ServiceStatus.RELEASING}),
    "release": frozenset({ServiceStatus.TESTING, ServiceStatus.RELEASING}),
    "delete": frozenset({ServiceStatus.DRAFT}),
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
        created_by=request.created_by,
        duplicated_from=request.duplicated_from,
        status=ServiceStatus.DRAFT,
        content=content,
        ladder=ladder,
        next_section=_after_highest_section_number(recommended),
        created_at=now,
        updated_at=now,
        status_changed_at=now,
    )


def decide(
    state: MiniServiceState, command: Command, roles: frozenset[Role], now: datetime
) -> ServiceDecision:
    name = SERVICE_COMMAND_NAMES[type(command)]
    if state.status in FINAL_STATUSES:
        return Rejected(f"mini service version {state.version_no} is {state.status} "
                        "and accepts no more commands")
    needed = service_roles_needed(command)
    if not roles & needed:
        return Rejected(
            f"{command.actor} is not authorised to {name} the {state.super_app} mini service: "
            f"needs {' or '.join(sorted(needed))} for {state.super_app}"
        )
    if state.status not in ALLOWED[name]:
        return Rejected(_wrong_status(state, name))
    match command:
        case EditTitle():
            return _edited(state, now, state.content.model_copy(update={"title": command.title}))
        case AddSection():
            return _add_section(state, command, now)
        case EditSection() | MoveSection() | DeleteSection():
            return _change_section(state, command, now)
        case AddMiniProgram() | RemoveMiniProgram() | MoveMiniProgram():
            return _change_programs(state, command, now)
        case StartTest() | Retest():
            return ServiceAccepted(_moved(state, ServiceStatus.TESTING, now,
                                          testers=list(command.testers)))
        case Revert():
            return ServiceAccepted(_moved(state, ServiceStatus.DRAFT, now, percent=0, testers=[]))
        case Release():
            return _release(state, command, now)
        case Delete():
            return ServiceAccepted(_moved(state, ServiceStatus.DELETED, now))
    raise AssertionError(f"no rule for {name}")  # pragma: no cover - every command has a case


def archived(state: MiniServiceState, now: datetime) -> MiniServiceState:
    """A newer version was released (the catalog archived this one)."""
    return _moved(state, ServiceStatus.ARCHIVED, now, percent=0)


def _wrong_status(state: MiniServiceState, name: str) -> str:
    if name in EDITS:
        hint = {
            ServiceStatus.TESTING: "; revert it to DRAFT to edit",
            ServiceStatus.RELEASING: "; revert it to DRAFT to edit",
            ServiceStatus.RELEASED: "; duplicate it to make a new version",
        }.get(state.status, "")
        return f"only a DRAFT can be edited: version {state.version_no} is {state.status}{hint}"
    allowed = ", ".join(sorted(ALLOWED[name]))
    return f"{name} is not allowed in status {state.status} (allowed in: {allowed})"


def _add_section(state: MiniServiceState, command: AddSection, now: datetime) -> ServiceDecision:
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
) -> ServiceDecision:
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
) -> ServiceDecision:
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
                                "be brought back in this version (seed 004)")
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


def _release(state: MiniServiceState, command: Release, now: datetime) -> ServiceDecision:
    if command.percent not in state.ladder:
        steps = ", ".join(f"{p}%" for p in state.ladder)
        return Rejected(f"{command.percent}% is not on {state.super_app}'s grayscale ladder "
                        f"({steps})")
    if command.percent <= state.percent:
        return Rejected(f"the release only increases: currently {state.percent}%, "
                        f"asked {command.percent}% (revert starts over)")
    if command.percent == 100:
        return ServiceAccepted(
            _moved(state, ServiceStatus.RELEASED, now, percent=100, released_at=now),
            promote=True,
        )
    return ServiceAccepted(_moved(state, ServiceStatus.RELEASING, now, percent=command.percent))


def _find_section(state: MiniServiceState, section_id: str) -> tuple[int, Section] | Rejected:
    for index, section in enumerate(state.content.sections):
        if section.section_id == section_id:
            return index, section
    if section_id in state.deleted_sections:
        return Rejected(f"section {section_id} was deleted and cannot be brought back (seed 004)")
    known = ", ".join(s.section_id for s in state.content.sections)
    return Rejected(f"no section {section_id!r} (sections: {known})")


def _edited(state: MiniServiceState, now: datetime, content: MiniServiceContent,
            **changes: Any) -> ServiceAccepted:
    return ServiceAccepted(state.model_copy(update={"content": content, "updated_at": now,
                                                    **changes}))


def _moved(state: MiniServiceState, status: ServiceStatus, now: datetime,
           **changes: Any) -> MiniServiceState:
    return state.model_copy(update={"status": status, "status_changed_at": now,
                                    "updated_at": now, **changes})
