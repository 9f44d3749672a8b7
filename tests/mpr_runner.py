"""Running `mpr` in-process in tests: exit code, stdout and stderr of one invocation.

Each invocation has the identity a user would give it: `mpr ... --actor X` (or MPR_ACTOR=X)
runs with MPR_TOKEN set to X's token, so the worker checks the actor flag against the token as
it does for anyone; `as_user="X"` gives X's token without an actor flag. A token the test
itself put in MPR_TOKEN, MPR_TOKEN_FILE or MPR_TOKEN_COMMAND is left alone, and nothing from
the developer's environment or `mpr login` reaches the tests.
"""

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mpr.cli.main import main
from tests import identity

TOKEN_VARIABLES = ("MPR_TOKEN", "MPR_TOKEN_FILE", "MPR_TOKEN_COMMAND")


@dataclass
class Run:
    code: int
    out: str
    err: str
    token: str | None = None
    """The token the runner gave this invocation (None: none, or the test's own)."""

    def json(self) -> Any:
        return json.loads(self.out)

    def error(self, code: int) -> str:
        """The one-line error of a run that failed with `code`."""
        assert self.code == code, self
        assert self.err.startswith("mpr: ") and self.err.count("\n") == 1, self.err
        assert "Traceback" not in self.err
        return self.err


Mpr = Callable[..., Awaitable[Run]]


def actor_flag(args: Sequence[str]) -> str | None:
    """The user `--actor` names in `args`, else MPR_ACTOR's, as mpr reads them."""
    for n, arg in enumerate(args):
        if arg == "--actor" and n + 1 < len(args):
            return args[n + 1]
        if arg.startswith("--actor="):
            return arg.partition("=")[2]
    return os.environ.get("MPR_ACTOR") or None


def mpr_runner(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str], tmp_path: Path,
               token: Callable[[str], str] = identity.token) -> Mpr:
    """`mpr` with `env` set; main() runs its own event loop, so it gets a thread of its own.
    `token(user)` is the token an invocation acting as `user` runs with."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("MPR_ACTOR", *TOKEN_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    # A developer's `make up` stack (its stack.env, its `mpr login`) must not leak into the
    # tests.
    monkeypatch.setattr("mpr.infra.settings.STACK_ENV_FILE", tmp_path / "stack.env")
    monkeypatch.setattr("mpr.infra.tokens.STACK_ENV_FILE", tmp_path / "stack.env")
    monkeypatch.setattr("mpr.infra.tokens.LOGIN_TOKEN_FILE",
                        tmp_path / "not-logged-in" / "mpr-token")

    async def run(*args: str, as_user: str | None = None) -> Run:
        user = as_user or actor_flag(args)
        given = None
        if user is not None and not any(os.environ.get(name) for name in TOKEN_VARIABLES):
            given = token(user)
        capsys.readouterr()
        if given is not None:
            os.environ["MPR_TOKEN"] = given
        try:
            code = await asyncio.to_thread(main, list(args))
        finally:
            if given is not None:
                os.environ.pop("MPR_TOKEN", None)
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err, given)

    return run


@pytest.fixture(name="mpr")
def catalog_mpr(
    db_pool: asyncpg.Pool,  # a clean catalog for each test
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> Mpr:
    """`mpr` against the test catalog only, no Temporal: for the modules of commands that need
    nothing else (they import this fixture, which then stands for the stack's `mpr`)."""
    return mpr_runner({"DATABASE_URL": postgres_url}, monkeypatch, capsys, tmp_path)
