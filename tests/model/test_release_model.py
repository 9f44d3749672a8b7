"""Model-based test of the release rules: random command sequences, sent by random actors to
several releases of one mini program on one channel, are applied both by `domain.rules` (with
the machine playing the workflow and the catalog's channel hold around it) and by the
independent reference model, which must agree after every step; the invariants of the
process are checked on the real states.

The command generators and projections here are shared with test_workflow_model.py.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from mpr.domain.core.commands import Command, ParseFailure, parse, payload_of
from mpr.domain.core.identity import IdentityVerdict, actor_refusal, claimed_actor
from mpr.domain.core.models import Role
from mpr.domain.core.rules import Rejected
from mpr.domain.release.models import (
    AppManifest,
    CompatibilityReport,
    Environment,
    PackageFacts,
    ReleaseContext,
    Reviewer,
    StartInput,
    TargetAppPolicy,
)
from mpr.domain.release.release_id import release_id
from mpr.domain.release.rules import (
    RELEASE,
    build_failed,
    build_succeeded,
    compatibility_finished,
    start_release,
)
from mpr.domain.release.stages import CHANNEL_HOLDING_STAGES, Stage
from mpr.domain.release.state import ReleaseState, Work
from tests.model import reference
from tests.model.reference import Payload, Policy, ReleaseModel, merge_config

# --- Actors -------------------------------------------------------------------------------

# Named members with the roles the catalog grants them for the release or the mini service
# under test.
PERSONAS: dict[str, frozenset[Role]] = {
    "olga": frozenset({Role.OWNER}),
    "adam": frozenset({Role.ADMIN}),
    "max": frozenset({Role.MASTER}),
    "alice": frozenset({Role.DEVELOPER}),
    "paula": frozenset({Role.PROGRAM_ADMIN}),
    "priya": frozenset({Role.PLATFORM_REVIEWER}),
    "petra": frozenset({Role.PARTNER_REVIEWER}),
    "lead": frozenset({Role.DEVELOPER, Role.PROGRAM_ADMIN}),
    "olly": frozenset({Role.SERVICE_OPERATOR}),
    "sam": frozenset({Role.SERVICE_ADMIN}),
    "nobody": frozenset(),
}
ANYONE = "anyone-"


def roles_of(actor: str | None) -> frozenset[Role]:
    """A persona's roles, or the roles spelled in a random actor's name."""
    if actor is None:
        return frozenset()
    if actor in PERSONAS:
        return PERSONAS[actor]
    return frozenset(Role(role) for role in actor.removeprefix(ANYONE).split("+") if role)


# Random actors carry any roles, spelled in their name so that the fake catalog of the
# workflow test can hand them out too.
random_actors = st.frozensets(st.sampled_from(list(Role)), max_size=3).map(
    lambda roles: ANYONE + "+".join(sorted(roles)))


@cache
def among(options: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    """One of `options` (a tuple, so that the strategy is built once: building strategies
    afresh at every step costs more than running the rules)."""
    return st.sampled_from(options)


def holding(roles: frozenset[Role]) -> st.SearchStrategy[str]:
    """A persona holding one of `roles`."""
    return among(tuple(sorted(name for name, held in PERSONAS.items() if held & roles)))


@cache
def first_holding(roles: frozenset[Role]) -> str:
    return min(name for name, held in PERSONAS.items() if held & roles)


@cache
def lacking(roles: frozenset[Role]) -> st.SearchStrategy[str]:
    """Someone holding none of `roles`: a persona, or anyone with other roles."""
    return st.one_of(
        among(tuple(sorted(name for name, held in PERSONAS.items() if not held & roles))),
        random_actors.filter(lambda actor: not roles_of(actor) & roles))


# --- Commands -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """A command as it reaches the workflow: its name and raw arguments, whether the
    generator built it well-formed (the reference model takes that on trust), and whose valid
    identity token it carries: the verified sender is the actor, whatever `actor` claims."""

    name: str
    args: tuple[Any, ...]
    well_formed: bool
    sender: str = "alice"

    def parsed(self, commands: Mapping[str, type[Command]]) -> Command | None:
        """What the command core (workflows/command_core.py) makes of it once the token
        verified as `sender`: the command as the sender sent it, or None when it is refused
        before the rules (malformed, or an actor field naming someone else)."""
        try:
            payload = payload_of(self.name, self.args, commands)
        except ParseFailure:
            return None
        verdict = IdentityVerdict(subject=self.sender)
        if actor_refusal(verdict, claimed_actor(payload)) is not None:
            return None
        try:
            return parse(self.name, ({**payload, "actor": self.sender},), commands)
        except ParseFailure:
            return None

    @property
    def payload(self) -> Payload | None:
        """The payload without the actor, or None for a malformed command."""
        if not self.well_formed:
            return None
        return {key: value for key, value in self.args[0].items() if key != "actor"}

    @property
    def actor(self) -> str:
        """Who acts: the verified sender."""
        return self.sender


def sent(name: str, actor: str, payload: Payload) -> Sent:
    """A well-formed command from `actor`: their token speaks, the payload names no actor."""
    return Sent(name, (dict(payload),), True, sender=actor)


def malformed(command: tuple[Any, ...]) -> Sent:
    """A command the model refuses: malformed, or (with a third element, its sender) naming
    another actor than the token's. A malformed one is sent by the actor it names."""
    name, args, *sender = command
    named = args[0].get("actor") if len(args) == 1 and isinstance(args[0], dict) else None
    return Sent(name, args, False, sender=sender[0] if sender else
                named if isinstance(named, str) and named else "alice")


