"""`mpr` release commands run in-process against the real stack, as an operator types them."""

import asyncio
import io
import json
import shutil
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from mpr.cli.releases import WatchDisplay
from mpr.domain.release.stages import Stage
from mpr.infra.servers import free_port
from starters.releases import ReleaseClient, ReleaseRef, StageChange
from tests.cli.conftest import SAMPLES, new_program, start_input
from tests.mpr_runner import Mpr
from tests.stack import WorkerProcess

REPO = Path(__file__).resolve().parents[2]
READY = Stage.READY_TO_APPLY
WAIT = 60.0


async def ready_release(releases: ReleaseClient, target_app: str = "gopay",
                        source: Path | None = None) -> str:
    ref = await releases.start(start_input(new_program(), target_app=target_app, source=source))
    await releases.wait_for_stage(ref, READY, WAIT)
    return ref.release_id


async def test_a_second_gopay_release_is_driven_through_mpr(
    mpr: Mpr, releases: ReleaseClient, client: Client, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    program = new_program()
    # GoPay allows only a full first release; the second one has the whole rollout.
    first = await releases.start(start_input(program))
    await releases.wait_for_stage(first, READY, WAIT)
    for name, payload in [("apply_release", {"actor": "dev"}),
                          ("approve_review", {"actor": "gopay-rev", "reviewer": "partner_app"}),
                          ("full_release", {"actor": "admin"})]:
        await releases.command(first, name, payload)

    config = tmp_path / "config.json"
    config.write_text(json.dumps(start_input(program).config.model_dump(mode="json")))
    start = ["start", "--program", program, "--version", "1.1.0", "--app", "gopay",
             "--workspace", "ws-e2e", "--source", str(SAMPLES / "1.1.0"),
             "--config-file", str(config), "--actor", "dev"]
    started = await mpr(*start, "--wait", "ready_to_apply")
    release = f"release:{program}:1.1.0:gopay:production"
    assert (started.code, started.out) == (0, f"{release}  READY_TO_APPLY\n")
    assert (await mpr(*start)).out == f"{release}  READY_TO_APPLY\n", "start is idempotent"

    users = tmp_path / "testers.txt"
    users.write_text("# QA team\ntester-2\n\ntester-3\ntester-2\n")
    by_parts = ["--program", program, "--version", "1.1.0", "--app", "gopay"]
    steps = [
        (["apply", release, "--description", "now with order history", "--actor", "dev"],
         "apply_release", "UNDER_REVIEW"),
        (["approve", *by_parts, "--as", "partner_app", "--comment", "ok", "--actor", "gopay-rev"],
         "approve_review", "RELEASE_PREPARATION"),
        (["whitelist", release, "--user", "tester-1", "--users-file", str(users),
          "--actor", "admin"], "start_whitelist_test", "WHITELIST_TESTING"),
    ]
    for args, command, stage in steps:
        sent = await mpr(*args)
        assert (sent.code, sent.out) == (0, f"{command} accepted: {release}  {stage}\n"), sent

    shown = await mpr("status", release)
    assert "whitelist" in shown.out and "3 users" in shown.out
    assert "partner_app: approved by gopay-rev at " in shown.out and ": ok\n" in shown.out

    monkeypatch.setenv("MPR_ACTOR", "admin")  # who is asking, when --actor is not given
    for args, percent in ((["grayscale", "1", release], 1), (["grayscale", "10", "--id", release],
                                                             10)):
        sent = await mpr(*args)
        assert sent.out == f"set_grayscale accepted: {release}  GRAYSCALE {percent}%\n", sent
    shown = await mpr("status", *by_parts)
    assert "GRAYSCALE 10%" in shown.out and "ladder 1 2 5 [10] 20 50 100" in shown.out
    done = await mpr("full", release, "--json")
    assert done.code == 0 and done.json()["stage"] == "RELEASED"

    as_json = await mpr("status", release, "--json")
    assert as_json.json() == await client.get_workflow_handle(release).query("status")
    assert (await mpr(*start)).error(3).endswith(f"release {release} has finished in stage "
                                                 "RELEASED\n")

    async def listed() -> list[str]:
        run = await mpr("list", "--stage", "RELEASED", "--program", program, "--app", "gopay",
                        "--json")
        return sorted(item["release_id"] for item in run.json())

    deadline = time.monotonic() + 10
    while (found := await listed()) != sorted([first.release_id, release]):
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.2)
    table = await mpr("list", "--program", program, "--env", "production")
    assert table.out.splitlines()[0].split() == ["RELEASE", "STAGE", "PERCENT", "STATUS",
                                                 "STARTED", "CLOSED"]
    assert f"{release}  RELEASED" in table.out and "Completed" in table.out


