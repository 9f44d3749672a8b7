"""`mpr service`: a super app's mini service page (seed 004), one version at a time.

    mpr login --user olly
    mpr service create --app gopay
    mpr service add-section --app gopay --version 3 --title en=Food --title id=Makanan \\
        --program coffee-shop
    mpr service test --app gopay --version 3 --tester qa@example.com
    mpr service release 5 mini-service:gopay:3      # a service admin's token
    mpr service preview --app gopay --version 3 --language id

A version is named by its workflow id (the optional last positional, or --id) or by --app
and --version. Who is asking is the subject of the identity token (`mpr login`, or MPR_TOKEN,
MPR_TOKEN_FILE, MPR_TOKEN_COMMAND); --actor, when given, must name it. Commands go as updates,
so `mpr` answers with the status the version accepted them in, or with its reason for refusing
them. `create` and `duplicate` allocate the version
number in the catalog; `history` and `resolve` read the catalog alone.

Exit codes are those of cli.main: 0 done, 1 failure, 2 usage, 3 refused (or the version has
finished), 4 no such version.
"""

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mpr.catalog.admin import require_target_app
from mpr.catalog.mini_services import list_service_versions, resolve_mini_service_detail
from mpr.cli.arguments import (
    CommandSpec,
    Payload,
    actor,
    add_actor,
    add_command_parsers,
    given,
    no_arguments,
    no_payload,
)
from mpr.cli.catalog_access import open_catalog
from mpr.cli.output import (
    CliError,
    Handler,
    Subcommands,
    add_json_flag,
    emit,
    refusal_line,
    table,
    when,
)
from mpr.domain.mini_service.rules import MINI_SERVICE
from mpr.domain.mini_service.stages import ServiceStatus
from mpr.domain.mini_service.state import MiniServiceStatus
from mpr.infra.exit_codes import USAGE
from mpr.infra.settings import Settings
from starters.mini_services import MiniServiceClient, ServiceRef


def register(commands: Subcommands) -> None:
    service = commands.add_parser("service", help="a super app's mini service page")
    actions = service.add_subparsers(dest="action", required=True, metavar="ACTION")
    _register_versions(actions)
    _register_reading(actions)
    add_command_parsers(actions, SERVICE_COMMAND_SPECS, _add_version, _sender)


# --- shared arguments and output -----------------------------------------------------------


def _add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", nargs="?", metavar="SERVICE_ID",
                        help="workflow id, e.g. mini-service:gopay:3")
    parser.add_argument("--id", help="workflow id (instead of SERVICE_ID)")
    parser.add_argument("--app", help="super app (with --version)")
    parser.add_argument("--version", type=int, help="version number (with --app)")


def _service_ref(args: argparse.Namespace) -> ServiceRef:
    if args.service and args.id and args.service != args.id:
        raise CliError("two different mini service ids given: use SERVICE_ID or --id", USAGE)
    workflow_id = args.service or args.id
    if workflow_id:
        if args.app or args.version is not None:
            raise CliError("name the version by its id or by --app and --version, not both",
                           USAGE)
        try:
            return ServiceRef.parse(workflow_id)
        except ValueError as error:
            raise CliError(str(error), USAGE) from None
    if not args.app or args.version is None:
        raise CliError("which version? give SERVICE_ID, or --app and --version", USAGE)
    return ServiceRef(super_app=args.app, version_no=args.version)


@asynccontextmanager
async def _client(*, catalog: bool = False) -> AsyncIterator[MiniServiceClient]:
    """The client; with the catalog only for what needs it, so that commands and queries
    work for operators who reach Temporal alone."""
    settings = Settings.from_env()
    if not catalog:
        yield await MiniServiceClient.connect(None, settings)
        return
    async with open_catalog() as pool:
        yield await MiniServiceClient.connect(pool, settings)


def _position(status: MiniServiceStatus) -> str:
    if status.status is ServiceStatus.RELEASING:
        return f"{status.status} {status.percent}%"
    return str(status.status)


