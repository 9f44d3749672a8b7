"""`make demo`: two versions of the sample Coffee Shop mini program released to GoPay.

The demo acts as the operators would: it sends the same signals `tctl` / `temporal workflow
signal` send (each is printed as the `temporal` command line that does the same) and prints
every stage the release reaches, as recorded in its audit log. Each person acts with a token of
the embedded stack's issuer, as `mpr login --user NAME` gives them, so the worker verifies every
command as it would in production. Version 1.0.0 goes through a
review rejection and a full release (GoPay allows only a full first release); version 1.1.0
fails its first build, is rebuilt, whitelist-tested, rolled out in grayscale with a reset,
and released, which archives 1.0.0. Then, on GoPay's channel, 1.1.0 is rolled back to 1.0.0,
the mini program is taken offline and brought back online; an official QR code and a trial
code (for a release waiting on Alipay China) are written; that release is then withdrawn
(CANCELED).
"""

import asyncio
import json
import shlex
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from mpr.catalog.admin import (
    Membership,
    TrialMember,
    add_member,
    add_trial_member,
    set_link_templates,
)
from mpr.catalog.db import create_pool
from mpr.catalog.releases import get_release
from mpr.catalog.rollout import resolve_version, resolve_version_detail
from mpr.domain.channel.models import ChannelKey
from mpr.domain.core.identity import TOKEN_FIELD
from mpr.domain.core.models import Role
from mpr.domain.qr import CodeKind, ImageFormat, LinkTemplates, QrRequest, trial_marker
from mpr.domain.release.models import StartInput
from mpr.infra.dev_issuer import DevIssuer
from mpr.infra.entrypoint import run_and_exit
from mpr.infra.settings import DATA_DIR, STACK_ENV_FILE, Settings, read_env_file
from mpr.infra.temporal import connect
from starters.qr_codes import make_qr_code
from starters.releases import start_release

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "coffee-shop"
WORKSPACE = "demo-workspace"
PEOPLE = {
    "alice": Role.DEVELOPER,
    "olga": Role.OWNER,
    "adam": Role.ADMIN,
    "petra": Role.PARTNER_REVIEWER,
}
TOKEN_SHOWN = "<token>"
# Inside the printed single-quoted JSON: close the quote, substitute the token, reopen.
TOKEN_IN_SHELL = "'\"$(mpr token)\"'"
SAMPLE_USERS = [f"user-{n:04d}" for n in range(1000)]
# An example: GoPay's own deep-link scheme is GoPay's to give (docs/qr-codes.md).
GOPAY_TEMPLATE = "https://gopay.example/mini-programs/{mini_program_id}?page={page}&query={query}"


class DemoFailed(Exception):
    pass


