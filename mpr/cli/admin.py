"""Commands served by the catalog database alone (no Temporal): `admin member`,
`admin target-app`, `resolve` and `migrate`."""

import argparse

from mpr.catalog.admin import (
    TARGET_APP_ROLES,
    Membership,
    add_member,
    get_target_app,
    list_members,
    list_target_apps,
    remove_member,
    set_target_app,
)
from mpr.catalog.db import apply_migrations
from mpr.catalog.rollout import resolve_version_detail
from mpr.cli.catalog_access import open_catalog
from mpr.cli.output import CliError, Subcommands, add_json_flag, emit, table
from mpr.domain.core.models import Role
from mpr.domain.release.models import Environment, Reviewer, TargetAppPolicy
from mpr.infra.exit_codes import USAGE


def register(commands: Subcommands) -> None:
    admin = commands.add_parser("admin", help="administer memberships and target apps")
    groups = admin.add_subparsers(dest="group", required=True, metavar="GROUP")
    _register_members(groups)
    _register_target_apps(groups)
    _register_resolve(commands)
    migrate = commands.add_parser("migrate", help="apply pending catalog migrations")
    add_json_flag(migrate)
    migrate.set_defaults(handler=_migrate)


# --- admin member ----------------------------------------------------------------------------


def _register_members(groups: Subcommands) -> None:
    member = groups.add_parser(
        "member", help="grant, revoke and list roles, a super app's service roles included"
    )
    actions = member.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, help_text in (
        ("add", _member_add, "grant a role"),
        ("remove", _member_remove, "revoke a role"),
    ):
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument("--workspace", required=True)
        parser.add_argument("--user", required=True)
        parser.add_argument(
            "--role",
            required=True,
            choices=[role.value for role in Role],
            help="service_operator and service_admin run a super app's mini service page",
        )
        parser.add_argument("--mini-program", default="", help="required for program_admin")
        parser.add_argument(
            "--target-app",
            default="",
            help=f"the target app (super app); required for {', '.join(TARGET_APP_ROLES)}",
        )
        add_json_flag(parser)
        parser.set_defaults(handler=handler)
    listing = actions.add_parser("list", help="list memberships")
    listing.add_argument("--workspace")
    listing.add_argument("--user")
    add_json_flag(listing)
    listing.set_defaults(handler=_member_list)


def _membership(args: argparse.Namespace) -> Membership:
    role = Role(args.role)
    for flag, value, scoped_roles in (
        ("--mini-program", args.mini_program, (Role.PROGRAM_ADMIN,)),
        ("--target-app", args.target_app, TARGET_APP_ROLES),
    ):
        if role in scoped_roles and not value:
            raise CliError(f"role {role} needs {flag}", USAGE)
        if role not in scoped_roles and value:
            noun = "role" if len(scoped_roles) == 1 else "roles"
            raise CliError(f"{flag} applies only to {noun} {', '.join(scoped_roles)}", USAGE)
    return Membership(
        workspace_id=args.workspace,
        user_id=args.user,
        role=role,
        mini_program_id=args.mini_program,
        target_app=args.target_app,
    )


def _describe(member: Membership) -> str:
    scope = member.mini_program_id or member.target_app
    role = f"{member.role} of {scope}" if scope else member.role.value
    return f"{role} for {member.user_id} in {member.workspace_id}"


async def _member_add(args: argparse.Namespace) -> None:
    member = _membership(args)
    async with open_catalog() as db:
        added = await add_member(db, member)
    text = f"granted {_describe(member)}" if added else f"already granted: {_describe(member)}"
    emit(args, {"changed": added, "member": member.model_dump(mode="json")}, text)


async def _member_remove(args: argparse.Namespace) -> None:
    member = _membership(args)
    async with open_catalog() as db:
        removed = await remove_member(db, member)
    if not removed:
        raise CliError(f"no such membership: {_describe(member)}")
    emit(
        args,
        {"changed": True, "member": member.model_dump(mode="json")},
        f"revoked {_describe(member)}",
    )


