"""Commands served by the catalog database alone (no Temporal): `admin member`,
`admin target-app`, `admin trial-member`, `resolve` and `migrate`."""

import argparse

from mpr.catalog.admin import (
    TARGET_APP_ROLES,
    Membership,
    TrialMember,
    add_member,
    add_trial_member,
    get_link_templates,
    get_target_app,
    list_link_templates,
    list_members,
    list_target_apps,
    list_trial_members,
    remove_member,
    remove_trial_member,
    set_link_templates,
    set_target_app,
)
from mpr.catalog.db import apply_migrations, connection
from mpr.catalog.rollout import resolve_version_detail
from mpr.cli.catalog_access import open_catalog
from mpr.cli.output import CliError, Subcommands, add_json_flag, emit, table
from mpr.domain.core.models import Role
from mpr.domain.qr import TRIAL_MARKER, CodeKind, LinkTemplates, template_flag
from mpr.domain.release.models import Environment, Reviewer, TargetAppPolicy
from mpr.infra.exit_codes import USAGE


def register(commands: Subcommands) -> None:
    admin = commands.add_parser("admin", help="administer memberships and target apps")
    groups = admin.add_subparsers(dest="group", required=True, metavar="GROUP")
    _register_members(groups)
    _register_target_apps(groups)
    _register_trial_members(groups)
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
    setting.add_argument(
        template_flag(CodeKind.OFFICIAL),
        metavar="TEMPLATE",
        help="deep link of official QR codes, with {mini_program_id}, {page}, {query} "
        "('' removes it; docs/qr-codes.md)",
    )
    setting.add_argument(
        template_flag(CodeKind.TRIAL),
        metavar="TEMPLATE",
        help=f"deep link of trial QR codes: the official placeholders, {{version}}, and "
        f"{TRIAL_MARKER}={{release_id}} as a query parameter ('' removes it)",
    )
    add_json_flag(setting)
    setting.set_defaults(handler=_target_app_set)
    listing = actions.add_parser("list", help="list target apps and their policies")
    add_json_flag(listing)
    listing.set_defaults(handler=_target_app_list)


def _policy_rows(policies: list[TargetAppPolicy], templates: dict[str, LinkTemplates]) -> str:
    policy_table = table(
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
    if not policies:
        return policy_table
    # The templates are long: a table of their own, one line per app and kind of code.
    empty = LinkTemplates()
    template_table = table(
        ["APP", "QR CODE", "LINK TEMPLATE"],
        [
            [p.target_app, kind.value, templates.get(p.target_app, empty).of(kind) or ""]
            for p in policies
            for kind in CodeKind
        ],
    )
    return f"{policy_table}\n\n{template_table}"


def _policy_json(policy: TargetAppPolicy, templates: LinkTemplates | None) -> dict[str, object]:
    templates = templates or LinkTemplates()
    return {
        **policy.model_dump(mode="json"),
        "official_link_template": templates.official,
        "trial_link_template": templates.trial,
    }


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
    # '' removes a template; an omitted option keeps it.
    template_changes = {
        kind.value: value or None
        for kind, value in (
            (CodeKind.OFFICIAL, args.official_link_template),
            (CodeKind.TRIAL, args.trial_link_template),
        )
        if value is not None
    }
    async with open_catalog() as pool, connection(pool) as db, db.transaction():
        current = await get_target_app(db, args.app)
        if current is None and args.reviewers is None:
            raise CliError(f"{args.app} is a new target app: give --reviewers", USAGE)
        base = current.model_dump() if current else {"target_app": args.app}
        policy = TargetAppPolicy.model_validate({**base, **changes})
        stored = await get_link_templates(db, args.app) or LinkTemplates()
        # Only the templates given are checked: one stored before today's rules stays as is.
        templates = stored.model_copy(
            update=LinkTemplates.model_validate(template_changes).model_dump(
                include=set(template_changes)
            )
        )
        await set_target_app(db, policy)
        await set_link_templates(db, args.app, templates)
    emit(args, _policy_json(policy, templates), _policy_rows([policy], {args.app: templates}))


async def _target_app_list(args: argparse.Namespace) -> None:
    async with open_catalog() as db:
        policies = await list_target_apps(db)
        templates = await list_link_templates(db)
    emit(
        args,
        [_policy_json(p, templates.get(p.target_app)) for p in policies],
        _policy_rows(policies, templates),
    )


# --- admin trial-member ----------------------------------------------------------------------


def _register_trial_members(groups: Subcommands) -> None:
    trial_member = groups.add_parser(
        "trial-member", help="the super app users who are served a mini program's trial codes"
    )
    actions = trial_member.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, help_text in (
        ("add", _trial_member_add, "add a trial member"),
        ("remove", _trial_member_remove, "remove a trial member"),
    ):
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument("--mini-program", required=True)
        parser.add_argument("--user", required=True, help="the user's id in the super app")
        add_json_flag(parser)
        parser.set_defaults(handler=handler)
    listing = actions.add_parser("list", help="list a mini program's trial members")
    listing.add_argument("--mini-program", required=True)
    add_json_flag(listing)
    listing.set_defaults(handler=_trial_member_list)


def _trial_member(args: argparse.Namespace) -> TrialMember:
    return TrialMember(mini_program_id=args.mini_program, user_id=args.user)


async def _trial_member_add(args: argparse.Namespace) -> None:
    member = _trial_member(args)
    async with open_catalog() as db:
        added = await add_trial_member(db, member)
    who = f"{member.user_id} of {member.mini_program_id}"
    text = f"added trial member {who}" if added else f"already a trial member: {who}"
    emit(args, {"changed": added, "trial_member": member.model_dump(mode="json")}, text)


async def _trial_member_remove(args: argparse.Namespace) -> None:
    member = _trial_member(args)
    async with open_catalog() as db:
        removed = await remove_trial_member(db, member)
    who = f"{member.user_id} of {member.mini_program_id}"
    if not removed:
        raise CliError(f"no such trial member: {who}")
    emit(args, {"changed": True, "trial_member": member.model_dump(mode="json")},
         f"removed trial member {who}")


async def _trial_member_list(args: argparse.Namespace) -> None:
    async with open_catalog() as db:
        members = await list_trial_members(db, args.mini_program)
    emit(
        args,
        [m.model_dump(mode="json") for m in members],
        table(["MINI PROGRAM", "USER"], [[m.mini_program_id, m.user_id] for m in members]),
    )


# --- resolve and migrate ---------------------------------------------------------------------


def _register_resolve(commands: Subcommands) -> None:
    resolve = commands.add_parser("resolve", help="the version a user is served")
    resolve.add_argument("--program", required=True, help="mini program id")
    resolve.add_argument("--app", required=True, help="target app")
    resolve.add_argument("--user", required=True)
    resolve.add_argument(
        "--env", default=Environment.PRODUCTION.value, choices=[env.value for env in Environment]
    )
    resolve.add_argument(
        "--trial",
        metavar="RELEASE_ID",
        help=f"as launched from a trial QR code: the release its link's {TRIAL_MARKER} names",
    )
    add_json_flag(resolve)
    resolve.set_defaults(handler=_resolve)


async def _resolve(args: argparse.Namespace) -> None:
    async with open_catalog() as db:
        resolution = await resolve_version_detail(
            db, args.program, args.app, args.user, args.env, trial=args.trial
        )
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