class People:
    """Each person of the demo signed in as themselves: a token of the embedded stack's
    issuer (`mpr login --user NAME`), or, with MPR_AUTH=off, just the actor field."""

    def __init__(self, settings: Settings) -> None:
        self.signed_in: str | None = None
        """Who the printed command lines last logged in as."""
        issuer = DevIssuer.under()
        if not settings.auth_required:
            self._issuer = None
        elif settings.auth_issuer == issuer.issuer and issuer.exists:
            self._issuer = issuer
        else:
            raise DemoFailed(
                f"the worker verifies tokens of {settings.auth_issuer}, and the demo can sign "
                "in only with the embedded stack's own issuer: run it against `make up` "
                "without MPR_AUTH_ISSUER exported")

    def login(self, user: str) -> None:
        """Print `mpr login` when the next command line is someone else's."""
        if self.signed_in != user:
            print(f"  $ mpr login --user {user}")
            self.signed_in = user

    def sent_by(self, user: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self._issuer is None:
            return {"actor": user, **payload}
        return {TOKEN_FIELD: self._issuer.token(user), **payload}


class Operator:
    """Sends signals to one release and prints each stage the release reaches."""

    def __init__(self, handle: WorkflowHandle[Any, Any], people: People) -> None:
        self.handle = handle
        self.people = people
        self.seen = 0

    async def signal(self, user: str, name: str, payload: dict[str, Any],
                     expect: str) -> dict[str, Any]:
        self.people.login(user)
        shown = {TOKEN_FIELD: TOKEN_SHOWN, **payload}
        line = shlex.join(["temporal", "workflow", "signal", "--workflow-id", self.handle.id,
                           "--name", name, "--input", json.dumps(shown)])
        print(f"  $ {line.replace(TOKEN_SHOWN, TOKEN_IN_SHELL)}")
        sent_after = self.seen
        await self.handle.signal(name, self.people.sent_by(user, payload))
        return await self.follow(expect, after=sent_after)

    async def follow(self, expect: str, after: int = 0, within: float = 120) -> dict[str, Any]:
        """Print what the release records until it is in `expect` and has recorded something
        past audit entry `after` (the signal just sent)."""
        deadline = time.monotonic() + within
        while True:
            log = await self.handle.query("audit_log")
            for entry in log["entries"]:
                if entry["seq"] <= self.seen:
                    continue
                self.seen = entry["seq"]
                if not entry["accepted"]:
                    raise DemoFailed(f"{entry['command']} was refused: {entry['reason']}")
                if entry["stage_after"] != entry["stage_before"] or entry["seq"] == 1:
                    print(f"    -> {entry['stage_after']}{_detail(entry)}")
                else:
                    print(f"    ok: {entry['command']}{_detail(entry)}")
            status: dict[str, Any] = await self.handle.query("status")
            if status["stage"] == expect and self.seen > after:
                return status
            if time.monotonic() > deadline:
                raise DemoFailed(f"{self.handle.id} stayed in {status['stage']}, wanted {expect}")
            await asyncio.sleep(0.2)


def _detail(entry: dict[str, Any]) -> str:
    return f"   ({entry['reason']})" if entry.get("reason") else ""


async def release_two_versions(client: Client, db: asyncpg.Pool, task_queue: str,
                               people: People) -> None:
    program = f"coffee-shop-{uuid.uuid4().hex[:6]}"
    for user, role in PEOPLE.items():
        target_app = "gopay" if role is Role.PARTNER_REVIEWER else ""
        await add_member(db, Membership(workspace_id=WORKSPACE, user_id=user, role=role,
                                        target_app=target_app))
    print(f"workspace {WORKSPACE}: " + ", ".join(f"{u} ({r})" for u, r in PEOPLE.items()))

    first = await _release(client, task_queue, people, program, "1.0.0", SAMPLES / "1.0.0")
    await first.follow("READY_TO_APPLY")
    await first.signal("alice", "apply_release", {"basic_info": {
        "name": "Coffee Shop", "description": "Order coffee ahead"}}, "UNDER_REVIEW")
    await first.signal("petra", "reject_review", {"reviewer": "partner_app",
                                         "reason": "add a privacy policy link"}, "REJECTED")
    await first.signal("alice", "update_config", {"config": {"basic_info": {
        "description": "Order coffee ahead. Privacy: https://coffee.example.com/privacy"}}},
        "REJECTED")
    await first.signal("alice", "apply_release", {}, "UNDER_REVIEW")
    await first.signal("petra", "approve_review", {"reviewer": "partner_app"},
                       "RELEASE_PREPARATION")
    await first.signal("adam", "full_release", {}, "RELEASED")
    print(f"  a user now gets {await resolve_version(db, program, 'gopay', 'user-0001')}")

    withdrawn = await _release(client, task_queue, people, program, "1.0.0", SAMPLES / "1.0.0",
                               target_app="alipaycn")
    await withdrawn.follow("READY_TO_APPLY")

    second = await _release(client, task_queue, people, program, "1.1.0", SAMPLES / "1.1.0-broken")
    await second.follow("BUILD_FAILED")
    await second.signal("alice", "rebuild", {"source": str(SAMPLES / "1.1.0")},
                        "READY_TO_APPLY")
    await second.signal("alice", "apply_release", {"basic_info": {
        "name": "Coffee Shop", "description": "Order coffee ahead, now with order history"}},
        "UNDER_REVIEW")
    await second.signal("petra", "approve_review", {"reviewer": "partner_app",
                                                    "comment": "ok"}, "RELEASE_PREPARATION")
    await second.signal("adam", "start_whitelist_test",
                        {"user_ids": ["user-0001", "user-0002"]}, "WHITELIST_TESTING")
    print(f"  whitelisted user-0001 gets {await resolve_version(db, program, 'gopay', 'user-0001')}"
          f", user-0003 gets {await resolve_version(db, program, 'gopay', 'user-0003')}")
    for percent in (1, 10):
        await second.signal("adam", "set_grayscale", {"percent": percent}, "GRAYSCALE")
        await _show_rollout(db, program)
    await second.signal("adam", "reset_grayscale", {}, "RELEASE_PREPARATION")
    for percent in (5, 50):
        await second.signal("adam", "set_grayscale", {"percent": percent}, "GRAYSCALE")
        await _show_rollout(db, program)
    await second.signal("adam", "set_grayscale", {"percent": 100}, "RELEASED")
    await _show_rollout(db, program)

    previous = await get_release(db, first.handle.id)
    if previous is None or previous.stage != "ARCHIVED":
        raise DemoFailed(f"1.0.0 should be ARCHIVED, the catalog says {previous}")
    print(f"1.1.0 is released; the catalog archived 1.0.0 ({first.handle.id} -> ARCHIVED)")

    await after_go_live(client, db, people, program)
    await qr_codes(db, people, program, withdrawn.handle.id)
    await withdrawn.signal("olga", "cancel_release", {"reason": "launching on GoPay first"},
                           "CANCELED")


async def after_go_live(client: Client, db: asyncpg.Pool, people: People, program: str) -> None:
    """The channel GoPay serves the program on: rollback, the emergency brake, back online."""
    key = ChannelKey(mini_program_id=program, target_app="gopay")
    print(f"\n{key.workflow_id}: what GoPay users are served, after go-live")
    channel = client.get_workflow_handle(key.workflow_id)
    for args, name, payload in [
        (["rollback", "--reason", "checkout fails on 1.1.0"], "rollback",
         {"reason": "checkout fails on 1.1.0"}),
        (["offline", "--reason", "payment provider incident"], "take_offline",
         {"reason": "payment provider incident"}),
        (["online", "--reason", "incident resolved"], "bring_online",
         {"reason": "incident resolved"}),
    ]:
        people.login("adam")
        print(f"  $ {shlex.join(['mpr', args[0], program, '--app', 'gopay', *args[1:]])}")
        status = await _channel_command(channel, name, people.sent_by("adam", payload))
        resolution = await resolve_version_detail(db, program, "gopay", "user-0003")
        print(f"    -> {status['state']}, stable version {status['stable_version']}; "
              f"user-0003 gets {resolution.version or 'nothing'} ({resolution.reason})")


async def _channel_command(channel: WorkflowHandle[Any, Any], name: str,
                           payload: dict[str, Any], within: float = 60) -> dict[str, Any]:
    """The channel is started by the release that went live: wait until it answers."""
    deadline = time.monotonic() + within
    while True:
        try:
            status: dict[str, Any] = await channel.execute_update(name, payload)
            return status
        except RPCError as error:  # the release's notice has not started it yet
            if error.status is not RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
        except WorkflowUpdateFailedError as error:
            raise DemoFailed(f"{name} was refused: {error.cause}") from None
        await asyncio.sleep(0.2)


async def qr_codes(db: asyncpg.Pool, people: People, program: str, trial_release: str) -> None:
    """An official code for GoPay (with a template the demo sets: GoPay's own scheme is
    GoPay's to give) and a trial code for the release waiting on Alipay China (whose template
    is seeded), written under .data/demo/."""
    print("\nQR codes")
    folder = DATA_DIR / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"  $ mpr admin target-app set gopay --official-link-template '{GOPAY_TEMPLATE}'")
    await set_link_templates(db, "gopay", LinkTemplates(official=GOPAY_TEMPLATE))
    official = folder / f"{program}-gopay.png"
    print(f"  $ mpr qr official --program {program} --app gopay --output {official}")
    code = await make_qr_code(db, QrRequest(mini_program_id=program, target_app="gopay"),
                              official)
    print(f"    wrote {official}: {code.link}")

    print(f"  $ mpr admin trial-member add --mini-program {program} --user user-0003")
    await add_trial_member(db, TrialMember(mini_program_id=program, user_id="user-0003"))
    trial = folder / f"{program}-alipaycn-trial.svg"
    print(f"  $ mpr qr trial {trial_release} --output {trial}")
    code = await make_qr_code(db, QrRequest(kind=CodeKind.TRIAL, mini_program_id=program,
                                            target_app="alipaycn", version="1.0.0",
                                            image_format=ImageFormat.SVG), trial)
    print(f"    wrote {trial}: {code.link}")
    marker = trial_marker(code.link)
    for user in ("user-0003", "user-0004"):
        resolution = await resolve_version_detail(db, program, "alipaycn", user, trial=marker)
        print(f"    scanned by {user}: {resolution.version or 'nothing'} ({resolution.reason})")


