"""docs/production.md's "From `docker compose up` to a first release", steps 4 to 6, run
against the test stack: the `mpr` lines as `mpr` (in-process), each tctl line as its `temporal`
twin (tctl is not on PyPI), the sample's path and program id made this test's own. Steps 1 to
3 need Docker; tests/infra/test_deployment.py and tests/e2e/test_worker_check.py hold them."""

import json
import re
import shlex
import uuid

from temporalio.client import Client

from tests.cookbook import PRODUCTION, run_temporal_line
from tests.e2e.test_release_end_to_end import wait_for_stage
from tests.mpr_runner import Mpr
from tests.stack import SAMPLES, WorkerProcess

SECTION = PRODUCTION.read_text().split("## From `docker compose up` to a first release", 1)[1]
(WALKTHROUGH,) = re.findall(r"```sh\n(.*?)```", SECTION.split("\n## ", 1)[0], re.DOTALL)
LINES = [line.strip() for line in WALKTHROUGH.replace("\\\n", " ").splitlines()
         if line.strip() and not line.strip().startswith("#")]
IN_WORKER = "docker compose exec worker "
# The stage each tctl signal leads to (GoPay: partner review, a full first release).
LEADS_TO = {"apply_release": "UNDER_REVIEW", "approve_review": "RELEASE_PREPARATION",
            "full_release": "RELEASED"}
TCTL_TO_TEMPORAL = {"--taskqueue": "--task-queue", "--workflow_type": "--type",
                    "--workflow_id": "--workflow-id", "--query_type": "--name"}


def as_temporal(line: str, release: str) -> str:
    """A tctl line as the `temporal` CLI spells it (same payloads), for `release`."""
    words = shlex.split(line.split("#", 1)[0].replace("$RELEASE", release))
    assert words[0] == "tctl"
    return shlex.join(["temporal", *(TCTL_TO_TEMPORAL.get(word, word) for word in words[1:])])


def expected_stage(line: str) -> str | None:
    """What a query line's comment says the release is in."""
    comment = line.partition("#")[2]
    found = re.search(r"\b([A-Z][A-Z_]+[A-Z])\b", comment)
    return found.group(1) if found else None


def test_the_walkthrough_is_what_operators_expect() -> None:
    kinds = [line.split()[0] if not line.startswith(IN_WORKER) else "worker" for line in LINES]
    assert kinds[:2] == ["export", "docker"], "a key first, then the stack"
    assert LINES[2] == "docker compose ps"
    assert LINES[3] == "docker compose exec worker python -m workers.main --check"
    assert "tctl" in kinds and LINES[-1].startswith(IN_WORKER + "mpr resolve")
    start = next(line for line in LINES if line.startswith("tctl workflow start"))
    request = json.loads(shlex.split(start)[shlex.split(start).index("--input") + 1])
    release = re.search(r"RELEASE='([^']+)'", WALKTHROUGH)
    assert release and release.group(1) == (
        f"release:{request['mini_program_id']}:{request['version']}:{request['target_app']}:"
        f"{request['environment']}")
    assert request["source"].startswith("/app/samples/"), "the sample shipped in the image"
    assert (SAMPLES / request["source"].removeprefix("/app/samples/")).is_dir()


async def test_the_walkthrough_releases_the_sample(
    worker: WorkerProcess, client: Client, mpr: Mpr,
) -> None:
    program = f"walkthrough-{uuid.uuid4().hex[:8]}"

    def localise(line: str) -> str:
        source = "\0samples\0"  # keeps the sample's path out of the program id replacement
        return (line.replace("/app/samples/coffee-shop", source)
                .replace("coffee-shop", program).replace(source, str(SAMPLES / "coffee-shop")))

    release = re.search(r"RELEASE='([^']+)'", WALKTHROUGH)
    assert release
    variables = {"RELEASE": localise(release.group(1))}
    handle = client.get_workflow_handle(variables["RELEASE"])
    ran = 0
    for line in map(localise, LINES):
        if line.startswith(IN_WORKER + "mpr "):
            result = await mpr(*shlex.split(line.removeprefix(IN_WORKER + "mpr ")))
            assert result.code == 0, f"{line}\n{result.err}"
            if " resolve " in line:
                assert "1.0.0" in result.out, result.out
            ran += 1
        elif line.startswith("tctl "):
            words = shlex.split(line.split("#", 1)[0])
            command = words[2]
            if command == "query" and expected_stage(line):
                await wait_for_stage(handle, str(expected_stage(line)))
            result = run_temporal_line(as_temporal(line, variables["RELEASE"]), worker,
                                       variables)
            assert result.returncode == 0, f"{line}\n{result.stderr}"
            if command == "start":
                await wait_for_stage(handle, "READY_TO_APPLY")
            elif command == "signal":
                await wait_for_stage(handle, LEADS_TO[words[words.index("--name") + 1]])
            elif command == "query" and expected_stage(line):
                assert str(expected_stage(line)) in result.stdout, result.stdout
            elif command == "list":
                assert variables["RELEASE"] in result.stdout
            ran += 1
    assert ran == 11, "every member, tctl and resolve line ran"
    assert (await handle.describe()).status.name == "COMPLETED"


def test_every_signal_names_its_actor() -> None:
    signals = [line for line in LINES if line.startswith("tctl workflow signal")]
    assert [shlex.split(line)[shlex.split(line).index("--name") + 1] for line in signals] == \
        list(LEADS_TO)
    for line in signals:
        words = shlex.split(line)
        assert json.loads(words[words.index("--input") + 1])["actor"] in {"alice", "adam",
                                                                          "petra"}, line
