"""Running `mpr` in-process in tests: exit code, stdout and stderr of one invocation."""

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mpr.cli.main import main


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def error(self, code: int) -> str:
        """The one-line error of a run that failed with `code`."""
        assert self.code == code, self
        assert self.err.startswith("mpr: ") and self.err.count("\n") == 1, self.err
        assert "Traceback" not in self.err
        return self.err


Mpr = Callable[..., Awaitable[Run]]


def mpr_runner(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Mpr:
    """`mpr` with `env` set; main() runs its own event loop, so it gets a thread of its own."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MPR_ACTOR", raising=False)
    # A developer's `make up` stack must not leak into the tests.
    monkeypatch.setattr("mpr.infra.settings.STACK_ENV_FILE", tmp_path / "stack.env")

    async def run(*args: str) -> Run:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(args))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

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
