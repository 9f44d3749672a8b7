"""Model-based test of the mini service rules (seed 004): random command sequences, sent by
random actors to several versions of one super app's page, are applied both by
`domain.mini_service.rules` (with the machine playing the workflow and the catalog's
in-flight slot and archiving around it) and by the independent reference model, which must
agree after every step; the invariants of the process are checked on the real states.
"""

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from mpr.domain.core.commands import Command, parse
from mpr.domain.core.rules import Rejected
from mpr.domain.mini_service.models import ServiceStart
from mpr.domain.mini_service.rules import MINI_SERVICE, RULES, archived, start_service
from mpr.domain.mini_service.stages import IN_FLIGHT, ServiceStatus
from mpr.domain.mini_service.state import MiniServiceState
from tests.model import reference
from tests.model.reference import Payload, ServiceModel, Version
from tests.model.test_release_model import (
    MACHINE_SETTINGS,
    START,
    Sent,
    Vocabulary,
    among,
    draw_command,
    first_holding,
    malformed,
    roles_of,
    sent,
)

SERVICE_COMMANDS = MINI_SERVICE.commands
decide = MINI_SERVICE.decide

IMAGE = "https://cdn.example.com/carousel-1.png"

# Well-formed payloads; many are refused by the rules all the same (a section that is not
# there or is a default one, a position past the end, a percent off the ladder...).
SERVICE_PAYLOADS: dict[str, list[Payload]] = {
    "edit_title": [
        {"title": {"default_language": "en", "texts": {"en": "Services", "id": "Layanan"}}},
        {"title": {"default_language": "id", "texts": {"id": "Layanan"}}},
    ],
    "add_section": [
        {"title": {"en": "Food"}},
        {"title": {"en": "Travel", "id": "Wisata"}, "mini_program_ids": ["coffee-shop",
                                                                        "noodle-bar"]},
        {"title": {"en": "New"}, "mini_program_ids": ["tea-house"], "position": 0},
        {"title": {"en": "Late"}, "position": 9},
    ],
    "edit_section": [
        {"section_id": "section-1", "title": {"en": "Meals"}},
        {"section_id": "carousel", "images": [IMAGE]},
        {"section_id": "banner", "images": []},
        {"section_id": "banner", "title": {"en": "Badge"}},
        {"section_id": "favorite", "images": [IMAGE]},
        {"section_id": "section-2", "images": [IMAGE], "title": {"en": "Pics"}},
    ],
    "move_section": [{"section_id": section, "position": position} for section, position in
                     [("section-1", 0), ("carousel", 3), ("section-2", 5), ("banner", 9)]],
    "delete_section": [{"section_id": "section-1"}, {"section_id": "section-2"},
                       {"section_id": "section-3"}, {"section_id": "favorite"}],
    "add_mini_program": [
        {"section_id": "section-1", "mini_program_id": "tea-house"},
        {"section_id": "section-2", "mini_program_id": "coffee-shop", "position": 0},
        {"section_id": "section-1", "mini_program_id": "noodle-bar", "position": 5},
        {"section_id": "recently-used", "mini_program_id": "tea-house"},
    ],
    "remove_mini_program": [
        {"section_id": "section-1", "mini_program_id": "coffee-shop"},
        {"section_id": "section-2", "mini_program_id": "noodle-bar"},
        {"section_id": "section-1", "mini_program_id": "tea-house"},
    ],
    "move_mini_program": [
        {"section_id": "section-1", "mini_program_id": "noodle-bar", "position": 0},
        {"section_id": "section-2", "mini_program_id": "coffee-shop", "position": 1},
    ],
    "test": [{"testers": ["qa@example.com"]}, {"testers": ["qa@example.com", "pm@example.com"]}],
    "retest": [{"testers": ["ops@example.com"]}],
    "revert": [{}],
    "release": [{"percent": percent} for percent in (1, 2, 5, 20, 50, 99, 100)],
    "delete": [{}],
}
MALFORMED_SERVICE_COMMANDS: list[tuple[Any, ...]] = [
    ("edit_title", ({"actor": "olly", "title": {"default_language": "fr",
                                                "texts": {"en": "Services"}}},)),
    ("edit_title", ({"actor": "olly", "title": {"default_language": "en",
                                                "texts": {"EN!": "Services"}}},)),
    ("add_section", ({"actor": "olly", "title": {}},)),
    ("add_section", ({"actor": "olly", "title": {"en": "   "}},)),
    ("add_section", ({"actor": "olly", "title": {"en": "Food"},
                      "mini_program_ids": ["tea-house", "tea-house"]},)),
    ("edit_section", ({"actor": "olly", "section_id": "section-1"},)),
    ("edit_section", ({"actor": "olly", "section_id": "carousel", "images": ["not a url"]},)),
    ("move_section", ({"actor": "olly", "section_id": "section-1", "position": -1},)),
    ("add_mini_program", ({"actor": "olly", "section_id": "section-1",
                           "mini_program_id": "bad id!"},)),
    ("test", ({"actor": "olly", "testers": []},)),
    ("test", ({"actor": "olly", "testers": ["not-an-email"]},)),
    ("retest", ({"actor": "olly", "testers": ["qa@example.com", "qa@example.com"]},)),
    ("release", ({"actor": "sam", "percent": 0},)),
    ("release", ({"actor": "sam", "percent": "half"},)),
    ("revert", ({"actor": "olly", "force": True},)),
    ("delete", ("olly",)),
    ("delete", ()),
    ("relase", ({"actor": "sam", "percent": 5},)),
    # Forged: the service admin's name in `actor`, sent with an operator's token.
    ("release", ({"actor": "sam", "percent": 5},), "olly"),
]
malformed_service_command = st.sampled_from(MALFORMED_SERVICE_COMMANDS).map(malformed)