def _translation(value: str) -> tuple[str, str]:
    """`LANG=TEXT`, as --text and --title take it."""
    language, sep, text = value.partition("=")
    if not sep or not language.strip():
        raise argparse.ArgumentTypeError(f"{value!r} is not LANG=TEXT (e.g. en=Services)")
    return language.strip(), text


def _translations(pairs: list[tuple[str, str]] | None, flag: str) -> dict[str, str] | None:
    if not pairs:
        return None
    languages = [language for language, _ in pairs]
    if len(set(languages)) != len(languages):
        raise CliError(f"{flag} names a language twice", USAGE)
    return dict(pairs)


# --- create, duplicate -----------------------------------------------------------------------


def _register_versions(actions: Subcommands) -> None:
    create = actions.add_parser("create", help="a new DRAFT version (the four default sections)")
    create.add_argument("--app", required=True, help="super app")
    add_actor(create)
    add_json_flag(create)
    create.set_defaults(handler=_create)

    duplicate = actions.add_parser(
        "duplicate", help="a new DRAFT version copying a RELEASED or ARCHIVED one")
    duplicate.add_argument("--app", required=True, help="super app")
    duplicate.add_argument("--from", dest="source", type=int, required=True, metavar="VERSION",
                           help="the version to copy")
    add_actor(duplicate)
    add_json_flag(duplicate)
    duplicate.set_defaults(handler=_duplicate)


async def _create(args: argparse.Namespace) -> None:
    async with _client(catalog=True) as services:
        version_no = await services.create(args.app, actor(args))
        status = await services.status(args.app, version_no)
    emit(args, status.model_dump(mode="json"), f"{status.workflow_id}  {_position(status)}")


async def _duplicate(args: argparse.Namespace) -> None:
    async with _client(catalog=True) as services:
        version_no = await services.duplicate(args.app, args.source, actor(args))
        status = await services.status(args.app, version_no)
    emit(args, status.model_dump(mode="json"),
         f"{status.workflow_id}  {_position(status)} (duplicate of version {args.source})")


# --- status, content, preview, history, resolve ----------------------------------------------


def _register_reading(actions: Subcommands) -> None:
    for name, handler, help_text in (
        ("status", _status, "where a version is: status, percent, testers, last refusal"),
        ("content", _content, "the version's title and sections, every language"),
        ("preview", _preview, "the page as a user with --language sees it"),
    ):
        parser = actions.add_parser(name, help=help_text)
        if name == "preview":
            parser.add_argument("--language", help="e.g. id, zh-CN (default: the default "
                                                   "language of the title)")
        _add_version(parser)
        add_json_flag(parser)
        parser.set_defaults(handler=handler)

    history = actions.add_parser("history", help="every version of a super app's page")
    history.add_argument("--app", required=True, help="super app")
    add_json_flag(history)
    history.set_defaults(handler=_history)

    resolve = actions.add_parser("resolve", help="the version a user is shown, and why")
    resolve.add_argument("--app", required=True, help="super app")
    resolve.add_argument("--user", required=True, help="user id (decides the grayscale bucket)")
    resolve.add_argument("--email", help="the user's email (testers are named by email)")
    add_json_flag(resolve)
    resolve.set_defaults(handler=_resolve)


async def _status(args: argparse.Namespace) -> None:
    ref = _service_ref(args)
    async with _client() as services:
        status = await services.status(ref.super_app, ref.version_no)
    emit(args, status.model_dump(mode="json"), status_text(status))


def status_text(status: MiniServiceStatus) -> str:
    """The status as an operator reads it: one labelled line per fact."""
    rejection = status.last_rejection
    ladder = " ".join(f"[{step}]" if step == status.percent else str(step)
                      for step in status.grayscale_ladder)
    rows = [
        ("mini service", f"{status.workflow_id}  (super app {status.super_app}, "
                         f"version {status.version_no}, created by {status.created_by})"),
        ("status", _position(status)),
        ("grayscale", f"{status.percent}%  ladder {ladder}"),
        ("testers", str(status.testers)),
        ("page", f"{status.sections} sections, {status.mini_programs} mini programs"),
        ("duplicated from", f"version {status.duplicated_from}"
                            if status.duplicated_from else "-"),
        ("last refusal", refusal_line(rejection)),
        ("events", str(status.audit_count)),
        ("created", when(status.created_at)),
        ("status since", when(status.status_changed_at)),
        ("updated", when(status.updated_at)),
        ("released", when(status.released_at)),
    ]
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(f"{label:<{width}}{value}" for label, value in rows)