async def _release(client: Client, task_queue: str, people: People, program: str,
                   version: str, source: Path,
                   target_app: str = "gopay") -> Operator:
    request = StartInput(mini_program_id=program, version=version, target_app=target_app,
                         workspace_id=WORKSPACE, source=str(source))
    sent = people.sent_by("alice", {})
    handle = await start_release(
        client, request.model_copy(update={"requested_by": sent.get("actor")}), task_queue,
        identity_token=sent.get(TOKEN_FIELD))
    print(f"\n{handle.id}: {version} from {source.relative_to(SAMPLES.parent)}")
    return Operator(handle, people)


async def _show_rollout(db: asyncpg.Pool, program: str) -> None:
    versions = [await resolve_version(db, program, "gopay", user) for user in SAMPLE_USERS]
    counts = {v: versions.count(v) for v in sorted(set(versions), key=str)}
    served = ", ".join(f"{version} to {n}" for version, n in counts.items())
    print(f"    resolve_version for {len(SAMPLE_USERS)} users: {served}")


async def main() -> None:
    settings = Settings.from_env()
    client = await connect(settings)
    db = await create_pool(settings.require_database_url())
    try:
        await release_two_versions(client, db, settings.task_queue, People(settings))
    finally:
        await db.close()
    ui = read_env_file(STACK_ENV_FILE).get("TEMPORAL_UI_URL")
    if ui:
        print(f"\nThe releases are in the Temporal Web UI: {ui}  (`make down` stops the stack)")


def demo() -> int:
    try:
        asyncio.run(main())
    except (DemoFailed, ConnectionError, RuntimeError) as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_and_exit(demo)