def model_accepts(model: ServiceModel, version_no: int, name: str, payload: Payload,
                  alone: bool) -> bool:
    """Would the model accept this from someone holding the role, perhaps were the version
    `alone` (no other version in flight)? Asked of a copy."""
    versions = {version_no: model.versions[version_no]} if alone else dict(model.versions)
    trial = ServiceModel(model.ladder, versions)
    return trial.command(version_no, name, payload, reference.SERVICE_WHO[name])


SERVICES = Vocabulary(
    payloads=SERVICE_PAYLOADS, malformed=malformed_service_command,
    when=reference.SERVICE_WHEN,
    forward=frozenset({"add_section", "add_mini_program", "test", "release"}),
    ending="delete", needed_roles=lambda name, payload: reference.SERVICE_WHO[name],
    where=lambda model, version_no: model.versions[version_no].status,
    accepts=model_accepts)


def projected(state: MiniServiceState) -> Payload:
    """What the model describes of a real version."""
    return {
        "status": state.status, "percent": state.percent, "testers": list(state.testers),
        "title": state.content.title.model_dump(),
        "sections": [(s.section_id, s.kind.value, dict(s.title), list(s.mini_program_ids),
                      list(s.images)) for s in state.content.sections],
    }


def modelled(version: Version) -> Payload:
    return {
        "status": version.status, "percent": version.percent, "testers": list(version.testers),
        "title": version.title,
        "sections": [(s.section_id, s.kind, dict(s.title), list(s.programs), list(s.images))
                     for s in version.sections],
    }


# Every well-formed command from someone holding its role, parsed once.
PROBES = [(name, payload, parse(name, ({"actor": first_holding(reference.SERVICE_WHO[name]),
                                        **payload},), SERVICE_COMMANDS))
          for name, payloads in sorted(SERVICE_PAYLOADS.items()) for payload in payloads]
SUPER_APP = "gopay"
LADDERS = ((1, 2, 5, 10, 20, 50, 100), (1, 5, 20, 50, 100))
MAX_VERSIONS = 3
DEFAULT_KINDS = ["carousel", "banner", "favorite", "recently_used"]


