"""Where a client's identity token comes from (docs/security.md: identity).

In order: MPR_TOKEN (the token itself), MPR_TOKEN_FILE (a file holding it), MPR_TOKEN_COMMAND
(a command that prints it, like kubectl's credential plugins: any identity provider's CLI
will do), and last the token `mpr login` stored for the embedded stack's issuer. The token is
read again for every command, so a long-running service picks up a refreshed one; a command's
token is cached until shortly before it expires.

Nothing here verifies a token (the worker does); its `exp` is read only to say that it has
expired before the worker refuses it.
"""

import asyncio
import json
import os
import shlex
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from joserfc import jws
from joserfc.errors import JoseError

from mpr.infra.settings import DATA_DIR, STACK_ENV_FILE, SettingsError, read_env_file

TokenProvider = Callable[[], Awaitable[str]]
"""Called once per command: the identity token to send with it."""

LOGIN_TOKEN_FILE = DATA_DIR / "auth" / "mpr-token"
COMMAND_TIMEOUT_SECONDS = 30
REFRESH_BEFORE_EXPIRY_SECONDS = 30
HOW_TO_GET_ONE = ("`mpr login --user NAME` against the embedded stack, or MPR_TOKEN, "
                  "MPR_TOKEN_FILE or MPR_TOKEN_COMMAND for your identity provider "
                  "(docs/security.md)")


class TokenUnavailable(SettingsError):
    """No usable token was found; the message says where it looked and what to do."""


def expires_at(token: str) -> float | None:
    """The token's `exp` claim, unverified, or None when it has none or is no JWT."""
    try:
        claims = jws.extract_compact(token.encode()).payload
    except (JoseError, ValueError):
        return None
    try:
        exp = json.loads(claims).get("exp")
    except (ValueError, AttributeError):
        return None
    return float(exp) if isinstance(exp, int | float) else None


def require_fresh(token: str, source: str, now: float | None = None) -> str:
    token = token.strip()
    if not token:
        raise TokenUnavailable(f"{source} is empty: {HOW_TO_GET_ONE}")
    exp = expires_at(token)
    if exp is not None and exp <= (time.time() if now is None else now):
        raise TokenUnavailable(f"the token from {source} has expired: get a new one "
                               f"({HOW_TO_GET_ONE})")
    return token


@dataclass
class CommandToken:
    """A token printed by a command, kept until shortly before it expires."""

    command: str
    _token: str | None = None
    _expires: float = 0.0

    async def __call__(self) -> str:
        if self._token is None or time.time() >= self._expires - REFRESH_BEFORE_EXPIRY_SECONDS:
            self._token = await asyncio.to_thread(self._run)
            self._expires = expires_at(self._token) or time.time() + 60
        return self._token

    def _run(self) -> str:
        try:
            done = subprocess.run(shlex.split(self.command), capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise TokenUnavailable(f"MPR_TOKEN_COMMAND could not run: {error}") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise TokenUnavailable(f"MPR_TOKEN_COMMAND failed (exit {done.returncode}): {last}")
        return require_fresh(done.stdout, "MPR_TOKEN_COMMAND")


def token_provider(environ: Mapping[str, str] | None = None) -> TokenProvider:
    """The provider the environment configures (module docstring for the order)."""
    env = {**read_env_file(STACK_ENV_FILE), **(os.environ if environ is None else environ)}
    if env.get("MPR_TOKEN"):
        token = env["MPR_TOKEN"]
        return lambda: _ready(require_fresh(token, "MPR_TOKEN"))
    if env.get("MPR_TOKEN_FILE"):
        return _file_token(Path(env["MPR_TOKEN_FILE"]), "MPR_TOKEN_FILE")
    if env.get("MPR_TOKEN_COMMAND"):
        return CommandToken(env["MPR_TOKEN_COMMAND"])
    return _file_token(LOGIN_TOKEN_FILE, None)


def _file_token(path: Path, variable: str | None) -> TokenProvider:
    source = f"{variable} ({path})" if variable else f"the token `mpr login` stored ({path})"

    async def read() -> str:
        try:
            token = await asyncio.to_thread(path.read_text)
        except FileNotFoundError:
            if variable is None:
                raise TokenUnavailable(f"no identity token: {HOW_TO_GET_ONE}") from None
            raise TokenUnavailable(f"{source} does not exist") from None
        except OSError as error:
            raise TokenUnavailable(f"cannot read {source}: {error.strerror}") from None
        return require_fresh(token, source)

    return read


async def _ready(token: str) -> str:
    return token


def store_login_token(token: str, path: Path | None = None) -> Path:
    """Keep `mpr login`'s token for the next commands (mode 0600: it is a credential)."""
    path = path or LOGIN_TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return path