def _languages(texts: dict[str, str]) -> str:
    return ", ".join(f"{language}: {text}" for language, text in texts.items())


async def _content(args: argparse.Namespace) -> None:
    ref = _service_ref(args)
    async with _client() as services:
        content = await services.content(ref.super_app, ref.version_no)
    title = content.title
    rows = [[s.section_id, s.kind, _languages(s.title), ", ".join(s.mini_program_ids),
             ", ".join(s.images)] for s in content.sections]
    text = (f"title  {_languages(title.texts)}  (default {title.default_language})\n"
            + table(["SECTION", "KIND", "TITLE", "MINI PROGRAMS", "IMAGES"], rows))
    emit(args, content.model_dump(mode="json"), text)


async def _preview(args: argparse.Namespace) -> None:
    ref = _service_ref(args)
    async with _client() as services:
        page = await services.preview(ref.super_app, ref.version_no, args.language)
    rows = [[s.section_id, s.kind, s.title or "", ", ".join(s.mini_program_ids)]
            for s in page.sections]
    text = (f"{page.title}  ({page.language})\n"
            + table(["SECTION", "KIND", "TITLE", "MINI PROGRAMS"], rows))
    emit(args, page.model_dump(mode="json"), text)


async def _history(args: argparse.Namespace) -> None:
    async with open_catalog() as db:
        await require_target_app(db, args.app)
        versions = await list_service_versions(db, args.app)
    rows = [[str(v.version_no), v.status, f"{v.percent}%", v.created_by,
             str(v.duplicated_from or ""), when(v.updated_at)] for v in versions]
    emit(args, [v.model_dump(mode="json") for v in versions],
         table(["VERSION", "STATUS", "PERCENT", "CREATED BY", "DUPLICATED FROM", "UPDATED"],
               rows))


async def _resolve(args: argparse.Namespace) -> None:
    async with open_catalog() as db:
        await require_target_app(db, args.app)
        resolution = await resolve_mini_service_detail(db, args.app, args.user, args.email)
    emit(args, resolution.model_dump(mode="json"),
         f"{resolution.version_no or 'none'} ({resolution.reason})")


# --- commands ------------------------------------------------------------------------------


def _sender(spec: CommandSpec) -> Handler:
    async def send(args: argparse.Namespace) -> None:
        ref = _service_ref(args)
        command = spec.command_from(args, MINI_SERVICE.commands)
        async with _client() as services:
            status = await services.command(ref.super_app, ref.version_no, spec.command,
                                            command)
        emit(args, status.model_dump(mode="json"),
             f"{spec.command} accepted: {status.workflow_id}  {_position(status)}")

    return send


def _section(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("section", metavar="SECTION", help="section id, e.g. section-1, banner")


def _program(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", metavar="PROGRAM", help="mini program id")


def _position_argument(parser: argparse.ArgumentParser, *, optional: bool) -> None:
    if optional:
        parser.add_argument("--position", type=int, help="0 is first (default: the end)")
    else:
        parser.add_argument("position", type=int, metavar="POSITION", help="0 is first")


def _title_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", type=_translation, action="append", required=True,
                        metavar="LANG=TEXT", help="the title in one language (repeatable)")
    parser.add_argument("--default", metavar="LANG",
                        help="the language others fall back to (default: the first --text)")


def _title_payload(args: argparse.Namespace) -> Payload:
    texts = _translations(args.text, "--text")
    return {"title": {"default_language": args.default or args.text[0][0], "texts": texts}}


def _add_section_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--title", type=_translation, action="append", required=True,
                        metavar="LANG=TEXT", help="the section title in one language "
                                                  "(repeatable)")
    parser.add_argument("--program", action="append", default=[], metavar="PROGRAM",
                        help="mini program listed in the section (repeatable, in order)")
    _position_argument(parser, optional=True)


