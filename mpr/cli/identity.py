"""`mpr login` and `mpr token`: the identity `mpr` and hand-written `temporal`/`tctl` lines
send with every command (docs/security.md: identity).

    mpr login --user alice     # the embedded stack only: a token from its own issuer
    mpr token                  # prints the token in use, for --input '{"identity_token": ...}'

Against a real identity provider, `mpr` reads MPR_TOKEN, MPR_TOKEN_FILE or MPR_TOKEN_COMMAND
(mpr.infra.tokens) and `mpr login` refuses: tokens come from the provider's own flow.
"""

import argparse
from datetime import UTC, datetime

from mpr.cli.output import CliError, Subcommands
from mpr.infra.dev_issuer import TOKEN_LIFETIME_SECONDS, DevIssuer
from mpr.infra.exit_codes import FAILURE, USAGE
from mpr.infra.settings import Settings
from mpr.infra.tokens import expires_at, store_login_token, token_provider


def register(commands: Subcommands) -> None:
    login = commands.add_parser(
        "login", help="sign in to the embedded stack's issuer as a user (make up)")
    login.add_argument("--user", required=True, help="the user name the token carries")
    login.add_argument("--minutes", type=int, default=TOKEN_LIFETIME_SECONDS // 60,
                       help=f"how long the token lasts (default {TOKEN_LIFETIME_SECONDS // 60})")
    login.set_defaults(handler=_login)
    token = commands.add_parser(
        "token", help="print the identity token mpr would send (for temporal and tctl lines)")
    token.set_defaults(handler=_token)


async def _login(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    issuer = DevIssuer.under()
    if not settings.auth_required:
        raise CliError("MPR_AUTH=off: commands are not verified, so there is nothing to log in "
                       "to (the actor field names you)")
    if settings.auth_issuer != issuer.issuer or not issuer.exists:
        raise CliError(
            "mpr login signs tokens only for the embedded stack's own issuer (`make up`); "
            f"this environment verifies tokens of {settings.auth_issuer or 'no issuer'}: get "
            "a token from that provider and give it to mpr with MPR_TOKEN, MPR_TOKEN_FILE or "
            "MPR_TOKEN_COMMAND (docs/production.md)", FAILURE)
    if not 1 <= args.minutes <= 24 * 60:
        raise CliError("--minutes must be between 1 and 1440", USAGE)
    token = issuer.token(args.user, lifetime_seconds=args.minutes * 60)
    path = store_login_token(token)
    until = datetime.fromtimestamp(expires_at(token) or 0, UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"logged in as {args.user} until {until} (token in {path}; `mpr token` prints it)")


async def _token(args: argparse.Namespace) -> None:
    print(await token_provider()())
