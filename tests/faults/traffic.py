"""Randomised operator traffic for the mixed load test, and a model of what it should do.

The model is written from the command table of docs/releases.md, not from
mpr/domain/release/rules.py, so that the load test checks the workflow against the documented
behaviour. It covers what the traffic sends: first releases (each release is its own mini
program) to alipaycn (platform and partner review, grayscale allowed, no whitelist test) and
gopay (partner review, first release full only), by the members of tests/stack.py plus a
stranger with no role.

Every command goes with its sender's identity token, which the worker verifies: the token's
user is the actor (docs/production.md, "Identity"). Some leave the actor field out; a few are
forged: an actor field naming someone else than the token's user, or no token at all.

Traffic for one release comes from its own random generator, so each release's commands, and
the model's prediction, are the same whatever order the releases run in.
"""

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from mpr.domain.release.stages import Stage

Delivery = Literal["update", "signal", "duplicate_signal", "raw_signal", "concurrent_updates"]
# How a well-formed command goes, and how often.
DELIVERIES: tuple[Delivery, ...] = ("update", "signal", "duplicate_signal")
DELIVERY_WEIGHTS = (0.55, 0.3, 0.15)

LADDER = [1, 2, 5, 10, 20, 50, 100]
REQUIRED_REVIEWERS = {"alipaycn": {"platform", "partner_app"}, "gopay": {"partner_app"}}
PARTNER_REVIEWER = {"alipaycn": "alipay-rev", "gopay": "gopay-rev"}
FULL_RELEASE_ONLY = {"gopay"}  # on a first release, which every release here is

# Roles from tests/stack.py MEMBERS, by what they allow (docs/releases.md, "who" column).
BUILDERS = {"dev", "admin", "owner"}  # owner, admin, master, developer
GO_LIVE = {"admin"}  # workspace admin, mini program admin
CANCELERS = {"admin", "owner"}  # owner, admin, master, mini program admin

TERMINAL = {Stage.RELEASED, Stage.CANCELED}
BEFORE_REVIEW = {Stage.BUILD_FAILED, Stage.READY_TO_APPLY, Stage.REJECTED}
HOLDING = {Stage.UNDER_REVIEW, Stage.RELEASE_PREPARATION, Stage.WHITELIST_TESTING,
           Stage.GRAYSCALE}
GO_LIVE_STAGES = {Stage.RELEASE_PREPARATION, Stage.WHITELIST_TESTING, Stage.GRAYSCALE}
# The fields each command the traffic sends may carry (payloads are strict).
FIELDS = {
    "update_config": {"actor", "config"},
    "apply_release": {"actor", "basic_info", "server_domain_whitelist", "h5_domain_whitelist"},
    "approve_review": {"actor", "reviewer", "comment"},
    "reject_review": {"actor", "reviewer", "reason"},
    "set_grayscale": {"actor", "percent"},
    "full_release": {"actor"},
    "reset_grayscale": {"actor"},
    "cancel_grayscale": {"actor", "reason"},
    "cancel_release": {"actor", "reason"},
    "start_whitelist_test": {"actor", "user_ids"},
}
SYSTEM_EVENTS = {"start_release", "build_succeeded", "build_failed", "compatibility_tested"}


@dataclass(frozen=True)
class Command:
    name: str
    payload: Any
    """Usually a JSON object; anything else is a malformed command."""
    sender: str | None = None
    """Whose identity token goes with it; by default the user its actor field names."""
    token: bool = True
    """False: no token at all (only a raw signal can: the client library always sends one)."""

    @property
    def signed_by(self) -> str | None:
        """The user whose token goes with the command (None: no token)."""
        if not self.token:
            return None
        if self.sender is not None:
            return self.sender
        actor = self.payload.get("actor") if isinstance(self.payload, dict) else None
        return actor if isinstance(actor, str) else None

    def describe(self) -> str:
        return f"{self.name} {self.payload!r} as {self.signed_by or 'nobody'}"


def by(sender: str, name: str, rng: random.Random, **fields: Any) -> Command:
    """`sender`'s command: with their token, and now and then their name in the actor field
    (optional, and checked against the token)."""
    named = {"actor": sender} if rng.random() < 0.5 else {}
    return Command(name, {**named, **fields}, sender=sender)


