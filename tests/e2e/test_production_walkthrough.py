"""docs/production.md's "From `docker compose up` to a first release", its `mpr` and `tctl`
steps, run against the test stack: the `mpr` lines as `mpr` (in-process), each tctl line as its
`temporal` twin (tctl is not on PyPI), the sample's path and program id made this test's own,
and the users' tokens, which the walkthrough takes from the stack's Dex, from the tests' issuer
instead (the worker verifies them all the same). Docker itself (the stack, Dex) is not run
here; tests/infra/test_deployment.py and tests/e2e/test_worker_check.py hold those steps."""

import json
import re
import shlex
import uuid
from typing import Any

from temporalio.client import Client

from tests.cookbook import PRODUCTION, run_temporal_line
from tests.e2e.test_release_end_to_end import wait_for_stage
from tests.mpr_runner import Mpr
from tests.stack import SAMPLES, WorkerProcess, token

SECTION = PRODUCTION.read_text().split("## From `docker compose up` to a first release", 1)[1]
(WALKTHROUGH,) = re.findall(r"```sh\n(.*?)```", SECTION.split("\n## ", 1)[0], re.DOTALL)
LINES = [line.strip() for line in WALKTHROUGH.replace("\\\n", " ").splitlines()
         if line.strip() and not line.strip().startswith("#")]
# The shell variables holding each user's token (`-e ALICE_TOKEN="$(dex_token alice@...)"`).
TOKEN_OF = dict(re.findall(r'-e (\w+)="\$\(dex_token ([^@\s"]+)@', " ".join(LINES)))
IN_WORKER = "docker compose exec worker "
# The stage each tctl signal leads to (GoPay: partner review, a full first release).
LEADS_TO = {"apply_release": "UNDER_REVIEW", "approve_review": "RELEASE_PREPARATION",
            "full_release": "RELEASED"}
TCTL_TO_TEMPORAL = {"--taskqueue": "--task-queue", "--workflow_type": "--type",
                    "--workflow_id": "--workflow-id", "--query_type": "--name"}


def as_temporal(line: str) -> str:
    """A tctl line as the `temporal` CLI spells it: the same words, the same payloads (its
    variables, $RELEASE and the tokens, left to the shell)."""
    assert line.startswith("tctl ")
    command = "temporal " + line.split("#", 1)[0].removeprefix("tctl ")
    return re.sub(r"(?<=\s)--\w+(?=\s)",
                  lambda flag: TCTL_TO_TEMPORAL.get(flag.group(0), flag.group(0)), command)


def sent(line: str) -> tuple[dict[str, Any], str | None]:
    """The payload of a tctl start or signal line, and whose token it carries."""
    words = shlex.split(line)
    payload = json.loads(words[words.index("--input") + 1])
    variable = re.fullmatch(r"\$(\w+)", str(payload.get("identity_token")))
    return payload, TOKEN_OF.get(variable.group(1)) if variable else None


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
    # Dex's tokens for the walkthrough's users, from the tests' issuer.
    variables = {"RELEASE": localise(release.group(1)),
                 **{variable: token(user) for variable, user in TOKEN_OF.items()}}
    handle = client.get_workflow_handle(variables["RELEASE"])
    ran = 0
    for line in map(localise, LINES):
        if line.startswith(IN_WORKER + "mpr "):
            run = await mpr(*shlex.split(line.removeprefix(IN_WORKER + "mpr ")))
            assert run.code == 0, f"{line}\n{run.err}"
            if " resolve " in line:
                assert "1.0.0" in run.out, run.out
            ran += 1
        elif line.startswith("tctl "):
            words = shlex.split(line.split("#", 1)[0])
            command = words[2]
            if command == "query" and expected_stage(line):
                await wait_for_stage(handle, str(expected_stage(line)))
            result = run_temporal_line(as_temporal(line), worker, variables)
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
    status = (await handle.describe()).status
    assert status is not None and status.name == "COMPLETED"
    audit = await handle.query("audit_log")
    assert [(entry["command"], entry["actor"]) for entry in audit["entries"]
            if entry["actor"]] == [("start_release", "alice"), ("apply_release", "alice"),
                                   ("approve_review", "petra"), ("full_release", "adam")]


def test_every_start_and_signal_carries_its_senders_token() -> None:
    assert set(TOKEN_OF.values()) == {"alice", "adam", "petra"}, "a token for each member"
    start = next(line for line in LINES if line.startswith("tctl workflow start"))
    payload, user = sent(start)
    assert user == "alice" and payload.get("requested_by", user) == user, start
    signals = [line for line in LINES if line.startswith("tctl workflow signal")]
    assert [shlex.split(line)[shlex.split(line).index("--name") + 1] for line in signals] == \
        list(LEADS_TO)
    senders = {"apply_release": "alice", "approve_review": "petra", "full_release": "adam"}
    for line, name in zip(signals, LEADS_TO, strict=True):
        payload, user = sent(line)
        assert user == senders[name], line
        assert payload.get("actor", user) == user, f"the actor field names another: {line}"
