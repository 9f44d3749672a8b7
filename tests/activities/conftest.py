"""Fixtures for the build and compatibility activity tests: the shipped sample packages, an
activity environment that records heartbeats, and a build runner."""

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.release.build import BuildActivities
from mpr.domain.release.models import BuildRequest, PackageFacts

Build = Callable[..., Coroutine[Any, Any, PackageFacts]]


class RecordingEnvironment(ActivityEnvironment):
    """An ActivityEnvironment that keeps every heartbeat's details."""

    def __init__(self) -> None:
        super().__init__()
        self.heartbeats: list[dict[str, object]] = []
        self.on_heartbeat = lambda *details: self.heartbeats.append(details[0])


@pytest.fixture
def samples() -> Path:
    return Path(__file__).resolve().parents[2] / "samples" / "coffee-shop"


@pytest.fixture
def activity_env() -> RecordingEnvironment:
    return RecordingEnvironment()


@pytest.fixture
def artifact_dir(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def builder(artifact_dir: Path, tmp_path: Path, samples: Path) -> BuildActivities:
    return BuildActivities(artifact_dir, [tmp_path, samples])


@pytest.fixture
def build(builder: BuildActivities) -> Build:
    """Run build_package on a source through an ActivityEnvironment."""

    async def run(
        source: Path,
        version: str = "1.0.0",
        *,
        activities: BuildActivities = builder,
        env: ActivityEnvironment | None = None,
    ) -> PackageFacts:
        request = BuildRequest(
            release_id="rel-1", mini_program_id="coffee-shop", version=version, source=str(source)
        )
        return await (env or ActivityEnvironment()).run(activities.build_package, request)

    return run
