"""Arguments every lifecycle's commands take alike: who is asking, and the payload of a
command built from the options given."""

import argparse
import getpass
import os
from typing import Any

Payload = dict[str, Any]
"""A command's fields as the options give them; the command model validates them."""


def add_actor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", help="who is asking (default: $MPR_ACTOR, else your "
                                        "operating system user name)")


def actor(args: argparse.Namespace) -> str:
    return str(args.actor or os.environ.get("MPR_ACTOR") or getpass.getuser())


def given(**fields: Any) -> Payload:
    """The fields the user gave; absent ones stay absent (they mean "keep")."""
    return {name: value for name, value in fields.items() if value is not None}


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """The command takes nothing but what names its subject and the actor."""


def no_payload(args: argparse.Namespace) -> Payload:
    return {}