@dataclass
class ReleaseModel:
    """Where a release should be after the commands it was given, and what its audit log
    should say about each of them."""

    target_app: str
    stage: Stage = Stage.READY_TO_APPLY
    percent: int = 0
    approvals: set[str] = field(default_factory=set)
    outcomes: Counter[tuple[str, bool]] = field(default_factory=Counter)
    """(command, accepted) for every command the release received, in any order."""
    system_events: int | None = len(("start_release", "build_succeeded", "compatibility_tested"))
    """Events the release records by itself; None when that depends on timing."""

    @property
    def events(self) -> int | None:
        """How many audit rows the release should have: one per event, one per command."""
        if self.system_events is None:
            return None
        return self.system_events + sum(self.outcomes.values())

    def receive(self, command: Command) -> bool:
        """Apply one command as the workflow should; True when it is accepted."""
        accepted = self._decide(command)
        self.outcomes[(command.name, accepted)] += 1
        return accepted

    def _decide(self, command: Command) -> bool:
        payload = command.payload
        if command.name not in FIELDS or not isinstance(payload, dict) \
                or not set(payload) <= FIELDS[command.name] or self.stage in TERMINAL:
            return False
        actor = command.signed_by
        if actor is None or payload.get("actor", actor) != actor:
            return False  # no verified identity, or an actor field naming someone else
        rules = {
            "update_config": self._update_config,
            "apply_release": self._apply_release,
            "approve_review": self._approve_review,
            "reject_review": self._reject_review,
            "set_grayscale": self._set_grayscale,
            "full_release": self._full_release,
            "reset_grayscale": self._reset_grayscale,
            "cancel_grayscale": self._cancel_grayscale,
            "cancel_release": self._cancel_release,
            "start_whitelist_test": self._start_whitelist_test,
        }
        return rules[command.name](actor, payload)

    def _update_config(self, actor: str, payload: dict[str, Any]) -> bool:
        # The traffic only changes basic_info, which every open stage it reaches takes.
        return actor in BUILDERS and self.stage in BEFORE_REVIEW | HOLDING

    def _apply_release(self, actor: str, payload: dict[str, Any]) -> bool:
        if actor not in BUILDERS or self.stage not in {Stage.READY_TO_APPLY, Stage.REJECTED}:
            return False
        self.stage, self.approvals = Stage.UNDER_REVIEW, set()
        return True

    def _approve_review(self, actor: str, payload: dict[str, Any]) -> bool:
        reviewer = payload.get("reviewer")
        required = REQUIRED_REVIEWERS[self.target_app]
        if not self._may_review(actor, reviewer) or self.stage is not Stage.UNDER_REVIEW \
                or reviewer not in required or reviewer in self.approvals:
            return False
        self.approvals.add(reviewer)
        if self.approvals == required:
            self.stage = Stage.RELEASE_PREPARATION
        return True

    def _reject_review(self, actor: str, payload: dict[str, Any]) -> bool:
        reviewer = payload.get("reviewer")
        if not self._may_review(actor, reviewer) or self.stage is not Stage.UNDER_REVIEW \
                or reviewer not in REQUIRED_REVIEWERS[self.target_app]:
            return False
        self.stage = Stage.REJECTED
        return True

    def _set_grayscale(self, actor: str, payload: dict[str, Any]) -> bool:
        percent = payload.get("percent")
        if actor not in GO_LIVE or self.stage not in GO_LIVE_STAGES \
                or self.target_app in FULL_RELEASE_ONLY or not isinstance(percent, int) \
                or percent not in LADDER or percent <= self.percent:
            return False
        self.stage = Stage.RELEASED if percent == 100 else Stage.GRAYSCALE
        self.percent = percent
        return True

    def _full_release(self, actor: str, payload: dict[str, Any]) -> bool:
        if actor not in GO_LIVE or self.stage not in GO_LIVE_STAGES:
            return False
        self.stage, self.percent = Stage.RELEASED, 100
        return True

    def _reset_grayscale(self, actor: str, payload: dict[str, Any]) -> bool:
        if actor not in GO_LIVE or self.stage is not Stage.GRAYSCALE:
            return False
        self.stage, self.percent = Stage.RELEASE_PREPARATION, 0
        return True

    def _cancel_grayscale(self, actor: str, payload: dict[str, Any]) -> bool:
        if actor not in GO_LIVE or self.stage is not Stage.GRAYSCALE:
            return False
        self.stage = Stage.CANCELED
        return True

    def _cancel_release(self, actor: str, payload: dict[str, Any]) -> bool:
        if actor not in CANCELERS:
            return False
        self.stage = Stage.CANCELED
        return True

    def _start_whitelist_test(self, actor: str, payload: dict[str, Any]) -> bool:
        return False  # alipaycn has no whitelist test; gopay's first release is full only

    def _may_review(self, actor: str, reviewer: object) -> bool:
        if reviewer == "platform":
            return actor == "platform-rev"
        return reviewer == "partner_app" and actor == PARTNER_REVIEWER[self.target_app]


# --- traffic -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One move of the operators: a command delivered one way, or two approvals at once."""

    delivery: Delivery
    commands: tuple[Command, ...]


