"""Arguments every lifecycle's commands take alike: who is asking, and the payload of a
command built from the options given."""

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mpr.cli.output import Handler, Subcommands, add_json_flag
from mpr.domain.core.commands import Command

Payload = dict[str, Any]
"""A command's fields as the options give them; the command model validates them."""


def add_actor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", help="who you are, to be checked against your identity "
                                        "token (default: $MPR_ACTOR, else the token speaks)")


def actor(args: argparse.Namespace) -> str | None:
    """The actor to name in the payload, only when the user gave one: the identity token
    says who is asking, and a named actor must match it."""
    return args.actor or os.environ.get("MPR_ACTOR") or None


def given(**fields: Any) -> Payload:
    """The fields the user gave; absent ones stay absent (they mean "keep")."""
    return {name: value for name, value in fields.items() if value is not None}


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """The command takes nothing but what names its subject and the actor."""


def no_payload(args: argparse.Namespace) -> Payload:
    return {}


@dataclass(frozen=True)
class CommandSpec:
    """An `mpr` subcommand that sends one lifecycle command: its name on the command line,
    the command it sends, and how its options become the payload."""

    cli_name: str
    command: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    payload: Callable[[argparse.Namespace], Payload]

    def command_from(
        self, args: argparse.Namespace, commands: Mapping[str, type[Command]]
    ) -> Command:
        """The command the options describe, validated here so that a typo is a usage error
        before anything is sent."""
        return commands[self.command].model_validate(given(actor=actor(args),
                                                           **self.payload(args)))


def add_command_parsers(
    actions: Subcommands,
    specs: Sequence[CommandSpec],
    add_subject: Callable[[argparse.ArgumentParser], None],
    sender: Callable[[CommandSpec], Handler],
) -> None:
    """One subcommand per spec, each naming its subject (a release, a mini service version)
    and its actor the same way."""
    for spec in specs:
        parser = actions.add_parser(spec.cli_name, help=spec.help)
        spec.arguments(parser)
        add_subject(parser)
        add_actor(parser)
        add_json_flag(parser)
        parser.set_defaults(handler=sender(spec))