async def test_refusals_exit_3_with_the_release_s_reason(
    mpr: Mpr, releases: ReleaseClient
) -> None:
    release = await ready_release(releases)
    wrong_stage = await mpr("grayscale", "5", release, "--actor", "admin")
    assert ("set_grayscale refused in READY_TO_APPLY: set_grayscale is not allowed in stage "
            "READY_TO_APPLY") in wrong_stage.error(3)
    unauthorised = await mpr("cancel", release, "--actor", "gopay-rev")
    assert "gopay-rev is not authorised to cancel_release" in unauthorised.error(3)
    last = (await releases.status(release)).last_rejection
    assert last is not None and (last.command, last.actor) == ("cancel_release", "gopay-rev")

    # Invalid input never reaches the release.
    assert "percent" in (await mpr("grayscale", "0", release, "--actor", "admin")).error(2)
    assert "not-a-domain" in (await mpr("apply", release, "--server-domain", "not-a-domain",
                                        "--actor", "dev")).error(2)

    canceled = await mpr("cancel", release, "--reason", "not this week", "--actor", "owner")
    assert canceled.out == f"cancel_release accepted: {release}  CANCELED\n"
    shown = await mpr("status", release)
    assert "not this week" in shown.out
    await releases.wait_for_stage(release, Stage.CANCELED, WAIT)


async def test_an_unknown_release_exits_4_naming_it(mpr: Mpr) -> None:
    program = new_program()
    missing = f"release:{program}:1.0.0:gopay:production"
    for args in (["status", missing], ["apply", missing, "--actor", "dev"], ["watch", missing]):
        assert missing in (await mpr(*args)).error(4)
    by_parts = await mpr("status", "--program", program, "--version", "1.0.0", "--app", "gopay",
                         "--env", "sandbox")
    assert f"release:{program}:1.0.0:gopay:sandbox" in by_parts.error(4)


async def test_a_release_must_be_named_properly(mpr: Mpr) -> None:
    assert "not a release id: 'coffee'" in (await mpr("status", "coffee")).error(2)
    assert "which release?" in (await mpr("status")).error(2)
    assert "missing --version, --app" in (await mpr("status", "--program", "coffee")).error(2)
    both = await mpr("status", "release:a:1.0.0:gopay:production", "--program", "a")
    assert "not both" in both.error(2)
    assert "nothing to change" in (await mpr("config", "release:a:1.0.0:gopay:production",
                                             "--actor", "dev")).error(2)


async def test_an_unreachable_server_exits_1_naming_its_address(
    mpr: Mpr, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    for args in (["status", "release:a:1.0.0:gopay:production"], ["list"],
                 ["full", "release:a:1.0.0:gopay:production", "--actor", "admin"]):
        assert f"cannot reach Temporal at {address}" in (await mpr(*args)).error(1)


async def test_unusable_connection_settings_exit_1_naming_the_file(
    mpr: Mpr, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "client.pem"
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(missing))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(tmp_path / "client.key"))
    error = (await mpr("status", "release:a:1.0.0:gopay:production")).error(1)
    assert f"cannot read {missing}: No such file or directory" in error


async def test_status_lists_failing_cells_and_config_commands_change_the_release(
    mpr: Mpr, releases: ReleaseClient, tmp_path: Path
) -> None:
    source = tmp_path / "teleport"
    shutil.copytree(SAMPLES / "1.0.0", source)
    manifest = json.loads((source / "app.json").read_text())
    manifest["jsapis"].append("my.teleport")
    (source / "app.json").write_text(json.dumps(manifest))
    release = await ready_release(releases, source=source)

    shown = await mpr("status", release)
    assert "1 cells: 0 passed, 0 warned, 1 failed" in shown.out
    assert "FAIL ios/wifi/high: " in shown.out and "my.teleport" in shown.out
    assert "full release only" in shown.out

    changed = await mpr("config", release, "--name", "Teleport Coffee", "--server-domain",
                        "api.example.com", "--server-domain", "cdn.example.com", "--os",
                        "android", "--network", "wifi", "--tier", "high", "--actor", "dev")
    assert changed.out == f"update_config accepted: {release}  READY_TO_APPLY\n", changed
    patched = await mpr("config", release, "--json-config",
                        '{"h5_domain_whitelist": ["h5.example.com"]}', "--actor", "dev")
    assert patched.code == 0, patched
    config = (await releases.status(release)).config
    assert config.basic_info is not None and config.basic_info.name == "Teleport Coffee"
    assert config.server_domain_whitelist == ["api.example.com", "cdn.example.com"]
    assert config.h5_domain_whitelist == ["h5.example.com"]
    assert config.compatibility is not None and config.compatibility.operating_systems == [
        "android"]
    both = await mpr("config", release, "--name", "x", "--json-config", "{}", "--actor", "dev")
    assert "not both" in both.error(2)

    rebuilt = await mpr("rebuild", release, "--source", str(SAMPLES / "1.0.0"), "--actor", "dev")
    assert rebuilt.out == f"rebuild accepted: {release}  BUILDING\n"
    await releases.wait_for_stage(release, READY, WAIT)
    retested = await mpr("retest", release, "--actor", "dev")
    assert retested.out.startswith(f"retest_compatibility accepted: {release}  "), retested
    await releases.wait_for_stage(release, READY, WAIT)
    shown = await mpr("status", release)
    assert "1 cells: 1 passed, 0 warned, 0 failed" in shown.out
    await mpr("cancel", release, "--actor", "owner")