class ServiceRulesMachine(RuleBasedStateMachine):
    """Versions 1, 2, 3 of one super app's mini service page."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = START
        self.ladder = list(LADDERS[0])
        self.model = ServiceModel(LADDERS[0])
        self.states: dict[int, MiniServiceState] = {}
        self.previous: dict[int, MiniServiceState] = {}
        self.last_step: tuple[int, str, bool] | None = None  # version, command, accepted
        self.addressed: int | None = None  # the version the last step was about
        self.touched: set[int] = set()  # the versions the last step may have changed

    def _now(self) -> datetime:
        # Time moves on at every step, so a refusal that touched updated_at would show.
        self.clock += timedelta(minutes=1)
        return self.clock

    def _create(self, copy_of: int | None = None) -> None:
        version_no = len(self.states) + 1
        content = self.states[copy_of].content if copy_of else None
        request = ServiceStart(super_app=SUPER_APP, version_no=version_no, created_by="olly",
                               content=content, duplicated_from=copy_of)
        self.states[version_no] = start_service(request, self.ladder, self._now())
        self.model.create(version_no, copy_of)
        self.last_step, self.addressed, self.touched = None, version_no, {version_no}

    @initialize(ladder=st.sampled_from(LADDERS))
    def create_first_version(self, ladder: tuple[int, ...]) -> None:
        self.ladder, self.model = list(ladder), ServiceModel(ladder)
        self._create()

    @precondition(lambda self: len(self.states) < MAX_VERSIONS)
    @rule()
    def create_another_version(self) -> None:
        self._create()

    @rule(data=st.data())
    def send_command(self, data: st.DataObject) -> None:
        # Mostly to the versions still under way: the ended ones refuse everything.
        live = sorted(n for n, s in self.states.items() if s.status not in reference.ENDED)
        version_no = data.draw(among(tuple(live * 3 + sorted(self.states))), label="version")
        self._send(version_no, draw_command(data.draw, SERVICES, self.model, version_no))

    def _send(self, version_no: int, command: Sent) -> None:
        note(f"version {version_no} <- {command}")
        before = self.states[version_no]
        dump = before.model_dump()
        released = {n for n, s in self.states.items() if s.status is ServiceStatus.RELEASED}
        now = self._now()
        parsed = command.parsed(SERVICE_COMMANDS)
        after = None if parsed is None else self._workflow_decides(version_no, parsed, now)
        expected = self.model.command(version_no, command.name, command.payload,
                                      roles_of(command.actor))
        assert before.model_dump() == dump, "decide changed the state it was given"
        assert (after is not None) == expected, (
            f"{command} was {'accepted' if after else 'refused'} by the rules but "
            f"{'accepted' if expected else 'refused'} by the model")
        self.last_step = (version_no, command.name, after is not None)
        self.addressed, self.touched = version_no, {version_no}
        if after is None:
            return
        if after.status is ServiceStatus.RELEASED:  # the catalog archives the one before
            for n in released:
                self.states[n] = archived(self.states[n], now)
            self.touched |= released
        self.states[version_no] = after

    def _workflow_decides(self, version_no: int, command: Command,
                          now: datetime) -> MiniServiceState | None:
        """What MiniServiceRelease._apply_command makes of a parsed command: the version's
        next state, or None when the rules or the catalog's in-flight slot refuse it."""
        decision = decide(self.states[version_no], command, roles_of(command.actor), now)
        if isinstance(decision, Rejected):
            return None
        after = decision.state
        assert decision.effects.promote == (after.status is ServiceStatus.RELEASED)
        # The unique index mini_service_versions_in_flight refuses a second one in flight.
        if after.status in IN_FLIGHT and any(
                other.status in IN_FLIGHT for n, other in self.states.items() if n != version_no):
            return None
        return after

    # --- invariants, on the real states --------------------------------------------------

    @invariant()
    def every_command_is_judged_alike(self) -> None:
        """Each well-formed command, from someone holding its role, is tried on the version
        the last step was about (and nothing is kept): the rules and the model agree on all.
        Sent one at a time, most would pass by each state too rarely to be noticed."""
        version_no = self.addressed
        if version_no is None:
            return
        before = self.states[version_no].model_dump()
        for name, payload, command in PROBES:
            real = self._workflow_decides(version_no, command, self.clock) is not None
            model = model_accepts(self.model, version_no, name, payload, alone=False)
            assert real == model, (
                f"version {version_no} {self.states[version_no].status}: {name} {payload} is "
                f"{'accepted' if real else 'refused'} by the rules but "
                f"{'accepted' if model else 'refused'} by the model")
        assert self.states[version_no].model_dump() == before

    @invariant()
    def agrees_with_the_model(self) -> None:
        for version_no, state in self.states.items():
            real, model = projected(state), modelled(self.model.versions[version_no])
            assert real == model, f"version {version_no}: the rules {real}, the model {model}"

    @invariant()
    def steps_are_lawful(self) -> None:
        for version_no, state in self.states.items():
            before = self.previous.get(version_no)
            if before is None:
                continue
            if version_no not in self.touched or before.status in reference.ENDED:
                assert state == before, f"version {version_no} changed"
            was, now = before.status, state.status
            if was is ServiceStatus.RELEASED:  # released: only archiving changes it
                assert now in (ServiceStatus.RELEASED, ServiceStatus.ARCHIVED), now
                assert state == before or now is ServiceStatus.ARCHIVED
            if now is ServiceStatus.RELEASED and was is not ServiceStatus.RELEASED:
                assert was in IN_FLIGHT, f"released from {was}"
            if state.percent < before.percent:
                assert self.last_step == (version_no, "revert", True) or (
                    now is ServiceStatus.ARCHIVED), f"{before.percent}% -> {state.percent}%"
        self.previous = dict(self.states)

    @invariant()
    def one_version_in_flight_and_one_released_at_most(self) -> None:
        statuses = [state.status for state in self.states.values()]
        assert sum(status in IN_FLIGHT for status in statuses) <= 1, statuses
        assert statuses.count(ServiceStatus.RELEASED) <= 1, statuses

    @invariant()
    def pages_stay_well_formed(self) -> None:
        for state in self.states.values():
            sections = state.content.sections
            ids = [section.section_id for section in sections]
            assert len(ids) == len(set(ids)), f"duplicate section ids: {ids}"
            kinds = [s.kind.value for s in sections if s.kind.value != "recommended"]
            assert sorted(kinds) == sorted(DEFAULT_KINDS), kinds
            assert state.percent == 0 or state.percent in self.ladder
            if state.status is ServiceStatus.DRAFT:  # a draft is shown to no one
                assert state.percent == 0 and not state.testers


