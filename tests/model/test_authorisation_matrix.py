"""Who may do what: one table, written from the seeds and the command tables of
docs/releases.md and docs/mini-services.md, of every command of both workflows against every
role, plus members of another workspace, admins of another mini program, reviewers and
operators of another target app, and people with no membership.

Each cell is checked twice: through the pure rules, given the roles the catalog should grant
that person for the release (or the mini service) under test; and with the roles the real
role look-ups in PostgreSQL grant (the ones the catalog activities run), which is where the
workspace, mini program and target app scoping happens. "Y" must be accepted (the command is
sent where it is otherwise acceptable); "." must be refused as not authorised.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from activities.mini_service.catalog import MiniServiceCatalogActivities
from activities.release.catalog import CatalogActivities
from mpr.catalog.admin import Membership, add_member, set_target_app
from mpr.domain.core.commands import Command, parse
from mpr.domain.core.models import Role
from mpr.domain.core.rules import Accepted, Rejected
from mpr.domain.mini_service.models import ServiceAuthentication, ServiceStart
from mpr.domain.mini_service.rules import MINI_SERVICE, start_service
from mpr.domain.mini_service.state import MiniServiceState
from mpr.domain.release.models import (
    ReleaseAuthentication,
    ReleaseContext,
    Reviewer,
    StartInput,
    TargetAppPolicy,
)
from mpr.domain.release.release_id import release_id
from mpr.domain.release.rules import RELEASE, start_release
from mpr.domain.release.stages import Stage
from mpr.domain.release.state import ReleaseState
from tests.identity import token, verifying

NOW = datetime(2026, 11, 21, tzinfo=UTC)
WORKSPACE, PROGRAM, APP = "ws", "coffee", "testapp"
ELSEWHERE_WORKSPACE, ELSEWHERE_PROGRAM, ELSEWHERE_APP = "ws-other", "tea", "otherapp"


@dataclass(frozen=True)
class Persona:
    memberships: tuple[Membership, ...]
    release_roles: frozenset[Role]
    """What the catalog grants for a release of PROGRAM (of WORKSPACE) to APP."""
    service_roles: frozenset[Role]
    """What the catalog grants for APP's mini service."""


def member(role: Role, workspace: str = WORKSPACE, **scope: str) -> Membership:
    return Membership(workspace_id=workspace, user_id="-", role=role, **scope)


def persona(*memberships: Membership, release: set[Role] | None = None,
            service: set[Role] | None = None) -> Persona:
    return Persona(memberships, frozenset(release or ()), frozenset(service or ()))


# The columns of the table, by their abbreviations in its header.
PERSONAS: dict[str, Persona] = {
    "own": persona(member(Role.OWNER), release={Role.OWNER}),
    "adm": persona(member(Role.ADMIN), release={Role.ADMIN}),
    "mas": persona(member(Role.MASTER), release={Role.MASTER}),
    "dev": persona(member(Role.DEVELOPER), release={Role.DEVELOPER}),
    # program_admin: admin of this mini program; pgx: of another mini program of the workspace.
    "pga": persona(member(Role.PROGRAM_ADMIN, mini_program_id=PROGRAM),
                   release={Role.PROGRAM_ADMIN}),
    "pgx": persona(member(Role.PROGRAM_ADMIN, mini_program_id=ELSEWHERE_PROGRAM)),
    # Platform reviewers review every workspace's releases.
    "plr": persona(member(Role.PLATFORM_REVIEWER, "platform"),
                   release={Role.PLATFORM_REVIEWER}),
    # Partner reviewers of this target app; ptx: of another target app.
    "ptr": persona(member(Role.PARTNER_REVIEWER, "testapp-org", target_app=APP),
                   release={Role.PARTNER_REVIEWER}),
    "ptx": persona(member(Role.PARTNER_REVIEWER, "otherapp-org", target_app=ELSEWHERE_APP)),
    # The super app's own operators (granted in the release's workspace: still no release
    # role); ssx: both service roles for another super app.
    "sop": persona(member(Role.SERVICE_OPERATOR, target_app=APP),
                   service={Role.SERVICE_OPERATOR}),
    "sad": persona(member(Role.SERVICE_ADMIN, target_app=APP), service={Role.SERVICE_ADMIN}),
    "ssx": persona(member(Role.SERVICE_OPERATOR, target_app=ELSEWHERE_APP),
                   member(Role.SERVICE_ADMIN, target_app=ELSEWHERE_APP)),
    # Every workspace role, and admin of this very mini program, in another workspace.
    "oth": persona(*(member(role, ELSEWHERE_WORKSPACE) for role in
                     (Role.OWNER, Role.ADMIN, Role.MASTER, Role.DEVELOPER)),
                   member(Role.PROGRAM_ADMIN, ELSEWHERE_WORKSPACE, mini_program_id=PROGRAM)),
    "non": persona(),
}

