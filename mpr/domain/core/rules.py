"""The shape every lifecycle's rules share: one table of commands, read by one `decide`.

A lifecycle declares, for each command, the payload model, the stages it is allowed in, the
roles that may send it and the function that applies it (`Rule`). `decide` checks them in the
same order for every lifecycle and words every refusal the same way, so permissions cannot
drift from stages and no lifecycle invents its own refusals:

1. a finished workflow accepts nothing;
2. the actor must hold one of the command's roles;
3. the command must be allowed in the current stage;
4. the rule's `apply` accepts (with the next state and what must happen outside) or refuses;
   a rule that `sees_roles` is told the sender's roles, for commands whose effect depends on
   the role they are sent in.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from mpr.domain.core.commands import Command, parse, payload_of
from mpr.domain.core.models import Role

S = TypeVar("S")
E = TypeVar("E")
StageT = TypeVar("StageT", bound=StrEnum)


@dataclass(frozen=True)
class Accepted(Generic[S, E]):
    state: S
    effects: E
    """What the workflow must do in the outside world to carry out the decision."""
    note: str | None = None
    """Something the operator should know although the command was accepted."""


@dataclass(frozen=True)
class Rejected:
    reason: str


@dataclass(frozen=True)
class Rule(Generic[S, E, StageT]):
    """One command of a lifecycle: what it carries, where and by whom it may be sent, and how
    it applies. `roles` may depend on the payload (a reviewer acts for one organisation)."""

    payload: type[Command]
    allowed_in: frozenset[StageT]
    roles: frozenset[Role] | Callable[[Any], frozenset[Role]]
    apply: Callable[..., Accepted[S, E] | Rejected]
    """`apply(state, command, now)`, or `apply(state, command, now, roles)` when
    `sees_roles`."""
    hints: Mapping[StageT, str] = field(default_factory=dict)
    """What to do instead, by stage, added to a wrong-stage refusal."""
    sees_roles: bool = False
    """What the command does depends on the role it is sent in (a takedown by a platform
    reviewer is the platform's, and only a platform reviewer undoes it), so `apply` is given
    the sender's roles."""

    def roles_for(self, command: Command) -> frozenset[Role]:
        return self.roles if isinstance(self.roles, frozenset) else self.roles(command)


@dataclass(frozen=True)
class Lifecycle(Generic[S, E, StageT]):
    """A lifecycle's table of rules and what `decide` must know to word its refusals."""

    rules: Mapping[str, Rule[S, E, StageT]]
    stages: type[StageT]
    finished: frozenset[StageT]
    stage_of: Callable[[S], StageT]
    subject: Callable[[S], str]
    """How a refusal names what the command was sent to: "the release"."""
    scope: Callable[[S], str] = lambda _state: ""
    """Where the actor's roles were looked up, when a refusal should say it."""
    start_roles: frozenset[Role] = frozenset()
    """Who may start a workflow of this lifecycle (where its scope's roles are looked up)."""
    starts: str = "this lifecycle"
    """What a start begins, as a refusal names it: "a release of this mini program"."""
    stage_word: str = "stage"
    """How operators call a position in the lifecycle: "stage" or "status"."""

    def __post_init__(self) -> None:
        payloads = [rule.payload for rule in self.rules.values()]
        if len(set(payloads)) != len(payloads):
            raise ValueError("each command needs a payload model of its own: decide tells "
                             "commands apart by it")

    @property
    def commands(self) -> dict[str, type[Command]]:
        """The payload model of each command, by name: what `parse` reads."""
        return {name: rule.payload for name, rule in self.rules.items()}

    def parse(self, name: str, args: tuple[Any, ...] | list[Any]) -> Command:
        """The command a signal or update carries; raises ParseFailure with the reason."""
        return parse(name, args, self.commands)

    def payload_of(self, name: str, args: tuple[Any, ...] | list[Any]) -> dict[str, Any]:
        """The one JSON object a command of this lifecycle carries (ParseFailure if none)."""
        return payload_of(name, args, self.rules)

    def may_start(self, actor: str, roles: frozenset[Role]) -> Rejected | None:
        """Whether `actor`, holding `roles`, may start a workflow of this lifecycle."""
        if roles & self.start_roles:
            return None
        have = ", ".join(sorted(roles)) or "no role"
        return Rejected(f"{actor} is not authorised to start {self.starts}: needs "
                        f"{' or '.join(sorted(self.start_roles))} (has {have})")

    def name_of(self, command: Command) -> str:
        return next(name for name, rule in self.rules.items() if rule.payload is type(command))

    def decide(
        self, state: S, command: Command, roles: frozenset[Role], now: datetime
    ) -> Accepted[S, E] | Rejected:
        name = self.name_of(command)
        stage = self.stage_of(state)
        if stage in self.finished:
            return Rejected(f"{self.subject(state)} is {stage} and accepts no more commands")
        rule = self.rules[name]
        needed = rule.roles_for(command)
        if not roles & needed:
            have = ", ".join(sorted(roles)) or "no role"
            return Rejected(
                f"{command.by} is not authorised to {name}{self.scope(state)}: "
                f"needs {' or '.join(sorted(needed))} (has {have})"
            )
        if stage not in rule.allowed_in:
            allowed = ", ".join(s for s in self.stages if s in rule.allowed_in)
            hint = rule.hints.get(stage)
            return Rejected(
                f"{name} is not allowed in {self.stage_word} {stage} (allowed in: {allowed})"
                + (f"; {hint}" if hint else "")
            )
        if rule.sees_roles:
            return rule.apply(state, command, now, roles)
        return rule.apply(state, command, now)