# Well-formed payloads; several are refused by the rules all the same (an empty config, a
# reviewer the app does not require, a percent off the ladder or not above the current one).
RELEASE_PAYLOADS: dict[str, list[Payload]] = {
    "update_config": [
        {"config": {"basic_info": {"description": "Order coffee ahead"}}},
        {"config": {"basic_info": {"name": "Coffee Two"}}},
        {"config": {"server_domain_whitelist": ["api.coffee.example.com"]}},
        {"config": {"basic_info": {"icon": "https://cdn.example.com/i.png"},
                    "h5_domain_whitelist": ["h5.coffee.example.com"]}},
        {"config": {}},
    ],
    "rebuild": [{}, {"source": "/src/coffee-v2"}, {"source": "/src/broken"}],
    "retest_compatibility": [{}],
    "apply_release": [{}, {"basic_info": {"name": "Coffee Shop"}},
                      {"server_domain_whitelist": ["api.coffee.example.com"]}],
    "approve_review": [{"reviewer": "platform"}, {"reviewer": "partner_app", "comment": "ok"}],
    "reject_review": [{"reviewer": "platform", "reason": "no privacy policy"},
                      {"reviewer": "partner_app", "reason": "crashes on start"}],
    "start_whitelist_test": [{"user_ids": ["u1"]}, {"user_ids": ["u1", "u2", "u3"]}],
    "set_grayscale": [{"percent": p} for p in (1, 2, 3, 5, 10, 20, 25, 50, 99, 100)],
    "full_release": [{}],
    "cancel_grayscale": [{}, {"reason": "crash rate above 0.5%"}],
    "reset_grayscale": [{}],
    "cancel_release": [{}, {"reason": "superseded"}],
}

MALFORMED_RELEASE_COMMANDS: list[tuple[Any, ...]] = [
    ("update_config", ({"actor": "alice", "config": {"colour": "red"}},)),
    ("update_config", ({"actor": "alice"},)),
    ("update_config", ({"actor": "alice",
                        "config": {"server_domain_whitelist": ["not a domain"]}},)),
    ("rebuild", ({"actor": "alice", "source": ""},)),
    ("apply_release", ({"actor": "alice", "basic_info": {"name": ""}},)),
    ("apply_release", ({"actor": "alice", "percent": 3},)),
    ("approve_review", ({"actor": "petra", "reviewer": "boss"},)),
    ("reject_review", ({"actor": "petra", "reviewer": "partner_app"},)),
    ("reject_review", ({"actor": "petra", "reviewer": "partner_app", "reason": ""},)),
    ("start_whitelist_test", ({"actor": "adam", "user_ids": []},)),
    ("start_whitelist_test", ({"actor": "adam", "user_ids": ["u1", "u1"]},)),
    ("set_grayscale", ({"actor": "adam", "percent": 0},)),
    ("set_grayscale", ({"actor": "adam", "percent": 101},)),
    ("set_grayscale", ({"actor": "adam", "percent": "ten"},)),
    # Forged: the admin's name in `actor`, sent with the developer's token.
    ("set_grayscale", ({"actor": "adam", "percent": 5},), "alice"),
    ("full_release", ({"actor": "adam"},), "alice"),
    ("full_release", ({"actor": ""},)),
    ("full_release", ({"actor": "adam", "force": True},)),
    ("cancel_release", ("olga",)),
    ("cancel_release", ()),
    ("cancel_release", ({"actor": "olga"}, {"actor": "olga"})),
    ("aply_release", ({"actor": "alice"},)),
]