MATRIX = """
                             own adm mas dev pga pgx plr ptr ptx sop sad ssx oth non
# Seed 000: the workspace's owner, admins, masters and developers start releases (the
# release's first event); seed 004: the super app's operators create and duplicate versions.
start_release                 Y   Y   Y   Y   .   .   .   .   .   .   .   .   .   .
start_mini_service            .   .   .   .   .   .   .   .   .   Y   Y   .   .   .
# Seed 000: "In a workspace, the owner, masters, and developers have permission to proceed
# with the release process" (docs/releases.md adds the workspace admin).
update_config                 Y   Y   Y   Y   .   .   .   .   .   .   .   .   .   .
rebuild                       Y   Y   Y   Y   .   .   .   .   .   .   .   .   .   .
retest_compatibility          Y   Y   Y   Y   .   .   .   .   .   .   .   .   .   .
apply_release                 Y   Y   Y   Y   .   .   .   .   .   .   .   .   .   .
# Seed 000: "The release request ... is sent to the Alipay+ and partner app for approval";
# each organisation decides for itself (docs/releases.md: platform_reviewer / the target
# app's partner_reviewer).
approve_review:platform       .   .   .   .   .   .   Y   .   .   .   .   .   .   .
approve_review:partner_app    .   .   .   .   .   .   .   Y   .   .   .   .   .   .
reject_review:platform        .   .   .   .   .   .   Y   .   .   .   .   .   .   .
reject_review:partner_app     .   .   .   .   .   .   .   Y   .   .   .   .   .   .
# Seed 001: "You must be either: Workspace admin for the workspace where the mini program
# was created. Admin for the mini program you want to release."
start_whitelist_test          .   Y   .   .   Y   .   .   .   .   .   .   .   .   .
set_grayscale                 .   Y   .   .   Y   .   .   .   .   .   .   .   .   .
full_release                  .   Y   .   .   Y   .   .   .   .   .   .   .   .   .
cancel_grayscale              .   Y   .   .   Y   .   .   .   .   .   .   .   .   .
reset_grayscale               .   Y   .   .   Y   .   .   .   .   .   .   .   .   .
# docs/releases.md: withdrawing a release is for owner, admin, master and program_admin.
cancel_release                Y   Y   Y   .   Y   .   .   .   .   .   .   .   .   .
# Seed 004 and docs/mini-services.md: the super app's service operators and admins edit,
# test, revert and delete its mini service page; only its service admins release it.
edit_title                    .   .   .   .   .   .   .   .   .   Y   Y   .   .   .
add_section                   .   .   .   .   .   .   .   .   .   Y   Y   .   .   .
edit_section                  .   .   .   .   .   .   .   .   .   Y   Y   .   .   .
move_section                  .   .   .   .   .   .   .   .   .   Y   Y   .   .   .
delete_section                .   .   .   .   .   .   .   .   .   Y   Y   .   .   .
add_mini_program              .   .   .   .   .   .   .   .   .   Y   Y   .   .   .
remove_mini_program           .   .   .   .   .   .   .   .   .   Y   Y   .   .   .
move_mini_program             .   .   .   .   .   .   .   .   .   Y   Y   .   .   .
test                          .   .   .   .   .   .   .   .   .   Y   Y   .   .   .
retest                        .   .   .   .   .   .   .   .   .   Y   Y   .   .   .
revert                        .   .   .   .   .   .   .   .   .   Y   Y   .   .   .
delete                        .   .   .   .   .   .   .   .   .   Y   Y   .   .   .
release                       .   .   .   .   .   .   .   .   .   .   Y   .   .   .
"""


def parse_matrix(text: str) -> dict[str, dict[str, bool]]:
    lines = [line for line in text.strip().splitlines() if not line.startswith("#")]
    header, rows = lines[0].split(), lines[1:]
    assert header == list(PERSONAS), header
    table = {}
    for line in rows:
        row, *marks = line.split()
        assert len(marks) == len(header) and set(marks) <= {"Y", "."}, line
        assert row not in table, f"{row} is in the table twice"
        table[row] = {column: mark == "Y" for column, mark in zip(header, marks, strict=True)}
    return table