TestServiceRules = ServiceRulesMachine.TestCase
TestServiceRules.settings = MACHINE_SETTINGS


# A page whose first recommendation section was deleted, then released.
RELEASED_WITH_A_GAP: list[tuple[str, Payload]] = [
    ("add_section", {"title": {"en": "Food"}}),
    ("add_section", {"title": {"en": "Travel"}}),
    ("delete_section", {"section_id": "section-1"}),
    ("test", {"testers": ["qa@example.com"]}),
    ("release", {"percent": 100}),
]


class DuplicatingServiceMachine(ServiceRulesMachine):
    """The same, from a page released with a recommendation section deleted, and released or
    archived versions are duplicated into new drafts."""

    @initialize(ladder=st.sampled_from(LADDERS))
    def create_first_version(self, ladder: tuple[int, ...]) -> None:
        super().create_first_version(ladder)
        for name, payload in RELEASED_WITH_A_GAP:
            self._send(1, sent(name, "sam", payload))
            assert self.last_step == (1, name, True), self.last_step

    @precondition(lambda self: len(self.states) < MAX_VERSIONS and any(
        s.status in (ServiceStatus.RELEASED, ServiceStatus.ARCHIVED)
        for s in self.states.values()))
    @rule(data=st.data())
    def duplicate_a_version(self, data: st.DataObject) -> None:
        sources = sorted(n for n, s in self.states.items()
                         if s.status in (ServiceStatus.RELEASED, ServiceStatus.ARCHIVED))
        self._create(copy_of=data.draw(among(tuple(sources)), label="duplicate"))


def test_duplicated_versions_follow_the_model() -> None:
    # Starts from a released page with a gap in its section numbers (section-1 deleted): the
    # model found that duplicates of such a page reused a section id.
    run_state_machine_as_test(DuplicatingServiceMachine, settings=settings(
        MACHINE_SETTINGS, derandomize=True, database=None, phases=[Phase.generate],
        print_blob=False))


def test_a_duplicate_never_reuses_a_section_id() -> None:
    """The smallest failing example, as a plain test."""
    admin = roles_of("sam")
    draft = start_service(ServiceStart(super_app=SUPER_APP, version_no=1, created_by="olly"),
                          [1, 100], START)
    for name, payload in RELEASED_WITH_A_GAP[:3]:
        decision = decide(draft, parse(name, ({"actor": "sam", **payload},), SERVICE_COMMANDS),
                          admin, START)
        assert not isinstance(decision, Rejected), decision
        draft = decision.state
    copy = start_service(ServiceStart(super_app=SUPER_APP, version_no=2, created_by="olly",
                                      content=draft.content, duplicated_from=1), [1, 100], START)
    decision = decide(copy, parse("add_section", ({"actor": "sam", "title": {"en": "New"}},),
                                  SERVICE_COMMANDS), admin, START)
    assert not isinstance(decision, Rejected), decision
    ids = [section.section_id for section in decision.state.content.sections]
    assert len(ids) == len(set(ids)), ids


def test_the_machine_notices_a_broken_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine can fail: let a pilot test be edited (seed 004 says it cannot be)."""
    edit_title = RULES["edit_title"]
    monkeypatch.setitem(RULES, "edit_title", dataclasses.replace(
        edit_title, allowed_in=edit_title.allowed_in | {ServiceStatus.TESTING}))
    with pytest.raises(AssertionError, match="accepted by the rules but refused by the model"):
        run_state_machine_as_test(ServiceRulesMachine, settings=settings(
            MACHINE_SETTINGS, derandomize=True, database=None, phases=[Phase.generate],
            print_blob=False))


def test_the_generators_tell_the_model_the_truth() -> None:
    """Well-formed payloads are taken from whoever sends them, and malformed or forged ones
    from nobody: the model takes it on trust."""
    for name, payloads in SERVICE_PAYLOADS.items():
        for payload in payloads:
            assert sent(name, "olly", payload).parsed(SERVICE_COMMANDS) is not None
    for command in MALFORMED_SERVICE_COMMANDS:
        assert malformed(command).parsed(SERVICE_COMMANDS) is None, command