malformed_release_command = st.sampled_from(MALFORMED_RELEASE_COMMANDS).map(malformed)


FORWARD = frozenset({"apply_release", "approve_review", "start_whitelist_test", "set_grayscale"})


def needed_roles(name: str, payload: Payload) -> frozenset[Role]:
    if name in ("approve_review", "reject_review"):
        return frozenset({reference.REVIEWER_ROLE[Reviewer(payload["reviewer"])]})
    return reference.WHO[name]


def model_accepts(model: ReleaseModel, release: str, name: str, payload: Payload, *,
                  alone: bool = False) -> bool:
    """Would the model accept this from someone holding the role, perhaps were the release
    `alone` on its channel (no other release holding it)? Asked of a copy."""
    releases = {release: model.releases[release]} if alone else dict(model.releases)
    trial = ReleaseModel(model.policy, releases, model.stable_version, model.production)
    return trial.command(release, name, payload, needed_roles(name, payload))


Draw = Callable[[st.SearchStrategy[Any]], Any]
FLAVOURS = ("accepted", "forward", "accepted", "refused", "unauthorised", "any stage",
            "malformed")
one_in_ten = st.integers(0, 9).map(lambda n: n == 9)  # never the value Hypothesis starts from


@dataclass(frozen=True, eq=False)  # hashed by identity, for the cache of among_payloads
class Vocabulary:
    """What the command generator needs to know of a process (releases, mini services)."""

    payloads: dict[str, list[Payload]]
    malformed: st.SearchStrategy[Sent]
    when: dict[str, frozenset[Any]]
    """Where the model allows each command."""
    forward: frozenset[str]
    """The commands that move towards the rollout."""
    ending: str
    """The command that ends it (nearly) anywhere: drawn as often as the rest, it would end
    most of them before they go live, so every flavour sends it rarely."""
    needed_roles: Callable[[str, Payload], frozenset[Role]]
    where: Callable[[Any, Any], Any]
    """The model's stage (or status) of a release (or version)."""
    accepts: Callable[[Any, Any, str, Payload, bool], bool]
    """Would the model accept (model, key, name, payload, as if alone on its channel)?"""

    @cached_property
    def candidates(self) -> list[tuple[str, int]]:
        return [(name, index) for name, payloads in sorted(self.payloads.items())
                for index in range(len(payloads))]


def draw_command(draw: Draw, vocabulary: Vocabulary, model: Any, key: Any,
                 flavours: tuple[str, ...] = FLAVOURS) -> Sent:
    """A command in one of six flavours: one the model accepts (what moves things along);
    the same moving towards the rollout, perhaps into a channel another one holds; one the
    model refuses although sent where it is allowed by someone holding the role (a percent
    off the ladder, a first release to a full-only app...); one allowed there but from
    someone without the role; any command from someone holding its role, wherever it is;
    or a malformed one."""
    flavour = draw(among(flavours))
    if flavour == "malformed":
        malformed: Sent = draw(vocabulary.malformed)
        return malformed
    payloads, where = vocabulary.payloads, vocabulary.where(model, key)
    if flavour in ("accepted", "forward", "refused"):
        alone, wanted = flavour == "forward", flavour != "refused"
        choices = [(name, index) for name, index in vocabulary.candidates
                   if where in vocabulary.when[name] and wanted == vocabulary.accepts(
                       model, key, name, payloads[name][index], alone)]
        if flavour == "forward":
            choices = [c for c in choices if c[0] in vocabulary.forward] or choices
        if flavour != "refused" and not draw(one_in_ten):
            choices = [c for c in choices if c[0] != vocabulary.ending]
        if choices:
            name, index = draw(among(tuple(choices)))
            payload = payloads[name][index]
            return sent(name, draw(holding(vocabulary.needed_roles(name, payload))), payload)
    names = sorted(payloads)
    if flavour == "unauthorised":  # refused whatever it is: the ending command is no risk
        names = [name for name in names if where in vocabulary.when[name]] or names
        name = draw(among(tuple(names)))
        payload = draw(among_payloads(vocabulary, name))
        return sent(name, draw(lacking(vocabulary.needed_roles(name, payload))), payload)
    names = [name for name in names if name != vocabulary.ending]
    name = vocabulary.ending if draw(one_in_ten) else draw(among(tuple(names)))
    payload = draw(among_payloads(vocabulary, name))
    return sent(name, draw(holding(vocabulary.needed_roles(name, payload))), payload)