TABLE = parse_matrix(MATRIX)


# --- Where each command is otherwise acceptable ------------------------------------------

POLICY = TargetAppPolicy(target_app=APP, required_reviewers=[Reviewer.PLATFORM,
                                                            Reviewer.PARTNER_APP])
# Release rows: the stage a command is sent in, and its payload (without the actor).
RELEASE_CASES: dict[str, tuple[Stage, dict[str, Any]]] = {
    "update_config": (Stage.READY_TO_APPLY, {"config": {"basic_info": {"description": "d"}}}),
    "rebuild": (Stage.READY_TO_APPLY, {}),
    "retest_compatibility": (Stage.READY_TO_APPLY, {}),
    "apply_release": (Stage.READY_TO_APPLY, {}),
    "approve_review:platform": (Stage.UNDER_REVIEW, {"reviewer": "platform"}),
    "approve_review:partner_app": (Stage.UNDER_REVIEW, {"reviewer": "partner_app"}),
    "reject_review:platform": (Stage.UNDER_REVIEW, {"reviewer": "platform", "reason": "no"}),
    "reject_review:partner_app": (Stage.UNDER_REVIEW, {"reviewer": "partner_app",
                                                      "reason": "no"}),
    "start_whitelist_test": (Stage.RELEASE_PREPARATION, {"user_ids": ["u1"]}),
    "set_grayscale": (Stage.RELEASE_PREPARATION, {"percent": 1}),
    "full_release": (Stage.RELEASE_PREPARATION, {}),
    "cancel_grayscale": (Stage.GRAYSCALE, {}),
    "reset_grayscale": (Stage.GRAYSCALE, {}),
    "cancel_release": (Stage.READY_TO_APPLY, {}),
}
# Mini service rows: whether the version is pilot-testing (else a DRAFT), and the payload.
SECTION = "section-1"
SERVICE_CASES: dict[str, tuple[bool, dict[str, Any]]] = {
    "edit_title": (False, {"title": {"default_language": "en", "texts": {"en": "Services"}}}),
    "add_section": (False, {"title": {"en": "Food"}}),
    "edit_section": (False, {"section_id": SECTION, "title": {"en": "Meals"}}),
    "move_section": (False, {"section_id": SECTION, "position": 0}),
    "delete_section": (False, {"section_id": SECTION}),
    "add_mini_program": (False, {"section_id": SECTION, "mini_program_id": "tea-house"}),
    "remove_mini_program": (False, {"section_id": SECTION, "mini_program_id": "coffee-shop"}),
    "move_mini_program": (False, {"section_id": SECTION, "mini_program_id": "coffee-shop",
                                  "position": 0}),
    "test": (False, {"testers": ["qa@example.com"]}),
    "retest": (True, {"testers": ["pm@example.com"]}),
    "revert": (True, {}),
    "release": (True, {"percent": 1}),
    "delete": (False, {}),
}


# Who may start a workflow of each lifecycle (Lifecycle.start_roles).
STARTS = {"start_release": RELEASE, "start_mini_service": MINI_SERVICE}


def release_at(stage: Stage) -> ReleaseState:
    """A release of PROGRAM to APP (not its first) waiting in `stage`."""
    request = StartInput(mini_program_id=PROGRAM, version="1.1.0", target_app=APP,
                         workspace_id=WORKSPACE, requested_by="someone", source="/src",
                         config={"basic_info": {"name": "Coffee Shop"}})
    context = ReleaseContext(policy=POLICY, first_release=False, previous_stable_version="1.0.0")
    started = start_release(release_id(PROGRAM, "1.1.0", APP, "production"), request,
                            context, NOW)
    return started.model_copy(update={"stage": stage, "pending_work": None,
                                      "percent": 1 if stage is Stage.GRAYSCALE else 0})


def service_version(testing: bool) -> MiniServiceState:
    """A version of APP's page with a recommendation section listing coffee-shop."""
    state = start_service(ServiceStart(super_app=APP, version_no=2, created_by="someone"),
                          POLICY.grayscale_ladder, NOW)
    section = parse("add_section", ({"actor": "someone", "title": {"en": "Food"},
                                     "mini_program_ids": ["coffee-shop"]},), MINI_SERVICE.commands)
    decision = MINI_SERVICE.decide(state, section, frozenset({Role.SERVICE_ADMIN}), NOW)
    assert isinstance(decision, Accepted), decision
    if testing:
        return decision.state.model_copy(update={"status": "TESTING", "testers": ["qa@x.io"]})
    return decision.state


