"""`mpr codec-server`: the codec server of infra.codec_server, for those who hold the payload
keys and want the Web UI or `temporal --codec-endpoint` to show decrypted payloads."""

import argparse
import asyncio

from mpr.cli.output import CliError, Subcommands
from mpr.infra.codec import PayloadKeyError
from mpr.infra.codec_server import start
from mpr.infra.exit_codes import USAGE
from mpr.infra.settings import DEFAULT_CODEC_SERVER, Settings


def register(commands: Subcommands) -> None:
    server = commands.add_parser(
        "codec-server",
        help="decrypt payloads for the Web UI and `temporal --codec-endpoint` (until Ctrl-C)",
    )
    server.add_argument("--address", metavar="HOST:PORT",
                        help=f"default: MPR_CODEC_SERVER_ADDRESS, else {DEFAULT_CODEC_SERVER}")
    server.set_defaults(handler=_serve)


async def _serve(args: argparse.Namespace) -> None:
    try:
        server = start(Settings.from_env(), args.address)
    except PayloadKeyError:
        raise
    except ValueError as error:  # a malformed address
        raise CliError(str(error), USAGE) from None
    except OSError as error:
        raise CliError(f"the codec server cannot listen: {error}") from None
    # In a thread, so that Ctrl-C (which cancels this task; mpr exits 130) reaches it.
    with server:
        try:
            await asyncio.to_thread(server.serve_forever)
        finally:
            server.shutdown()
