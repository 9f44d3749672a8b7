"""Helpers for the `mpr` and client library tests, on the shared stack of tests/stack.py."""

import asyncio
import json
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from domain.models import StartInput
from tests.stack import WorkerProcess

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "coffee-shop"
# One cell per release: these tests drive releases; the matrix is tested elsewhere.
ONE_CELL = {"operating_systems": ["ios"], "networks": ["wifi"], "device_tiers": ["high"]}

def new_program() -> str:
    return f"coffee-{uuid.uuid4().hex[:8]}"


def start_input(program: str, version: str = "1.0.0", target_app: str = "gopay",
                source: Path | None = None) -> StartInput:
    return StartInput.model_validate({
        "mini_program_id": program, "version": version, "target_app": target_app,
        "workspace_id": "ws-e2e", "requested_by": "dev",
        "source": str(source or SAMPLES / version),
        "config": {"basic_info": {"name": "Coffee Shop"}, "compatibility": ONE_CELL},
    })


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


Mpr = Callable[..., Coroutine[Any, Any, Run]]


@pytest.fixture
def mpr(
    worker: WorkerProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> Mpr:
    """Run `mpr ARGS...` in-process against the stack; main() runs its own event loop, so it
    gets a thread of its own."""
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TASK_QUEUE", "DATABASE_URL"):
        monkeypatch.setenv(name, worker.env[name])
    monkeypatch.delenv("MPR_ACTOR", raising=False)
    # A developer's `make up` stack must not leak into the tests.
    monkeypatch.setattr("infra.settings.STACK_ENV_FILE", tmp_path / "stack.env")

    async def run(*args: str) -> Run:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(args))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run
