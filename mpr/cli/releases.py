"""Release commands of `mpr`: start, status, watch, list, and one command per operator command.

    mpr start --program coffee-shop --version 1.0.0 --app gopay --workspace ws \\
              --source samples/coffee-shop/1.0.0 --wait READY_TO_APPLY
    mpr apply release:coffee-shop:1.0.0:gopay:production --name "Coffee Shop"
    mpr approve --program coffee-shop --version 1.0.0 --app gopay --as partner_app
    mpr grayscale 10 release:coffee-shop:1.1.0:gopay:production
    mpr watch release:coffee-shop:1.1.0:gopay:production

A release is named by its workflow id (positional, or --id) or by --program, --version and
--app (--env defaults to production). Every command is sent as an update, so `mpr` answers
with the state the release accepted it in, or with the release's reason for refusing it.

Who is asking is the subject of the identity token (`mpr login`, MPR_TOKEN, MPR_TOKEN_FILE or
MPR_TOKEN_COMMAND: mpr.infra.tokens); --actor (or MPR_ACTOR) is sent only when given, and must
then name that subject. Roles come from the catalog's workspace memberships.

Source paths are read by the worker: a relative --source is made absolute against the
current directory, which is right when the worker runs on this machine (`make up`).

Exit codes are set in cli.main: 0 done, 1 failure, 2 usage, 3 refused (or the release has
finished), 4 no such release, 5 timed out waiting, 130 interrupted.
"""

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

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
from mpr.domain.channel.models import PREFIX as CHANNEL_PREFIX
from mpr.domain.channel.models import parse_channel_id
from mpr.domain.channel.stages import ChannelState
from mpr.domain.release.models import Environment, Reviewer, StartInput
from mpr.domain.release.rules import RELEASE
from mpr.domain.release.stages import Stage
from mpr.domain.release.state import ReleaseStatus
from mpr.infra.exit_codes import USAGE
from mpr.infra.settings import Settings
from starters.channels import ChannelClient
from starters.releases import (
    DEFAULT_LIST_LIMIT,
    ReleaseClient,
    ReleaseFinished,
    ReleaseRef,
    StageChange,
)

DEFAULT_WAIT_SECONDS = 600.0
WORKING_STAGES = frozenset({Stage.BUILDING, Stage.COMPATIBILITY_TESTING})
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPINNER_TICK_SECONDS = 0.1
PLAIN_PROGRESS_EVERY_SECONDS = 10.0


def register(commands: Subcommands) -> None:
    _register_start(commands)
    _register_status(commands)
    _register_watch(commands)
    _register_list(commands)
    add_command_parsers(commands, OPERATOR_COMMANDS, _add_release, _sender)


# --- shared arguments --------------------------------------------------------------------


