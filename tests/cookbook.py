"""Reading the cookbooks (docs/release-cookbook.md, docs/mini-service-cookbook.md) and running
their `temporal` lines against the test stack."""

import os
import re
import shlex
import subprocess
from pathlib import Path

from mpr.infra.servers import temporal_binary
from tests.stack import WorkerProcess

DOCS = Path(__file__).resolve().parents[1] / "docs"
RELEASE_COOKBOOK = DOCS / "release-cookbook.md"
SERVICE_COOKBOOK = DOCS / "mini-service-cookbook.md"
PRODUCTION = DOCS / "production.md"


def cookbook(document: Path) -> dict[str, list[str]]:
    """Command lines of the cookbook `document` (the whole file is the cookbook), grouped under
    the `# name:` comment that heads them (continued lines joined)."""
    section = document.read_text()
    groups: dict[str, list[str]] = {}
    current: str | None = None
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("# "):
                current = line[2:].split(":")[0]
                groups[current] = []
            elif current and line.startswith(("temporal ", "tctl ")):
                groups[current].append(line)
    return groups


def option(line: str, name: str) -> str:
    words = shlex.split(line)
    return words[words.index(name) + 1]


def run_temporal_line(line: str, worker: WorkerProcess,
                      variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The line as bash runs it, with the real CLI, the stack's address, codec server (the
    cookbook's exports) and task queue, and the cookbook's shell variables (e.g. RELEASE)."""
    assert line.startswith("temporal ")
    env = {**os.environ, **variables, "TEMPORAL_ADDRESS": worker.env["TEMPORAL_ADDRESS"],
           "TEMPORAL_NAMESPACE": "default",
           "TEMPORAL_CODEC_ENDPOINT": worker.env["TEMPORAL_CODEC_ENDPOINT"]}
    command = line.replace("temporal ", shlex.quote(temporal_binary()) + " ", 1)
    command = command.replace("--task-queue mini-program-release",
                              f"--task-queue {worker.env['TEMPORAL_TASK_QUEUE']}")
    return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True,
                          timeout=60)
