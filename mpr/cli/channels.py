"""`mpr rollback`, `mpr offline`, `mpr online` and `mpr channel`: a live mini program.

    mpr rollback coffee-shop --app gopay --reason "checkout crashes"
    mpr rollback coffee-shop --app gopay --reason "back to the known good" --to-version 1.0.0
    mpr offline coffee-shop --app gopay --reason "fraud report"       # the emergency brake
    mpr online coffee-shop --app gopay
    mpr channel status coffee-shop --app gopay
    mpr channel versions coffee-shop --app gopay
    mpr channel list [--program coffee-shop] [--state OFFLINE]

A channel is (mini program, target app, environment; --env, production by default). Commands
go as update-with-start: a channel whose workflow is not running yet is started from the
catalog by the same command. Who is asking is the subject of the identity token, as for every
`mpr` command; --actor, when given, must name it.

Exit codes are those of cli.main: 0 done, 1 failure, 2 usage, 3 refused, 4 no such channel.
"""

import argparse
from datetime import datetime

from mpr.cli.arguments import CommandSpec, Payload, add_command_parsers, given
from mpr.cli.output import (
    Handler,
    Subcommands,
    add_json_flag,
    emit,
    refusal_line,
    table,
    when,
)
from mpr.domain.channel.models import ChannelKey, Takedown
from mpr.domain.channel.rules import CHANNEL
from mpr.domain.channel.stages import ChannelState
from mpr.domain.channel.state import ChannelStatus
from mpr.domain.core.models import Environment
from starters.channels import ChannelClient


def register(commands: Subcommands) -> None:
    add_command_parsers(commands, CHANNEL_COMMAND_SPECS, _add_channel, _sender)
    channel = commands.add_parser("channel", help="what a mini program serves on a target app")
    actions = channel.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, help_text in (
        ("status", _status, "state, stable version, takedown, last rollback, last refusal"),
        ("versions", _versions, "the versions released on the channel, newest first"),
    ):
        parser = actions.add_parser(name, help=help_text)
        _add_channel(parser)
        add_json_flag(parser)
        parser.set_defaults(handler=handler)
    listing = actions.add_parser("list", help="running channels")
    listing.add_argument("--program", help="only this mini program")
    listing.add_argument("--state", choices=[state.value for state in ChannelState])
    add_json_flag(listing)
    listing.set_defaults(handler=_list)


def _add_channel(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", metavar="PROGRAM", help="mini program id")
    parser.add_argument("--app", required=True, help="target app")
    parser.add_argument("--env", default=Environment.PRODUCTION.value,
                        choices=[env.value for env in Environment],
                        help="environment (default: production)")


def _key(args: argparse.Namespace) -> ChannelKey:
    return ChannelKey(mini_program_id=args.program, target_app=args.app, environment=args.env)


def _sender(spec: CommandSpec) -> Handler:
    async def send(args: argparse.Namespace) -> None:
        key = _key(args)
        command = spec.command_from(args, CHANNEL.commands)
        channels = await ChannelClient.connect()
        status = await channels.command(key, spec.command, command)
        emit(args, status.model_dump(mode="json"),
             f"{spec.command} accepted: {status.channel_id}  {_serving(status)}")

    return send


def _serving(status: ChannelStatus) -> str:
    if status.state is ChannelState.ONLINE:
        return f"ONLINE, serving {status.stable_version}"
    if status.state is ChannelState.OFFLINE:
        return f"OFFLINE (stable version {status.stable_version} kept)"
    return str(status.state)


def _takedown(takedown: Takedown | None) -> str:
    if takedown is None:
        return "-"
    return (f"{takedown.kind} takedown by {takedown.by} at {when(takedown.at)}: "
            f"{takedown.reason}")


async def _status(args: argparse.Namespace) -> None:
    channels = await ChannelClient.connect()
    status = await channels.status(_key(args))
    emit(args, status.model_dump(mode="json"), status_text(status))


def status_text(status: ChannelStatus) -> str:
    flight = status.in_flight
    rollback = status.last_rollback
    rows = [
        ("channel", status.channel_id),
        ("state", _serving(status)),
        ("stable release", status.stable_release_id or "-"),
        ("in flight", f"{flight.release_id} ({flight.stage}, {flight.percent}%)"
                      if flight else "-"),
        ("offline", _takedown(status.offline)),
        ("last rollback", f"{rollback.from_version} -> {rollback.to_version} by {rollback.by} "
                          f"at {when(rollback.at)}: {rollback.reason}" if rollback else "-"),
        ("last refusal", refusal_line(status.last_rejection)),
        ("events", str(status.audit_count)),
        ("catalog read", when(status.as_of)),
    ]
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(f"{label:<{width}}{value}" for label, value in rows)


def _changes(changes: list[tuple[str, datetime, str | None]]) -> str:
    return "; ".join(f"{change} {when(at)}{f' by {by}' if by else ''}"
                     for change, at, by in changes)


async def _versions(args: argparse.Namespace) -> None:
    channels = await ChannelClient.connect()
    versions = await channels.versions(_key(args))
    rows = [[v.version, v.status, when(v.released_at), v.released_by or "",
             "yes" if v.bundle_present else "GONE",
             _changes([(c.change, c.at, c.by) for c in v.changes if c.change != "released"])]
            for v in versions.versions]
    emit(args, versions.model_dump(mode="json"),
         table(["VERSION", "STATUS", "RELEASED", "BY", "BUNDLE", "CHANGES"], rows)
         + f"\n(as of {when(versions.as_of)})")


async def _list(args: argparse.Namespace) -> None:
    channels = await ChannelClient.connect()
    found = await channels.list(mini_program_id=args.program, state=args.state)
    rows = [[c.channel_id, c.state or "", c.stable_version or ""] for c in found]
    emit(args, [c.model_dump(mode="json") for c in found],
         table(["CHANNEL", "STATE", "STABLE VERSION"], rows))


def _reason_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", required=True, help="why (recorded in the audit log)")


def _rollback_arguments(parser: argparse.ArgumentParser) -> None:
    _reason_arguments(parser)
    parser.add_argument("--to-version", help="one of the last five versions released on the "
                                             "channel (default: the previous stable one)")


def _rollback_payload(args: argparse.Namespace) -> Payload:
    return given(reason=args.reason, to_version=args.to_version)


def _reason_payload(args: argparse.Namespace) -> Payload:
    return given(reason=args.reason)


def _online_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", help="why (recorded in the audit log)")


CHANNEL_COMMAND_SPECS = (
    CommandSpec("rollback", "rollback", "serve the previous stable version again (no review)",
                _rollback_arguments, _rollback_payload),
    CommandSpec("offline", "take_offline", "take the mini program offline: nobody is served",
                _reason_arguments, _reason_payload),
    CommandSpec("online", "bring_online", "serve the stable version again after a takedown",
                _online_arguments, _reason_payload),
)