def progress_command(model: ReleaseModel, rng: random.Random) -> Command:
    """A command that moves the release on from where the model says it is."""
    app = model.target_app
    match model.stage:
        case Stage.READY_TO_APPLY | Stage.REJECTED:
            return by(rng.choice(sorted(BUILDERS)), "apply_release", rng)
        case Stage.UNDER_REVIEW:
            pending = sorted(REQUIRED_REVIEWERS[app] - model.approvals)
            reviewer = rng.choice(pending)
            actor = "platform-rev" if reviewer == "platform" else PARTNER_REVIEWER[app]
            if rng.random() < 0.15:
                return by(actor, "reject_review", rng, reviewer=reviewer, reason="not yet")
            return by(actor, "approve_review", rng, reviewer=reviewer)
        case Stage.RELEASE_PREPARATION | Stage.GRAYSCALE if app not in FULL_RELEASE_ONLY:
            higher = [p for p in LADDER if p > model.percent]
            roll = rng.random()
            if model.stage is Stage.GRAYSCALE and roll < 0.15:
                return by("admin", rng.choice(["reset_grayscale", "cancel_grayscale"]), rng)
            if roll < 0.7:
                return by("admin", "set_grayscale", rng, percent=rng.choice(higher[:3]))
            return by("admin", "full_release", rng)
        case _:
            return by("admin", "full_release", rng)


def invalid_command(model: ReleaseModel, rng: random.Random) -> Command:
    """A command the workflow should refuse wherever the release is (or one that may be
    right by chance: the model decides)."""
    app = model.target_app
    wrong_partner = PARTNER_REVIEWER["gopay" if app == "alipaycn" else "alipaycn"]
    return rng.choice([
        Command("apply_release", {"actor": "stranger"}),
        Command("full_release", {"actor": "dev"}),
        Command("set_grayscale", {"actor": "admin", "percent": 3}),
        Command("set_grayscale", {"actor": "admin", "percent": "fifty"}),
        Command("approve_review", {"actor": wrong_partner, "reviewer": "partner_app"}),
        Command("approve_review", {"actor": "platform-rev", "reviewer": "platform"}),
        Command("start_whitelist_test", {"actor": "admin", "user_ids": ["u-1", "u-2"]}),
        Command("reset_grayscale", {"actor": "admin"}),
        Command("cancel_release", {"actor": "dev", "reason": "not mine to cancel"}),
        Command("apply_release", {"actor": "dev", "unexpected": True}),
        Command("update_config", {"actor": "dev", "config": {
            "basic_info": {"description": f"edit {rng.randrange(1000)}"}}}),
        # Forged: the actor field names the admin, the token is the developer's.
        Command("full_release", {"actor": "admin"}, sender="dev"),
        Command("cancel_release", {"actor": "owner", "reason": "not mine"}, sender="gopay-rev"),
    ])


def malformed_command(rng: random.Random) -> Command:
    """Not a command at all: a mistyped name, a payload that is not an object, or one that
    carries no identity token (the actor field alone names nobody)."""
    return rng.choice([
        Command("approve", {"actor": "gopay-rev"}),
        Command("apply_release", "not an object"),
        Command("full_release", ["admin"]),
        Command("full_release", {"actor": "admin"}, token=False),
        Command("cancel_release", {"actor": "owner"}, token=False),
    ])


def next_step(model: ReleaseModel, rng: random.Random) -> Step:
    app = model.target_app
    if model.stage is Stage.UNDER_REVIEW and not model.approvals and app == "alipaycn" \
            and rng.random() < 0.5:
        # Both reviewers at once; sometimes the same reviewer twice at once.
        partner = by(PARTNER_REVIEWER[app], "approve_review", rng, reviewer="partner_app")
        platform = by("platform-rev", "approve_review", rng, reviewer="platform")
        second = partner if rng.random() < 0.8 else platform
        return Step("concurrent_updates", (platform, second))
    roll = rng.random()
    if roll < 0.08:
        return Step("raw_signal", (malformed_command(rng),))
    command = progress_command(model, rng) if roll < 0.7 else invalid_command(model, rng)
    return Step(rng.choices(DELIVERIES, DELIVERY_WEIGHTS)[0], (command,))


@dataclass(frozen=True)
class Plan:
    target_app: str
    cancel_at_once: bool
    """Cancel while it builds: the model cannot say how far the build got, only that it ends
    CANCELED."""
    steps: int


def plan_release(rng: random.Random) -> Plan:
    return Plan(target_app=rng.choice(["alipaycn", "gopay"]),
                cancel_at_once=rng.random() < 0.05,
                steps=rng.choice([0, 2, 3, 4, 5, 6, 8]))
