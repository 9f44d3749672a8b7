"""The worker process's own parts: its tuning reaching the SDK, its liveness file, and the
workflow bytecode it writes for the sandbox."""

import asyncio
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import cast

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import PollerBehaviorSimpleMaximum

from mpr.infra.settings import Settings
from tests.identity import verifying
from workers import health
from workers.health import health_problem, keep_touching, write_health
from workers.main import build_worker, write_workflow_bytecode
from workflows.release import MiniProgramRelease

TUNED = {
    "WORKER_MAX_CACHED_WORKFLOWS": "250",
    "WORKER_MAX_CONCURRENT_ACTIVITIES": "40",
    "WORKER_MAX_CONCURRENT_WORKFLOW_TASKS": "20",
    "WORKER_WORKFLOW_TASK_POLLERS": "3",
    "WORKER_ACTIVITY_TASK_POLLERS": "7",
}


async def test_the_tuning_settings_reach_the_sdk_worker(
    env: WorkflowEnvironment, tmp_path: Path,
) -> None:
    settings = Settings.from_env({**TUNED, "ARTIFACT_DIR": str(tmp_path)})
    worker = build_worker(env.client, settings, cast(asyncpg.Pool, None),
                          identity=verifying())

    config = worker.config()
    assert config["max_cached_workflows"] == 250
    assert config["max_concurrent_activities"] == 40
    assert config["max_concurrent_workflow_tasks"] == 20
    assert config["workflow_task_poller_behavior"] == PollerBehaviorSimpleMaximum(maximum=3)
    assert config["activity_task_poller_behavior"] == PollerBehaviorSimpleMaximum(maximum=7)


def test_tuning_defaults_are_the_sdks() -> None:
    settings = Settings.from_env({})
    assert (settings.max_cached_workflows, settings.max_concurrent_activities,
            settings.max_concurrent_workflow_tasks, settings.workflow_task_pollers,
            settings.activity_task_pollers, settings.health_file) == (1000, 100, 100, 5, 5, None)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("WORKER_MAX_CACHED_WORKFLOWS", "many", "must be a whole number, not 'many'"),
    ("WORKER_MAX_CACHED_WORKFLOWS", "-1", "must be at least 0, not -1"),
    ("WORKER_MAX_CONCURRENT_ACTIVITIES", "0", "must be at least 1, not 0"),
    ("WORKER_WORKFLOW_TASK_POLLERS", "1.5", "must be a whole number"),
])
def test_unusable_tuning_is_refused_naming_the_variable(name: str, value: str,
                                                        message: str) -> None:
    with pytest.raises(ValueError, match=f"{name} {message}"):
        Settings.from_env({name: value})
    assert Settings.from_env({"WORKER_MAX_CACHED_WORKFLOWS": "0"}).max_cached_workflows == 0


# --- liveness --------------------------------------------------------------------------------


def test_a_fresh_file_is_live_and_a_stale_missing_or_broken_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "worker.health"
    assert "does not exist: the worker is not running" in str(health_problem(path, time.time()))

    write_health(path, "mini-program-release")
    record = json.loads(path.read_text())
    assert record["pid"] == os.getpid() and record["task_queue"] == "mini-program-release"
    assert health_problem(path, time.time()) is None
    stale = health_problem(path, time.time() + 31)
    assert stale is not None and "last showed life 31 s ago" in stale

    path.write_text("{not json")
    assert "is unreadable" in str(health_problem(path, time.time()))
    assert [p.name for p in tmp_path.iterdir()] == ["worker.health"], "no temporary file left"


async def test_the_worker_keeps_the_file_fresh_and_removes_it_when_it_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "worker.health"
    written: list[float] = []
    twice = asyncio.Event()
    loop = asyncio.get_running_loop()

    def recording_write(target: Path, task_queue: str) -> None:  # runs in a thread
        write_health(target, task_queue)
        written.append(json.loads(target.read_text())["at"])
        if len(written) == 2:
            loop.call_soon_threadsafe(twice.set)

    monkeypatch.setattr(health, "TOUCH_EVERY_SECONDS", 0.01)
    monkeypatch.setattr(health, "write_health", recording_write)
    touching = asyncio.create_task(keep_touching(path, "q"))
    await asyncio.wait_for(twice.wait(), timeout=30)
    touching.cancel()
    with pytest.raises(asyncio.CancelledError):
        await touching

    assert written[1] > written[0], "touched again, later"
    assert not path.exists()


def test_the_health_command_reads_the_file_the_settings_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "worker.health"
    monkeypatch.setenv("WORKER_HEALTH_FILE", str(path))
    assert health.main() == 1 and "does not exist" in capsys.readouterr().err
    write_health(path, "q")
    assert health.main() == 0
    monkeypatch.delenv("WORKER_HEALTH_FILE")
    assert health.main() == 1 and "WORKER_HEALTH_FILE is not set" in capsys.readouterr().err


# --- bytecode --------------------------------------------------------------------------------


def test_the_workflow_modules_get_their_bytecode(tmp_path: Path) -> None:
    source = Path(MiniProgramRelease.__module__.replace(".", "/") + ".py").resolve()
    cached = Path(importlib.util.cache_from_source(str(source)))
    cached.unlink(missing_ok=True)

    write_workflow_bytecode([MiniProgramRelease])

    assert cached.is_file() and cached.stat().st_mtime >= source.stat().st_mtime