def _add_release(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("release", nargs="?", metavar="RELEASE_ID",
                        help="workflow id, e.g. release:coffee-shop:1.0.0:gopay:production")
    parser.add_argument("--id", help="workflow id (instead of RELEASE_ID)")
    parser.add_argument("--program", help="mini program id (with --version and --app)")
    parser.add_argument("--version", help="version being released")
    parser.add_argument("--app", help="target app")
    parser.add_argument("--env", choices=[e.value for e in Environment],
                        help="environment (default production)")


def _release_ref(args: argparse.Namespace) -> ReleaseRef:
    if args.release and args.id and args.release != args.id:
        raise CliError("two different release ids given: use RELEASE_ID or --id", USAGE)
    workflow_id = args.release or args.id
    parts = {"--program": args.program, "--version": args.version, "--app": args.app}
    if workflow_id:
        if any(parts.values()) or args.env:
            raise CliError("name the release by its id or by --program/--version/--app, "
                           "not both", USAGE)
        try:
            return ReleaseRef.parse(workflow_id)
        except ValueError as error:
            raise CliError(str(error), USAGE) from None
    missing = [flag for flag, value in parts.items() if not value]
    if len(missing) == len(parts):
        raise CliError("which release? give RELEASE_ID, or --program, --version and --app", USAGE)
    if missing:
        raise CliError(f"missing {', '.join(missing)} to name the release", USAGE)
    return ReleaseRef(mini_program_id=args.program, version=args.version, target_app=args.app,
                      environment=args.env or Environment.PRODUCTION)


def _stage(value: str) -> Stage:
    try:
        return Stage(value.upper())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown stage {value!r} (one of {', '.join(Stage)})") from None


def _absolute(source: str) -> str:
    return str(Path(source).expanduser().absolute())


def _read_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(f"{what} is not JSON: {error}", USAGE) from None


def _read_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as error:
        raise CliError(f"cannot read {what} {path}: {error.strerror or error}", USAGE) from None


async def _connect() -> ReleaseClient:
    return await ReleaseClient.connect(Settings.from_env())


def _position(status: ReleaseStatus) -> str:
    if status.stage is Stage.GRAYSCALE:
        return f"{status.stage} {status.percent}%"
    return str(status.stage)


# --- start ---------------------------------------------------------------------------------


def _register_start(commands: Subcommands) -> None:
    start = commands.add_parser("start", help="start releasing a version (idempotent)")
    start.add_argument("--program", required=True, help="mini program id")
    start.add_argument("--version", required=True)
    start.add_argument("--app", required=True, help="target app")
    start.add_argument("--env", default=Environment.PRODUCTION.value,
                       choices=[e.value for e in Environment])
    start.add_argument("--workspace", required=True)
    start.add_argument("--source", required=True,
                       help="package directory, .zip or .tar.gz on the worker's file system")
    start.add_argument("--config-file", help="release configuration (JSON file)")
    start.add_argument("--wait", type=_stage, metavar="STAGE",
                       help="wait until the release reaches STAGE")
    start.add_argument("--timeout", type=float, default=DEFAULT_WAIT_SECONDS,
                       help=f"seconds --wait waits (default {DEFAULT_WAIT_SECONDS:.0f})")
    add_actor(start)
    add_json_flag(start)
    start.set_defaults(handler=_start)


async def _start(args: argparse.Namespace) -> None:
    config = {}
    if args.config_file:
        config = _read_json(_read_file(args.config_file, "--config-file"), "--config-file")
    request = StartInput.model_validate(given(
        mini_program_id=args.program, version=args.version, target_app=args.app,
        environment=args.env, workspace_id=args.workspace, requested_by=actor(args),
        source=_absolute(args.source), config=config,
    ))
    releases = await _connect()
    ref = await releases.start(request)
    if args.wait:
        status = await releases.wait_for_stage(ref, args.wait, args.timeout)
    else:
        status = await releases.status(ref)
    emit(args, status.model_dump(mode="json"), f"{status.release_id}  {_position(status)}")


# --- status --------------------------------------------------------------------------------


def _register_status(commands: Subcommands) -> None:
    status = commands.add_parser("status", help="where a release is and what it waits for")
    _add_release(status)
    add_json_flag(status)
    status.set_defaults(handler=_status)


async def _status(args: argparse.Namespace) -> None:
    ref = _release_ref(args)
    status = await (await _connect()).status(ref)
    emit(args, status.model_dump(mode="json"), status_text(status))


def _ladder(status: ReleaseStatus) -> str:
    steps = [f"[{step}]" if step == status.percent else str(step)
             for step in status.grayscale_ladder]
    return "ladder " + " ".join(steps)


def _reviews(status: ReleaseStatus) -> Iterator[str]:
    rejection = status.review_rejection
    for reviewer in status.required_reviewers:
        approval = status.approvals.get(reviewer)
        if approval:
            comment = f": {approval.comment}" if approval.comment else ""
            yield f"{reviewer}: approved by {approval.actor} at {when(approval.at)}{comment}"
        elif rejection and rejection.reviewer is reviewer:
            yield (f"{reviewer}: rejected by {rejection.actor} at {when(rejection.at)}: "
                   f"{rejection.reason}")
        elif status.stage is Stage.UNDER_REVIEW:
            yield f"{reviewer}: waiting"
        else:
            yield f"{reviewer}: -"


def _compatibility(status: ReleaseStatus) -> Iterator[str]:
    summary = status.compatibility
    if summary is None:
        yield "not tested yet"
        return
    yield (f"{summary.cells} cells: {summary.passed} passed, {summary.warned} warned, "
           f"{summary.failed} failed")
    yield from (f"FAIL {cell}" for cell in summary.failing_cells)


def _whitelist(status: ReleaseStatus) -> str:
    if not status.whitelist_allowed:
        reason = "first release: full release only" if status.full_release_only \
            else "not used by this target app"
        return f"not allowed ({reason})"
    return f"{status.whitelist_size} users"


def status_text(status: ReleaseStatus) -> str:
    """The status as an operator reads it: one labelled line per fact."""
    package = status.package
    rejection = status.last_rejection
    stage = _position(status)
    if status.pending_work:
        stage += f" (working: {status.pending_work.lower()})"
    rows: list[tuple[str, list[str]]] = [
        ("release", [status.release_id]),
        ("program", [f"{status.mini_program_id} {status.version} to {status.target_app} "
                     f"({status.environment}), workspace {status.workspace_id}, "
                     f"requested by {status.requested_by}"]),
        ("stage", [stage]),
        ("grayscale", [f"{status.percent}%  {_ladder(status)}"]),
        (f"review (round {status.review_round})", list(_reviews(status))),
        ("whitelist", [_whitelist(status)]),
        ("package", [f"sha256 {package.sha256[:16]}  {package.size_bytes} bytes, "
                     f"{package.file_count} files" if package else "-"]),
        ("compatibility", list(_compatibility(status))),
        ("build error", (status.build_error or "-").splitlines()),
        ("last refusal", [refusal_line(rejection)]),
        ("previous stable", [status.previous_stable_version or "-"]),
        ("created", [when(status.created_at)]),
        ("stage since", [when(status.stage_changed_at)]),
        ("updated", [when(status.updated_at)]),
        ("released", [when(status.released_at)]),
    ]
    if status.cancel_reason:
        rows.insert(3, ("cancel reason", [status.cancel_reason]))
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(
        f"{label if n == 0 else '':<{width}}{line}".rstrip()
        for label, lines in rows
        for n, line in enumerate(lines or ["-"])
    )


# --- list ------------------------------------------------------------------------------------


def _register_list(commands: Subcommands) -> None:
    listing = commands.add_parser("list", help="find releases by stage, program, app, env")
    listing.add_argument("--stage", type=_stage)
    listing.add_argument("--program", help="mini program id")
    listing.add_argument("--version")
    listing.add_argument("--app", help="target app")
    listing.add_argument("--env", choices=[e.value for e in Environment])
    listing.add_argument("--limit", type=int, default=DEFAULT_LIST_LIMIT,
                         help=f"at most this many (default {DEFAULT_LIST_LIMIT})")
    add_json_flag(listing)
    listing.set_defaults(handler=_list)


async def _list(args: argparse.Namespace) -> None:
    releases = await _connect()
    try:
        found = await releases.list(stage=args.stage, mini_program_id=args.program,
                                    version=args.version, target_app=args.app,
                                    environment=args.env, limit=args.limit)
    except ValueError as error:
        raise CliError(str(error), USAGE) from None
    rows = [[s.release_id, s.stage or "", f"{s.percent}%", s.status, when(s.start_time),
             when(s.close_time) if s.close_time else ""] for s in found]
    emit(args, [s.model_dump(mode="json") for s in found],
         table(["RELEASE", "STAGE", "PERCENT", "STATUS", "STARTED", "CLOSED"], rows))


# --- watch ---------------------------------------------------------------------------------


def _register_watch(commands: Subcommands) -> None:
    watch = commands.add_parser(
        "watch", help="follow a release live until it is RELEASED or CANCELED, or a channel "
                      "(channel:PROGRAM:APP:ENV) as it changes")
    _add_release(watch)
    watch.add_argument("--until", metavar="STAGE",
                       help="stop when the release reaches STAGE (for a channel id: when the "
                            "channel is in STATE, e.g. OFFLINE)")
    watch.set_defaults(handler=_watch)


class WatchDisplay:
    """One line per change; while the release builds or tests, a spinner on a terminal and
    an occasional plain line elsewhere (logs, pipes)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.current: StageChange | None = None
        self.frame = 0
        self.spinning = False
        self.last_note = 0.0

    def show(self, change: StageChange) -> None:
        self.clear()
        previous = self.current
        took = ""
        if previous and previous.stage in WORKING_STAGES and previous.stage != change.stage:
            took = f"  ({previous.stage} took {(change.at - previous.at).total_seconds():.1f} s)"
        percent = f" {change.percent}%" if change.stage is Stage.GRAYSCALE else ""
        local_time = change.at.astimezone().strftime("%H:%M:%S")
        print(f"{local_time}  {change.stage}{percent}{took}", file=self.out, flush=True)
        self.current = change
        self.last_note = 0.0

    def tick(self) -> None:
        change = self.current
        if change is None or change.stage not in WORKING_STAGES:
            return
        elapsed = max(0.0, (datetime.now(UTC) - change.at).total_seconds())
        if self.tty:
            self.frame = (self.frame + 1) % len(SPINNER)
            self.out.write(f"\r{SPINNER[self.frame]} {change.stage} {elapsed:.0f} s")
            self.out.flush()
            self.spinning = True
        elif elapsed - self.last_note >= PLAIN_PROGRESS_EVERY_SECONDS:
            self.last_note = elapsed
            print(f"          still {change.stage} after {elapsed:.0f} s", file=self.out,
                  flush=True)

    def clear(self) -> None:
        if self.spinning:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self.spinning = False

    async def animate(self) -> None:
        while True:
            await asyncio.sleep(SPINNER_TICK_SECONDS)
            self.tick()


async def _watch(args: argparse.Namespace) -> None:
    if (args.release or args.id or "").startswith(f"{CHANNEL_PREFIX}:"):
        await _watch_channel(args)
        return
    ref = _release_ref(args)
    try:
        until = _stage(args.until) if args.until else None
    except argparse.ArgumentTypeError as error:
        raise CliError(str(error), USAGE) from None
    releases = await _connect()
    display = WatchDisplay(sys.stdout)
    animation = asyncio.create_task(display.animate())
    last: Stage | None = None
    try:
        async with aclosing(releases.changes(ref)) as changes:
            async for change in changes:
                display.show(change)
                last = change.stage
                if change.stage is until:
                    return
    finally:
        animation.cancel()
        display.clear()
    # The release finished (RELEASED or CANCELED) without reaching --until.
    if until:
        raise ReleaseFinished(ref.release_id, last)


async def _watch_channel(args: argparse.Namespace) -> None:
    """A channel never finishes: its state and stable version as they change, until --until
    (a channel state) or Ctrl-C."""
    try:
        key = parse_channel_id(args.release or args.id)
        until = ChannelState(args.until.upper()) if args.until else None
    except ValueError as error:
        raise CliError(str(error), USAGE) from None
    channels = await ChannelClient.connect()
    async with aclosing(channels.changes(key)) as changes:
        async for change in changes:
            local_time = change.at.astimezone().strftime("%H:%M:%S")
            print(f"{local_time}  {change.state}  stable version {change.stable_version or '-'}",
                  flush=True)
            if change.state is until:
                return


# --- operator commands ---------------------------------------------------------------------


def _sender(spec: CommandSpec) -> Handler:
    async def send(args: argparse.Namespace) -> None:
        ref = _release_ref(args)
        command = spec.command_from(args, RELEASE.commands)
        status = await (await _connect()).command(ref, spec.command, command)
        emit(args, status.model_dump(mode="json"),
             f"{spec.command} accepted: {status.release_id}  {_position(status)}")

    return send


def _basic_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="display name")
    parser.add_argument("--description")
    parser.add_argument("--icon", help="icon URL")
    parser.add_argument("--server-domain", action="append", metavar="DOMAIN",
                        help="server domain whitelist entry (repeatable; replaces the list)")
    parser.add_argument("--h5-domain", action="append", metavar="DOMAIN",
                        help="H5 domain whitelist entry (repeatable; replaces the list)")


def _basic_info_payload(args: argparse.Namespace) -> Payload:
    basic_info = given(name=args.name, description=args.description, icon=args.icon)
    return given(basic_info=basic_info or None, server_domain_whitelist=args.server_domain,
                  h5_domain_whitelist=args.h5_domain)


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    _basic_info_arguments(parser)
    parser.add_argument("--os", action="append", metavar="OS",
                        help="operating system to test (repeatable)")
    parser.add_argument("--network", action="append", help="network to test (repeatable)")
    parser.add_argument("--tier", action="append", help="device tier to test (repeatable)")
    parser.add_argument("--json-config", metavar="JSON",
                        help="the change as one JSON object, instead of the options above")


def _config_payload(args: argparse.Namespace) -> Payload:
    compatibility = given(operating_systems=args.os, networks=args.network,
                           device_tiers=args.tier)
    patch = {**_basic_info_payload(args), **given(compatibility=compatibility or None)}
    if args.json_config:
        if patch:
            raise CliError("give either --json-config or the config options, not both", USAGE)
        patch = _read_json(args.json_config, "--json-config")
    if not patch:
        raise CliError("nothing to change: give --name, --description, --icon, "
                       "--server-domain, --h5-domain, --os, --network, --tier or --json-config",
                       USAGE)
    return {"config": patch}


def _rebuild_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="build from this source instead of the current one")


def _rebuild_payload(args: argparse.Namespace) -> Payload:
    return given(source=_absolute(args.source) if args.source else None)


def _reviewer_arguments(parser: argparse.ArgumentParser, *, reason: bool) -> None:
    parser.add_argument("--as", dest="reviewer", required=True,
                        choices=[r.value for r in Reviewer], help="the organisation you review for")
    if reason:
        parser.add_argument("--reason", required=True, help="what must change")
    else:
        parser.add_argument("--comment")


def _approve_payload(args: argparse.Namespace) -> Payload:
    return given(reviewer=args.reviewer, comment=args.comment)


def _reject_payload(args: argparse.Namespace) -> Payload:
    return {"reviewer": args.reviewer, "reason": args.reason}


def _whitelist_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", action="append", default=[], metavar="USER",
                        help="whitelisted user id (repeatable)")
    parser.add_argument("--users-file", metavar="FILE",
                        help="user ids, one a line (blank lines and # comments ignored)")


def _whitelist_payload(args: argparse.Namespace) -> Payload:
    users = list(args.user)
    if args.users_file:
        lines = [line.strip() for line in _read_file(args.users_file, "--users-file").splitlines()]
        users += [line for line in lines if line and not line.startswith("#")]
    if not users:
        raise CliError("give the whitelist with --user or --users-file", USAGE)
    # The list replaces the whitelist: a user named twice is simply in it.
    return {"user_ids": list(dict.fromkeys(users))}


def _grayscale_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("percent", type=int, metavar="PERCENT",
                        help="next step of the target app's ladder; 100 releases fully")


def _grayscale_payload(args: argparse.Namespace) -> Payload:
    return {"percent": args.percent}


def _reason_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason")


def _reason_payload(args: argparse.Namespace) -> Payload:
    return given(reason=args.reason)


OPERATOR_COMMANDS = (
    CommandSpec("config", "update_config", "change the release configuration",
                    _config_arguments, _config_payload),
    CommandSpec("rebuild", "rebuild", "build the package again", _rebuild_arguments,
                    _rebuild_payload),
    CommandSpec("retest", "retest_compatibility", "run the compatibility tests again",
                    no_arguments, no_payload),
    CommandSpec("apply", "apply_release", "apply for review", _basic_info_arguments,
                    _basic_info_payload),
    CommandSpec("approve", "approve_review", "approve the review",
                    lambda parser: _reviewer_arguments(parser, reason=False), _approve_payload),
    CommandSpec("reject", "reject_review", "reject the review",
                    lambda parser: _reviewer_arguments(parser, reason=True), _reject_payload),
    CommandSpec("whitelist", "start_whitelist_test", "whitelist test (replaces the list)",
                    _whitelist_arguments, _whitelist_payload),
    CommandSpec("grayscale", "set_grayscale", "roll out to PERCENT of users",
                    _grayscale_arguments, _grayscale_payload),
    CommandSpec("full", "full_release", "release to every user", no_arguments,
                    no_payload),
    CommandSpec("cancel-grayscale", "cancel_grayscale", "stop the grayscale (CANCELED)",
                    _reason_arguments, _reason_payload),
    CommandSpec("reset", "reset_grayscale", "back to RELEASE_PREPARATION at 0%%",
                    no_arguments, no_payload),
    CommandSpec("cancel", "cancel_release", "withdraw the release (CANCELED)",
                    _reason_arguments, _reason_payload),
)