@cache
def among_payloads(vocabulary: Vocabulary, name: str) -> st.SearchStrategy[Payload]:
    return st.sampled_from(vocabulary.payloads[name])


RELEASES = Vocabulary(
    payloads=RELEASE_PAYLOADS, malformed=malformed_release_command, when=reference.WHEN,
    forward=FORWARD, ending="cancel_release", needed_roles=needed_roles,
    where=lambda model, release: model.releases[release].stage,
    accepts=lambda model, release, name, payload, alone: model_accepts(
        model, release, name, payload, alone=alone))


# --- Target apps and the comparison with the model -------------------------------------------

# As seeded by catalog/migrations/001_catalog.sql.
POLICIES = {
    "alipaycn": TargetAppPolicy(target_app="alipaycn",
                                required_reviewers=[Reviewer.PLATFORM, Reviewer.PARTNER_APP],
                                whitelist_allowed=False),
    "gopay": TargetAppPolicy(target_app="gopay", required_reviewers=[Reviewer.PARTNER_APP],
                             first_release_full_only=True),
    "dana": TargetAppPolicy(target_app="dana",
                            required_reviewers=[Reviewer.PLATFORM, Reviewer.PARTNER_APP],
                            first_release_full_only=True,
                            grayscale_ladder=[1, 5, 10, 25, 50, 100]),
    "gcash": TargetAppPolicy(target_app="gcash", required_reviewers=[Reviewer.PARTNER_APP]),
}
BLANK_CONFIG: Payload = {"basic_info": None, "server_domain_whitelist": [],
                         "h5_domain_whitelist": []}
WORK = {None: None, Work.BUILD: "build", Work.COMPATIBILITY: "test"}


def model_policy(policy: TargetAppPolicy) -> Policy:
    return Policy(reviewers=frozenset(policy.required_reviewers),
                  first_release_full_only=policy.first_release_full_only,
                  whitelist_test=policy.whitelist_allowed, ladder=tuple(policy.grayscale_ladder))


def projected(state: ReleaseState) -> Payload:
    """What the model describes of a real release."""
    config = state.config
    return {
        "stage": state.stage, "work": WORK[state.pending_work], "source": state.source,
        "first_release": state.first_release, "percent": state.percent,
        "whitelist": list(state.whitelist), "approvals": sorted(state.approvals),
        "review_round": state.review_round,
        "config": {
            "basic_info": config.basic_info.model_dump() if config.basic_info else None,
            "server_domain_whitelist": list(config.server_domain_whitelist),
            "h5_domain_whitelist": list(config.h5_domain_whitelist),
        },
    }


def modelled(release: reference.Release) -> Payload:
    return {
        "stage": release.stage, "work": release.work, "source": release.source,
        "first_release": release.first_release, "percent": release.percent,
        "whitelist": list(release.whitelist), "approvals": sorted(release.approvals),
        "review_round": release.review_round,
        "config": {key: release.config[key] for key in BLANK_CONFIG},
    }


# --- The machine --------------------------------------------------------------------------

START = datetime(2026, 11, 21, tzinfo=UTC)
SOURCE = "/src/coffee"
PACKAGE = PackageFacts(sha256="ab" * 32, size_bytes=10, uncompressed_bytes=20, file_count=2,
                       artifact_path="/a.zip",
                       manifest=AppManifest(name="Coffee", version="1.0.0", pages=["p"]))
MAX_RELEASES = 3
# Every well-formed command from someone holding its role, parsed once.
PROBES = [(name, payload, RELEASE.parse(name, ({"actor": first_holding(needed_roles(
    name, payload)), **payload},))) for name, payloads in sorted(RELEASE_PAYLOADS.items())
          for payload in payloads]
# Whether a release starts with a name in its basic information (apply_release needs one).
mostly_named = st.sampled_from([True, True, True, False])
environments = st.sampled_from([Environment.PRODUCTION] * 3 + [Environment.TEST])