async def test_review_rejection_reset_and_canceled_grayscale(
    mpr: Mpr, releases: ReleaseClient
) -> None:
    release = await ready_release(releases, target_app="alipaycn")
    steps = [
        (["apply", release, "--actor", "dev"], "UNDER_REVIEW"),
        (["reject", release, "--as", "platform", "--reason", "add a privacy policy link",
          "--actor", "platform-rev"], "REJECTED"),
    ]
    for args, stage in steps:
        assert (await mpr(*args)).out.endswith(f"  {stage}\n")
    shown = await mpr("status", release)
    assert "platform: rejected by platform-rev at " in shown.out
    assert "add a privacy policy link" in shown.out

    steps = [
        (["apply", release, "--actor", "dev"], "UNDER_REVIEW"),
        (["approve", release, "--as", "platform", "--actor", "platform-rev"], "UNDER_REVIEW"),
        (["approve", release, "--as", "partner_app", "--actor", "alipay-rev"],
         "RELEASE_PREPARATION"),
        (["grayscale", "2", release, "--actor", "admin"], "GRAYSCALE 2%"),
        (["reset", release, "--actor", "admin"], "RELEASE_PREPARATION"),
        (["grayscale", "5", release, "--actor", "admin"], "GRAYSCALE 5%"),
        (["cancel-grayscale", release, "--reason", "crash on launch", "--actor", "admin"],
         "CANCELED"),
    ]
    for args, stage in steps:
        sent = await mpr(*args)
        assert sent.out.endswith(f"  {stage}\n"), sent
    assert "crash on launch" in (await mpr("status", release)).out


async def test_watch_prints_every_stage_until_the_release_ends(
    mpr: Mpr, releases: ReleaseClient
) -> None:
    ref = await releases.start(start_input(new_program(), target_app="alipaycn"))
    watching = asyncio.create_task(mpr("watch", ref.release_id))
    await releases.wait_for_stage(ref, READY, WAIT)
    commands: list[tuple[str, dict[str, Any]]] = [
        ("apply_release", {"actor": "dev"}),
        ("approve_review", {"actor": "platform-rev", "reviewer": "platform"}),
        ("approve_review", {"actor": "alipay-rev", "reviewer": "partner_app"}),
        ("set_grayscale", {"actor": "admin", "percent": 5}),
        ("set_grayscale", {"actor": "admin", "percent": 20}),
        ("full_release", {"actor": "admin"}),
    ]
    for name, payload in commands:
        await releases.command(ref, name, payload)
    watched = await asyncio.wait_for(watching, WAIT)

    assert (watched.code, watched.err) == (0, "")
    lines = [line for line in watched.out.splitlines() if not line.startswith(" ")]
    # "12:00:01  COMPATIBILITY_TESTING  (BUILDING took 0.4 s)" -> "COMPATIBILITY_TESTING"
    stages = [line.split("  (")[0].split(maxsplit=1)[1] for line in lines]
    expected = ["BUILDING", "COMPATIBILITY_TESTING", "READY_TO_APPLY", "UNDER_REVIEW",
                "RELEASE_PREPARATION", "GRAYSCALE 5%", "GRAYSCALE 20%", "RELEASED"]
    assert stages == expected[expected.index(stages[0]):], watched.out
    if stages[0] != "READY_TO_APPLY":
        assert "took" in watched.out, "how long building or testing took"


def test_watch_shows_progress_while_the_release_builds() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    began = datetime.now(UTC) - timedelta(seconds=12)
    building = StageChange(stage=Stage.BUILDING, percent=0, at=began)
    built = StageChange(stage=READY, percent=0, at=began + timedelta(seconds=13))
    outputs = []
    for out in (Terminal(), io.StringIO()):
        display = WatchDisplay(out)
        display.show(building)
        display.tick()
        display.show(built)
        outputs.append(out.getvalue())
    on_terminal, plain = outputs
    assert "\r⠙ BUILDING 12 s\r\x1b[K" in on_terminal, "a spinner, erased before the next line"
    assert "\n          still BUILDING after 12 s\n" in plain and "\r" not in plain
    for output in outputs:
        assert output.endswith("READY_TO_APPLY  (BUILDING took 13.0 s)\n")


async def test_watch_stops_at_a_stage_or_cleanly_on_ctrl_c(
    mpr: Mpr, releases: ReleaseClient, worker: WorkerProcess
) -> None:
    release = await ready_release(releases)
    until = await mpr("watch", release, "--until", "READY_TO_APPLY")
    assert until.code == 0 and until.out.rstrip().endswith("READY_TO_APPLY")

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mpr.cli.main", "watch", release, cwd=REPO, env=worker.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first_line = await asyncio.wait_for(process.stdout.readline(), WAIT)
        assert first_line.decode().rstrip().endswith("READY_TO_APPLY")
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), WAIT)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 130
    assert err.decode() == "", "no traceback, no message: the user pressed Ctrl-C"

    await releases.command(ReleaseRef.parse(release), "cancel_release", {"actor": "owner"})
