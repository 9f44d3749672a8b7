"""Reading the cookbooks (docs/release-cookbook.md, docs/mini-service-cookbook.md,
docs/channel-cookbook.md) and running their lines against the test stack as an operator's shell
would.

A cookbook's `temporal` and `tctl` lines are grouped under the `# name:` comment that heads
them. The other lines set the shell up: `export`s (the servers' addresses, which the tests
replace with the stack's), shell variables (`RELEASE=...`, `TOKEN=$(mpr token)`) and `mpr login
--user NAME`. A group runs in the shell the document has set up by the time it comes: every
setup line before its first command, in order, run by bash with the real `mpr` against the
stack (its MPR_DATA_DIR holds the tests' issuer, as `make up` leaves its own).
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from mpr.infra.servers import temporal_binary
from tests.stack import WorkerProcess

DOCS = Path(__file__).resolve().parents[1] / "docs"
RELEASE_COOKBOOK = DOCS / "release-cookbook.md"
SERVICE_COOKBOOK = DOCS / "mini-service-cookbook.md"
CHANNEL_COOKBOOK = DOCS / "channel-cookbook.md"
PRODUCTION = DOCS / "production.md"
COMMAND_LINE = ("temporal ", "tctl ")
# Shell variables a setup line assigns: `NAME=...` at the start or after `&&`, `;`, `|`.
ASSIGNED = re.compile(r"(?:^|[;&|]\s*)([A-Za-z_][A-Za-z0-9_]*)=")
LOGIN = re.compile(r"^mpr login --user (\S+)")
# mpr as installed beside this interpreter (the venv's console script).
BIN = Path(sys.executable).parent


def _lines(document: Path) -> list[str]:
    """The document's shell lines, continued lines joined, in order."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", document.read_text(), re.DOTALL):
        lines += [line.strip() for line in block.replace("\\\n", " ").splitlines()
                  if line.strip()]
    return lines


def cookbook(document: Path) -> dict[str, list[str]]:
    """Command lines of the cookbook `document` (the whole file is the cookbook), grouped under
    the `# name:` comment that heads them (continued lines joined)."""
    groups: dict[str, list[str]] = {}
    current: str | None = None
    for line in _lines(document):
        if line.startswith("# "):
            current = line[2:].split(":")[0]
            groups[current] = []
        elif current and line.startswith(COMMAND_LINE):
            groups[current].append(line)
    return groups


def is_setup(line: str) -> bool:
    """A line that changes the operator's shell: a login, a variable (not an export: the tests
    bring the stack's addresses)."""
    return bool(LOGIN.match(line)) or (not line.startswith(("export ", "#", *COMMAND_LINE))
                                       and bool(ASSIGNED.match(line)))


def setups(document: Path) -> dict[str, tuple[str, ...]]:
    """For each group of `document`, the setup lines run before its first command line."""
    seen: list[str] = []
    before: dict[str, tuple[str, ...]] = {}
    current: str | None = None
    for line in _lines(document):
        if line.startswith("# "):
            current = line[2:].split(":")[0]
        elif is_setup(line):
            seen.append(line)
        elif current and line.startswith(COMMAND_LINE) and current not in before:
            before[current] = tuple(seen)
    return before


def logged_in(setup: tuple[str, ...]) -> str | None:
    """Who the last `mpr login` of `setup` logged in as."""
    users = [match.group(1) for line in setup if (match := LOGIN.match(line))]
    return users[-1] if users else None


def option(line: str, name: str) -> str:
    words = shlex.split(line)
    return words[words.index(name) + 1]


def shell_env(worker: WorkerProcess, variables: dict[str, str]) -> dict[str, str]:
    """An operator's environment on the stack: the cookbook's exports (the stack's address and
    codec server), mpr on the PATH with the stack's MPR_DATA_DIR and settings (as stack.env
    gives them), no token of the developer's, and the shell variables set so far."""
    env = {**os.environ, **{name: value for name, value in worker.env.items()
                            if name.startswith(("MPR_", "TEMPORAL_", "DATABASE_URL"))}}
    env = {name: value for name, value in env.items()
           if not name.startswith(("MPR_TOKEN", "MPR_ACTOR"))}
    return {**env, "TEMPORAL_NAMESPACE": "default",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", **variables}


class Shell:
    """The shell state (variables) each group of setup lines leaves, computed once per
    distinct setup: `mpr login` and `mpr token` take a second each."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, ...], dict[str, str]] = {}

    def state(self, setup: tuple[str, ...], worker: WorkerProcess) -> dict[str, str]:
        if setup not in self._states:
            names = sorted({name for line in setup for name in ASSIGNED.findall(line)})
            # What the lines print (mpr login says who you are) goes to stderr; the variables
            # they set, to stdout.
            script = "\n".join(["set -eo pipefail", "{", *setup, "} >&2",
                                *(f'printf "%s\\0" "${name}"' for name in names)])
            done = subprocess.run(["bash", "-c", script], env=shell_env(worker, {}),
                                  capture_output=True, text=True, timeout=120)
            values = done.stdout.split("\0")[:-1]
            assert done.returncode == 0 and len(values) == len(names) and all(values), (
                f"the cookbook's setup failed:\n{script}\n{done.stderr}")
            self._states[setup] = dict(zip(names, values, strict=True))
        return self._states[setup]


def run_temporal_line(line: str, worker: WorkerProcess,
                      variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The line as bash runs it, with the real CLI, the stack's address, codec server (the
    cookbook's exports) and task queue, and the cookbook's shell variables (e.g. RELEASE,
    TOKEN)."""
    assert line.startswith("temporal ")
    command = line.replace("temporal ", shlex.quote(temporal_binary()) + " ", 1)
    command = command.replace("--task-queue mini-program-release",
                              f"--task-queue {worker.env['TEMPORAL_TASK_QUEUE']}")
    return subprocess.run(["bash", "-c", command], env=shell_env(worker, variables),
                          capture_output=True, text=True, timeout=60)
