"""`make demo`: two versions of the sample Coffee Shop mini program released to GoPay.

The demo acts as the operators would: it sends the same signals `tctl` / `temporal workflow
signal` send (each is printed as the `temporal` command line that does the same) and prints
every stage the release reaches, as recorded in its audit log. Version 1.0.0 goes through a
review rejection and a full release (GoPay allows only a full first release); version 1.1.0
fails its first build, is rebuilt, whitelist-tested, rolled out in grayscale with a reset,
and released, which archives 1.0.0. A third release shows a withdrawal (CANCELED).
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
from temporalio.client import Client, WorkflowHandle

from mpr.catalog.admin import Membership, add_member
from mpr.catalog.db import create_pool
from mpr.catalog.releases import get_release
from mpr.catalog.rollout import resolve_version
from mpr.domain.core.models import Role
from mpr.domain.release.models import StartInput
from mpr.infra.entrypoint import run_and_exit
from mpr.infra.settings import STACK_ENV_FILE, Settings, read_env_file
from mpr.infra.temporal import connect
from starters.releases import start_release

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "coffee-shop"
WORKSPACE = "demo-workspace"
PEOPLE = {
    "alice": Role.DEVELOPER,
    "olga": Role.OWNER,
    "adam": Role.ADMIN,
    "petra": Role.PARTNER_REVIEWER,
}
SAMPLE_USERS = [f"user-{n:04d}" for n in range(1000)]


class DemoFailed(Exception):
    pass


class Operator:
    """Sends signals to one release and prints each stage the release reaches."""

    def __init__(self, handle: WorkflowHandle[Any, Any]) -> None:
        self.handle = handle
        self.seen = 0

    async def signal(self, name: str, payload: dict[str, Any], expect: str) -> dict[str, Any]:
        line = shlex.join(["temporal", "workflow", "signal", "--workflow-id", self.handle.id,
                           "--name", name, "--input", json.dumps(payload)])
        print(f"  $ {line}")
        sent_after = self.seen
        await self.handle.signal(name, payload)
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


async def release_two_versions(client: Client, db: asyncpg.Pool, task_queue: str) -> None:
    program = f"coffee-shop-{uuid.uuid4().hex[:6]}"
    for user, role in PEOPLE.items():
        target_app = "gopay" if role is Role.PARTNER_REVIEWER else ""
        await add_member(db, Membership(workspace_id=WORKSPACE, user_id=user, role=role,
                                        target_app=target_app))
    print(f"workspace {WORKSPACE}: " + ", ".join(f"{u} ({r})" for u, r in PEOPLE.items()))

    first = await _release(client, task_queue, program, "1.0.0", SAMPLES / "1.0.0")
    await first.follow("READY_TO_APPLY")
    await first.signal("apply_release", {"actor": "alice", "basic_info": {
        "name": "Coffee Shop", "description": "Order coffee ahead"}}, "UNDER_REVIEW")
    await first.signal("reject_review", {"actor": "petra", "reviewer": "partner_app",
                                         "reason": "add a privacy policy link"}, "REJECTED")
    await first.signal("update_config", {"actor": "alice", "config": {"basic_info": {
        "description": "Order coffee ahead. Privacy: https://coffee.example.com/privacy"}}},
        "REJECTED")
    await first.signal("apply_release", {"actor": "alice"}, "UNDER_REVIEW")
    await first.signal("approve_review", {"actor": "petra", "reviewer": "partner_app"},
                       "RELEASE_PREPARATION")
    await first.signal("full_release", {"actor": "adam"}, "RELEASED")
    print(f"  a user now gets {await resolve_version(db, program, 'gopay', 'user-0001')}")

    withdrawn = await _release(client, task_queue, program, "1.0.0", SAMPLES / "1.0.0",
                               target_app="alipaycn")
    await withdrawn.follow("READY_TO_APPLY")
    await withdrawn.signal("cancel_release", {"actor": "olga",
                                              "reason": "launching on GoPay first"}, "CANCELED")

    second = await _release(client, task_queue, program, "1.1.0", SAMPLES / "1.1.0-broken")
    await second.follow("BUILD_FAILED")
    await second.signal("rebuild", {"actor": "alice", "source": str(SAMPLES / "1.1.0")},
                        "READY_TO_APPLY")
    await second.signal("apply_release", {"actor": "alice", "basic_info": {
        "name": "Coffee Shop", "description": "Order coffee ahead, now with order history"}},
        "UNDER_REVIEW")
    await second.signal("approve_review", {"actor": "petra", "reviewer": "partner_app",
                                           "comment": "ok"}, "RELEASE_PREPARATION")
    await second.signal("start_whitelist_test", {"actor": "adam",
                                                 "user_ids": ["user-0001", "user-0002"]},
                        "WHITELIST_TESTING")
    print(f"  whitelisted user-0001 gets {await resolve_version(db, program, 'gopay', 'user-0001')}"
          f", user-0003 gets {await resolve_version(db, program, 'gopay', 'user-0003')}")
    for percent in (1, 10):
        await second.signal("set_grayscale", {"actor": "adam", "percent": percent}, "GRAYSCALE")
        await _show_rollout(db, program)
    await second.signal("reset_grayscale", {"actor": "adam"}, "RELEASE_PREPARATION")
    for percent in (5, 50):
        await second.signal("set_grayscale", {"actor": "adam", "percent": percent}, "GRAYSCALE")
        await _show_rollout(db, program)
    await second.signal("set_grayscale", {"actor": "adam", "percent": 100}, "RELEASED")
    await _show_rollout(db, program)

    previous = await get_release(db, first.handle.id)
    if previous is None or previous.stage != "ARCHIVED":
        raise DemoFailed(f"1.0.0 should be ARCHIVED, the catalog says {previous}")
    print(f"1.1.0 is released; the catalog archived 1.0.0 ({first.handle.id} -> ARCHIVED)")


async def _release(client: Client, task_queue: str, program: str, version: str, source: Path,
                   target_app: str = "gopay") -> Operator:
    request = StartInput(mini_program_id=program, version=version, target_app=target_app,
                         workspace_id=WORKSPACE, requested_by="alice", source=str(source))
    handle = await start_release(client, request, task_queue)
    print(f"\n{handle.id}: {version} from {source.relative_to(SAMPLES.parent)}")
    return Operator(handle)


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
        await release_two_versions(client, db, settings.task_queue)
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