async def _member_list(args: argparse.Namespace) -> None:
    async with open_catalog() as db:
        members = await list_members(db, workspace_id=args.workspace, user_id=args.user)
    rows = [
        [m.workspace_id, m.user_id, m.role.value, m.mini_program_id, m.target_app] for m in members
    ]
    emit(
        args,
        [m.model_dump(mode="json") for m in members],
        table(["WORKSPACE", "USER", "ROLE", "MINI PROGRAM", "TARGET APP"], rows),
    )


# --- admin target-app ------------------------------------------------------------------------


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _ladder(value: str) -> list[int]:
    try:
        return [int(item) for item in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of percentages: {value!r}") from None


def _register_target_apps(groups: Subcommands) -> None:
    target_app = groups.add_parser("target-app", help="configure target apps")
    actions = target_app.add_subparsers(dest="action", required=True, metavar="ACTION")
    setting = actions.add_parser(
        "set", help="create a target app or change its policy (omitted options keep their value)"
    )
    setting.add_argument("--app", required=True)
    setting.add_argument("--name", help="display name")
    setting.add_argument(
        "--reviewers",
        type=_csv,
        help=f"organisations that must approve, comma separated: {', '.join(Reviewer)}",
    )
    setting.add_argument("--first-release-full-only", action=argparse.BooleanOptionalAction)
    setting.add_argument("--whitelist", action=argparse.BooleanOptionalAction)
    setting.add_argument("--ladder", type=_ladder, help="grayscale percentages, e.g. 1,5,20,100")
    add_json_flag(setting)
    setting.set_defaults(handler=_target_app_set)
    listing = actions.add_parser("list", help="list target apps and their policies")
    add_json_flag(listing)
    listing.set_defaults(handler=_target_app_list)


def _policy_rows(policies: list[TargetAppPolicy]) -> str:
    return table(
        ["APP", "NAME", "REVIEWERS", "FIRST RELEASE FULL ONLY", "WHITELIST", "LADDER"],
        [
            [
                p.target_app,
                p.display_name,
                ",".join(p.required_reviewers),
                "yes" if p.first_release_full_only else "no",
                "yes" if p.whitelist_allowed else "no",
                ",".join(str(step) for step in p.grayscale_ladder),
            ]
            for p in policies
        ],
    )


async def _target_app_set(args: argparse.Namespace) -> None:
    changes = {
        field: value
        for field, value in (
            ("display_name", args.name),
            ("required_reviewers", args.reviewers),
            ("first_release_full_only", args.first_release_full_only),
            ("whitelist_allowed", args.whitelist),
            ("grayscale_ladder", args.ladder),
        )
        if value is not None
    }
    async with open_catalog() as db:
        current = await get_target_app(db, args.app)
        if current is None and args.reviewers is None:
            raise CliError(f"{args.app} is a new target app: give --reviewers", USAGE)
        base = current.model_dump() if current else {"target_app": args.app}
        policy = TargetAppPolicy.model_validate({**base, **changes})
        await set_target_app(db, policy)
    emit(args, policy.model_dump(mode="json"), _policy_rows([policy]))


async def _target_app_list(args: argparse.Namespace) -> None:
    async with open_catalog() as db:
        policies = await list_target_apps(db)
    emit(args, [p.model_dump(mode="json") for p in policies], _policy_rows(policies))


# --- resolve and migrate ---------------------------------------------------------------------


def _register_resolve(commands: Subcommands) -> None:
    resolve = commands.add_parser("resolve", help="the version a user is served")
    resolve.add_argument("--program", required=True, help="mini program id")
    resolve.add_argument("--app", required=True, help="target app")
    resolve.add_argument("--user", required=True)
    resolve.add_argument(
        "--env", default=Environment.PRODUCTION.value, choices=[env.value for env in Environment]
    )
    add_json_flag(resolve)
    resolve.set_defaults(handler=_resolve)


async def _resolve(args: argparse.Namespace) -> None:
    async with open_catalog() as db:
        resolution = await resolve_version_detail(db, args.program, args.app, args.user, args.env)
    emit(
        args,
        resolution.model_dump(mode="json"),
        f"{resolution.version or 'none'} ({resolution.reason})",
    )


async def _migrate(args: argparse.Namespace) -> None:
    async with open_catalog() as db:
        applied = await apply_migrations(db)
    text = "\n".join(f"applied {name}" for name in applied) or "the catalog is up to date"
    emit(args, {"applied": applied}, text)