def verdict(row: str, release_roles: frozenset[Role], service_roles: frozenset[Role]) -> str:
    """"Y" when the rules accept the row's command from someone with those roles, "." when
    they refuse it as not authorised; any other refusal is reported as it is."""
    decision: Any
    if row in STARTS:
        decision = STARTS[row].may_start("mallory", service_roles if row == "start_mini_service"
                                         else release_roles) or Accepted(None, None)
    elif row in SERVICE_CASES:
        testing, payload = SERVICE_CASES[row]
        command: Command = parse(row, ({"actor": "mallory", **payload},), MINI_SERVICE.commands)
        decision = MINI_SERVICE.decide(service_version(testing), command, service_roles, NOW)
    else:
        stage, payload = RELEASE_CASES[row]
        command = RELEASE.parse(row.split(":")[0], ({"actor": "mallory", **payload},))
        decision = RELEASE.decide(release_at(stage), command, release_roles, NOW)
    if isinstance(decision, Accepted):
        return "Y"
    assert isinstance(decision, Rejected)
    return "." if "not authorised" in decision.reason else decision.reason


def expected(row: str) -> dict[str, str]:
    return {column: "Y" if allowed else "." for column, allowed in TABLE[row].items()}


# --- The checks -----------------------------------------------------------------------------


def test_the_table_covers_every_command_and_every_role() -> None:
    reviewed = {f"{name}:{reviewer}" for name in ("approve_review", "reject_review")
                for reviewer in Reviewer}
    release_rows = set(RELEASE.rules) - {"approve_review", "reject_review"} | reviewed
    assert set(TABLE) == release_rows | set(MINI_SERVICE.rules) | set(STARTS)
    assert set(RELEASE_CASES) == release_rows and set(SERVICE_CASES) == set(MINI_SERVICE.rules)
    granted = {m.role for p in PERSONAS.values() for m in p.memberships}
    assert granted == set(Role)


@pytest.mark.parametrize("row", list(TABLE))
def test_the_rules_follow_the_table(row: str) -> None:
    verdicts = {column: verdict(row, p.release_roles, p.service_roles)
                for column, p in PERSONAS.items()}
    assert verdicts == expected(row)


async def grant_everyone(pool: asyncpg.Pool) -> None:
    for app in (APP, ELSEWHERE_APP):
        await set_target_app(pool, POLICY.model_copy(update={"target_app": app}))
    for column, p in PERSONAS.items():
        for membership in p.memberships:
            await add_member(pool, membership.model_copy(update={"user_id": column}))


async def roles_from_postgres(pool: asyncpg.Pool, actor: str) -> tuple[frozenset[Role],
                                                                       frozenset[Role]]:
    """The roles the authenticating activities hand the release and the mini service
    workflows for a command carrying `actor`'s own token (verified as the worker does)."""
    received = datetime.now(UTC)
    release = await CatalogActivities(pool, verifying()).authenticate_release_actor(
        ReleaseAuthentication(identity_token=token(actor), received_at=received,
                              workspace_id=WORKSPACE, mini_program_id=PROGRAM, target_app=APP))
    service = await MiniServiceCatalogActivities(pool, verifying()).authenticate_service_actor(
        ServiceAuthentication(identity_token=token(actor), received_at=received, super_app=APP))
    assert release.subject == service.subject == actor, (release, service)
    return frozenset(release.roles), frozenset(service.roles)


async def test_postgres_grants_roles_only_within_their_scope(db_pool: asyncpg.Pool) -> None:
    await grant_everyone(db_pool)
    granted = {column: await roles_from_postgres(db_pool, column) for column in PERSONAS}
    assert granted == {column: (p.release_roles, p.service_roles)
                       for column, p in PERSONAS.items()}


async def test_the_table_holds_with_the_roles_postgres_grants(db_pool: asyncpg.Pool) -> None:
    await grant_everyone(db_pool)
    granted = {column: await roles_from_postgres(db_pool, column) for column in PERSONAS}
    wrong = {}
    for row in TABLE:
        verdicts = {column: verdict(row, *granted[column]) for column in PERSONAS}
        if verdicts != expected(row):
            wrong[row] = verdicts
    assert not wrong, wrong