def _add_section_payload(args: argparse.Namespace) -> Payload:
    return given(title=_translations(args.title, "--title"), mini_program_ids=args.program,
                  position=args.position)


def _edit_section_arguments(parser: argparse.ArgumentParser) -> None:
    _section(parser)
    parser.add_argument("--title", type=_translation, action="append", metavar="LANG=TEXT",
                        help="new title in one language (repeatable; replaces the title)")
    parser.add_argument("--image", action="append", metavar="URL",
                        help="image URL, carousel and banner only (repeatable; replaces the "
                             "images)")


def _edit_section_payload(args: argparse.Namespace) -> Payload:
    return given(section_id=args.section, title=_translations(args.title, "--title"),
                  images=args.image)


def _section_position_arguments(parser: argparse.ArgumentParser) -> None:
    _section(parser)
    _position_argument(parser, optional=False)


def _section_payload(args: argparse.Namespace) -> Payload:
    return {"section_id": args.section}


def _move_section_payload(args: argparse.Namespace) -> Payload:
    return {"section_id": args.section, "position": args.position}


def _program_arguments(parser: argparse.ArgumentParser) -> None:
    _section(parser)
    _program(parser)


def _add_program_arguments(parser: argparse.ArgumentParser) -> None:
    _program_arguments(parser)
    _position_argument(parser, optional=True)


def _move_program_arguments(parser: argparse.ArgumentParser) -> None:
    _program_arguments(parser)
    _position_argument(parser, optional=False)


def _program_payload(args: argparse.Namespace) -> Payload:
    return {"section_id": args.section, "mini_program_id": args.program}


def _positioned_program_payload(args: argparse.Namespace) -> Payload:
    return {**_program_payload(args), **given(position=args.position)}


def _testers_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tester", action="append", required=True, metavar="EMAIL",
                        help="pilot tester's email (repeatable; replaces the list)")


def _testers_payload(args: argparse.Namespace) -> Payload:
    # The list replaces the testers: a tester named twice is simply in it.
    return {"testers": list(dict.fromkeys(args.tester))}


def _release_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("percent", type=int, metavar="PERCENT",
                        help="next step of the super app's ladder; 100 releases fully")


def _release_payload(args: argparse.Namespace) -> Payload:
    return {"percent": args.percent}


def _section_arguments(parser: argparse.ArgumentParser) -> None:
    _section(parser)


SERVICE_COMMAND_SPECS = (
    CommandSpec("title", "edit_title", "set the page title in several languages",
                   _title_arguments, _title_payload),
    CommandSpec("add-section", "add_section", "add a section recommending mini programs",
                   _add_section_arguments, _add_section_payload),
    CommandSpec("edit-section", "edit_section", "change a section's title or images",
                   _edit_section_arguments, _edit_section_payload),
    CommandSpec("move-section", "move_section", "move a section to POSITION",
                   _section_position_arguments, _move_section_payload),
    CommandSpec("delete-section", "delete_section", "delete a section (for good)",
                   _section_arguments, _section_payload),
    CommandSpec("add-program", "add_mini_program", "add a mini program to a section",
                   _add_program_arguments, _positioned_program_payload),
    CommandSpec("remove-program", "remove_mini_program",
                   "remove a mini program from a section (for good)", _program_arguments,
                   _program_payload),
    CommandSpec("move-program", "move_mini_program", "move a mini program within a section",
                   _move_program_arguments, _positioned_program_payload),
    CommandSpec("test", "test", "pilot-test with testers (DRAFT -> TESTING)",
                   _testers_arguments, _testers_payload),
    CommandSpec("retest", "retest", "replace the testers (TESTING)", _testers_arguments,
                   _testers_payload),
    CommandSpec("revert", "revert", "back to DRAFT (TESTING, RELEASING)", no_arguments,
                   no_payload),
    CommandSpec("release", "release", "roll out to PERCENT of users; 100 releases fully",
                   _release_arguments, _release_payload),
    CommandSpec("delete", "delete", "delete a DRAFT version", no_arguments, no_payload),
)