class ReleaseRulesMachine(RuleBasedStateMachine):
    """Releases 1.0.0, 1.1.0, 1.2.0 of one program on one channel: one target app, one
    environment (mostly production)."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = START
        self.policy = POLICIES["gopay"]
        self.environment = Environment.PRODUCTION
        self.model = ReleaseModel(model_policy(self.policy))
        self.states: dict[str, ReleaseState] = {}
        self.stable_version: str | None = None  # the catalog's channel row
        self.previous: dict[str, ReleaseState] = {}
        self.last_step: tuple[str, str, bool] | None = None  # release, command, accepted
        self.touched: str | None = None  # the one release the last step may have changed

    def _now(self) -> datetime:
        # Time moves on at every step, so a refusal that touched updated_at would show.
        self.clock += timedelta(minutes=1)
        return self.clock

    def _start(self, named: bool) -> None:
        version = f"1.{len(self.states)}.0"
        config: Payload = {"basic_info": {"name": "Coffee Shop"}} if named else {}
        request = StartInput(mini_program_id="coffee", version=version,
                             target_app=self.policy.target_app, environment=self.environment,
                             workspace_id="ws", requested_by="alice", source=SOURCE,
                             config=config)
        release = release_id("coffee", version, self.policy.target_app, self.environment)
        # What load_release_context answers: a first release when the channel has no stable.
        context = ReleaseContext(policy=self.policy, first_release=self.stable_version is None,
                                 previous_stable_version=self.stable_version)
        self.states[release] = start_release(release, request, context, self._now())
        merged = merge_config(BLANK_CONFIG, config)
        assert merged is not None
        self.model.start(release, version, SOURCE, merged)
        self.last_step, self.touched = None, release

    @initialize(app=st.sampled_from(sorted(POLICIES)), named=mostly_named,
                released_before=st.booleans(), environment=environments)
    def start_first_release(self, app: str, named: bool, released_before: bool,
                            environment: Environment) -> None:
        self.policy, self.environment = POLICIES[app], environment
        self.model = ReleaseModel(model_policy(self.policy),
                                  production=environment is Environment.PRODUCTION)
        if released_before:  # the channel serves 0.9.0: none of these is a first release
            self.stable_version = self.model.stable_version = "0.9.0"
        self._start(named)

    @precondition(lambda self: len(self.states) < MAX_RELEASES)
    @rule(named=mostly_named)
    def start_another_release(self, named: bool) -> None:
        self._start(named)

    @rule(data=st.data())
    def send_command(self, data: st.DataObject) -> None:
        # Mostly to the releases still under way: the finished ones refuse everything.
        live = sorted(r for r, s in self.states.items() if s.stage not in reference.FINAL)
        release = data.draw(among(tuple(live * 3 + sorted(self.states))), label="release")
        # The build and the compatibility matrix usually finish before the next command.
        # This is no rule of its own: Hypothesis's swarm testing could switch such a rule off
        # for a whole run and leave every release building.
        while self.states[release].pending_work and not data.draw(
                st.booleans(), label="command arrives while the release waits for work"):
            self._finish_work(release, build_fails=data.draw(st.booleans(), label="build fails"))
        command = draw_command(data.draw, RELEASES, self.model, release)
        self._send(release, command)

    def _finish_work(self, release: str, build_fails: bool) -> None:
        state, now = self.states[release], self._now()
        if state.pending_work is Work.BUILD:
            state = (build_failed(state, "page 'x' has no file", now) if build_fails
                     else build_succeeded(state, PACKAGE, now, prefill_basic_info=True)).state
        else:
            report = CompatibilityReport(report_id="r", package_sha256=PACKAGE.sha256,
                                         results=[], created_at=now)
            decision = compatibility_finished(state, report, now)
            state = decision.state
            assert decision.effects.promote == (state.stage is Stage.RELEASED)
            if decision.effects.promote:  # outside production: released once tested
                self.stable_version = state.request.version
        self.states[release] = state
        self.model.work_done(release, succeeded=not build_fails)

    def _send(self, release: str, command: Sent) -> None:
        note(f"{release} <- {command}")
        before = self.states[release]
        dump = before.model_dump()
        parsed = command.parsed(RELEASE.commands)
        after = None if parsed is None else self._workflow_decides(release, parsed, self._now())
        expected = self.model.command(release, command.name, command.payload,
                                      roles_of(command.actor))
        assert before.model_dump() == dump, "decide changed the state it was given"
        assert (after is not None) == expected, (
            f"{command} was {'accepted' if after else 'refused'} by the rules but "
            f"{'accepted' if expected else 'refused'} by the model")
        if after is not None:
            self.states[release] = after
            if after.stage is Stage.RELEASED:  # the catalog promotes it on its channel
                self.stable_version = after.request.version
        self.last_step, self.touched = (release, command.name, after is not None), release

    def _workflow_decides(self, release: str, command: Command,
                          now: datetime) -> ReleaseState | None:
        """What MiniProgramRelease._apply_command makes of a parsed command: the release's
        next state, or None when the rules or the catalog's channel hold refuse it."""
        decision = RELEASE.decide(self.states[release], command, roles_of(command.actor), now)
        if isinstance(decision, Rejected):
            return None
        after = decision.state
        assert decision.effects.promote == (after.stage is Stage.RELEASED)
        # The unique index releases_channel_hold refuses a second release in those stages.
        if after.stage in CHANNEL_HOLDING_STAGES and any(
                other.stage in CHANNEL_HOLDING_STAGES
                for name, other in self.states.items() if name != release):
            return None
        return after

    # --- invariants, on the real states --------------------------------------------------

    @invariant()
    def every_command_is_judged_alike(self) -> None:
        """Each well-formed command, from someone holding its role, is tried on the release
        the last step touched (and nothing is kept): the rules and the model agree on all.
        Sent one at a time, most would pass by each state too rarely to be noticed."""
        release = self.touched
        if release is None:
            return
        before = self.states[release].model_dump()
        for name, payload, command in PROBES:
            real = self._workflow_decides(release, command, self.clock) is not None
            model = model_accepts(self.model, release, name, payload)
            assert real == model, (
                f"{release} in {self.states[release].stage}: {name} {payload} is "
                f"{'accepted' if real else 'refused'} by the rules but "
                f"{'accepted' if model else 'refused'} by the model")
        assert self.states[release].model_dump() == before

    @invariant()
    def agrees_with_the_model(self) -> None:
        for release, state in self.states.items():
            real, model = projected(state), modelled(self.model.releases[release])
            assert real == model, f"{release}: the rules {real}, the model {model}"

    @invariant()
    def steps_are_lawful(self) -> None:
        for release, state in self.states.items():
            before = self.previous.get(release)
            if before is None:
                continue
            if before.stage in reference.FINAL:
                assert state == before, f"{release} changed after {before.stage}"
            if release != self.touched:
                assert state == before, f"a step on {self.touched} changed {release}"
            if state.percent < before.percent:
                assert self.last_step == (release, "reset_grayscale", True), (
                    f"{release} went from {before.percent}% to {state.percent}% "
                    f"by {self.last_step}")
        self.previous = dict(self.states)

    @invariant()
    def nothing_goes_live_without_every_required_approval(self) -> None:
        if self.environment is not Environment.PRODUCTION:
            return  # seed 001: other environments are released unreviewed
        required = set(self.policy.required_reviewers)
        for state in self.states.values():
            if state.stage in reference.PREPARED | {Stage.RELEASED}:
                assert required <= set(state.approvals), (state.stage, state.approvals)

    @invariant()
    def a_first_release_to_a_full_only_app_is_never_partial(self) -> None:
        if not self.policy.first_release_full_only:
            return
        for state in self.states.values():
            if state.first_release:
                assert state.stage not in (Stage.WHITELIST_TESTING, Stage.GRAYSCALE)
                assert state.percent in (0, 100)

    @invariant()
    def one_release_at_most_holds_the_channel(self) -> None:
        holders = [r for r, s in self.states.items() if s.stage in reference.HOLDING]
        assert len(holders) <= 1, holders

    @invariant()
    def percent_is_on_the_ladder(self) -> None:
        for state in self.states.values():
            assert state.percent == 0 or state.percent in self.policy.grayscale_ladder


MACHINE_SETTINGS = settings(max_examples=100, stateful_step_count=30, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])
TestReleaseRules = ReleaseRulesMachine.TestCase
TestReleaseRules.settings = MACHINE_SETTINGS


def test_the_machine_notices_a_broken_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine can fail: let first releases to GoPay and DANA roll out in grayscale
    (seed 002: "For the first release, you may only do official release")."""
    monkeypatch.setattr(ReleaseState, "full_release_only", property(lambda self: False))
    with pytest.raises(AssertionError, match="accepted by the rules but refused by the model"):
        run_state_machine_as_test(ReleaseRulesMachine, settings=settings(
            MACHINE_SETTINGS, derandomize=True, database=None, phases=[Phase.generate],
            print_blob=False))


def test_the_generators_tell_the_model_the_truth() -> None:
    """Well-formed payloads are taken from whoever sends them, and malformed or forged ones
    from nobody: the model takes it on trust."""
    for name, payloads in RELEASE_PAYLOADS.items():
        for payload in payloads:
            assert sent(name, "alice", payload).parsed(RELEASE.commands) is not None
    for command in MALFORMED_RELEASE_COMMANDS:
        assert malformed(command).parsed(RELEASE.commands) is None, command
