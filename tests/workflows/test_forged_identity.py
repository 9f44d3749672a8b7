"""Forged identities on every command path: signal and update, plain JSON (as `tctl` sends it)
and encrypted, start inputs, both workflows. Each forgery is refused with a reason naming what
was wrong and recorded (actor empty, the claimed actor kept apart), changes nothing, leaves no
token anywhere, and the workflow answers the next, honest, command.

Tokens are issued at the test server's own time, which other tests may have skipped ahead.
"""

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.identity import Authenticator
from mpr.domain.core.identity import ACTOR_MISMATCH, TOKEN_FIELD
from mpr.domain.core.models import Role
from mpr.domain.mini_service.models import mini_service_id
from mpr.domain.release.release_id import release_id
from mpr.infra.codec import new_key_entry
from mpr.infra.identity import IdentityVerifier, JwksFile
from mpr.infra.settings import Settings
from mpr.infra.temporal import data_converter
from tests.identity import ISSUER
from tests.identity import verifying as verifying_identities
from tests.stack import PAYLOAD_KEYS, WORKER_CONVERTER
from tests.workflows.driving import start_input, until_answering, wait_for_stage
from tests.workflows.mini_service_fakes import FakeServiceCatalog
from tests.workflows.release_fakes import MEMBERS, FakeCatalog
from workflows.mini_service import MiniServiceRelease
from workflows.release import MiniProgramRelease

HOUR = 3600


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@dataclass(frozen=True)
class Forgery:
    token: Callable[[str, float], str | None]
    """The token sent for a user at a time (None: no token at all)."""
    reason: str


def tampered(user: str, now: float) -> str:
    header, _claims, signature = ISSUER.token(user, now=now).split(".")
    claims = {"iss": ISSUER.issuer, "aud": ISSUER.audience, "preferred_username": "admin",
              "exp": int(now) + HOUR}
    return ".".join([header, b64(claims), signature])


def same_key_id_other_key(user: str, now: float) -> str:
    kid = json.loads(ISSUER.jwks_file.read_text())["keys"][0]["kid"]
    impostor = ECKey.generate_key("P-256", parameters={"kid": kid})
    claims = {"iss": ISSUER.issuer, "aud": ISSUER.audience, "preferred_username": user,
              "exp": int(now) + HOUR}
    return jwt.encode({"alg": "ES256", "kid": kid}, claims, impostor)


FORGERIES = {
    "no token": Forgery(lambda user, now: None, "no identity_token"),
    "alg none": Forgery(
        lambda user, now: f"{b64({'alg': 'none'})}.{b64({'preferred_username': user})}.",
        "algorithm is not accepted"),
    "tampered claims": Forgery(tampered, "signature does not verify"),
    "other key, same key id": Forgery(same_key_id_other_key, "signature does not verify"),
    "expired": Forgery(lambda user, now: ISSUER.token(user, now=now - 2 * HOUR,
                                                      lifetime_seconds=HOUR),
                       "had expired"),
    "not yet valid": Forgery(lambda user, now: ISSUER.token(user, now=now, nbf=int(now) + HOUR),
                             "not yet valid"),
    "wrong issuer": Forgery(lambda user, now: ISSUER.token(user, now=now,
                                                           iss="https://evil.example"),
                            "another issuer"),
    "wrong audience": Forgery(lambda user, now: ISSUER.token(user, now=now, aud="not-mpr"),
                              "another audience"),
    "not a token": Forgery(lambda user, now: "hello", "malformed"),
}


@pytest.fixture
def catalog() -> FakeCatalog:
    return FakeCatalog(roles={user: set(roles) for user, roles in MEMBERS.items()},
                       identity=verifying_identities())


@pytest.fixture
def service_catalog() -> FakeServiceCatalog:
    return FakeServiceCatalog(roles={"olly": {Role.SERVICE_OPERATOR},
                                     "ada": {Role.SERVICE_ADMIN}},
                              identity=verifying_identities())


@dataclass
class Setup:
    client: Client
    """Encrypts its payloads, as `mpr` and the client library do."""
    plain: Client
    """Sends plain JSON, as `tctl` does without a codec endpoint."""
    queue: str
    now: float

    def token(self, user: str) -> str:
        return ISSUER.token(user, now=self.now)


@pytest.fixture
async def setup(env: WorkflowEnvironment, catalog: FakeCatalog,
                service_catalog: FakeServiceCatalog) -> AsyncIterator[Setup]:
    queue = f"forged-{uuid.uuid4()}"
    worker_client = Client(env.client.service_client, namespace=env.client.namespace,
                           data_converter=WORKER_CONVERTER)
    plain = Client(env.client.service_client, namespace=env.client.namespace,
                   data_converter=data_converter(Settings.from_env(
                       {"MPR_PAYLOAD_ENCRYPTION": "off"})))
    now = (await env.get_current_time()).timestamp()
    async with Worker(worker_client, task_queue=queue,
                      workflows=[MiniProgramRelease, MiniServiceRelease],
                      activities=[*catalog.activities, *service_catalog.activities]):
        yield Setup(env.client, plain, queue, now)


async def start_release(setup: Setup, **overrides: Any) -> WorkflowHandle[Any, Any]:
    request = start_input(**overrides)
    request.pop("requested_by")
    workflow_id = release_id(request["mini_program_id"], request["version"],
                             request["target_app"], "production")
    handle = await setup.client.start_workflow(
        "MiniProgramRelease", {**request, TOKEN_FIELD: setup.token("dev")}, id=workflow_id,
        task_queue=setup.queue)
    await until_answering(handle)
    await wait_for_stage(handle, "READY_TO_APPLY")
    return handle


async def start_service(setup: Setup) -> WorkflowHandle[Any, Any]:
    app = f"app{uuid.uuid4().hex[:6]}"
    handle = await setup.client.start_workflow(
        "MiniServiceRelease", {"super_app": app, "version_no": 1,
                               TOKEN_FIELD: setup.token("olly")},
        id=mini_service_id(app, 1), task_queue=setup.queue)
    await until_answering(handle)
    return handle


def payload_of(token: str | None, **fields: Any) -> dict[str, Any]:
    return {**fields, **({TOKEN_FIELD: token} if token is not None else {})}


async def refused_update(handle: WorkflowHandle[Any, Any], name: str,
                         payload: dict[str, Any]) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update(name, payload)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "CommandRejected"
    return cause.message


async def last_refusal(handle: WorkflowHandle[Any, Any], count_before: int) -> dict[str, Any]:
    """The refusal a signal just caused, once the workflow has recorded it."""
    for _ in range(400):
        status = await handle.query("status")
        if status["audit_count"] > count_before:
            rejection: dict[str, Any] = status["last_rejection"]
            return rejection
        await asyncio.sleep(0.05)
    raise AssertionError("the signal was not recorded")


def no_token_in(*things: Any) -> None:
    text = json.dumps(things, default=str)
    assert "eyJ" not in text and f"\"{TOKEN_FIELD}\"" not in text, f"a token was kept: {text}"


# --- the release ------------------------------------------------------------------------


@pytest.mark.parametrize("forgery", list(FORGERIES), ids=list(FORGERIES))
async def test_a_forged_identity_is_refused_on_every_path_of_a_release(
    setup: Setup, catalog: FakeCatalog, forgery: str,
) -> None:
    handle = await start_release(setup)
    before = await handle.query("status")
    forged = FORGERIES[forgery]
    # The admin's name in `actor` is what the forger claims; the token is the forgery.
    sent = payload_of(forged.token("adam" if forgery == "no token" else "dev", setup.now),
                      actor="admin")

    reason = await refused_update(handle, "apply_release", sent)
    assert forged.reason in reason
    for client in (setup.client, setup.plain):
        count = (await handle.query("status"))["audit_count"]
        await client.get_workflow_handle(handle.id).signal("apply_release", sent)
        rejection = await last_refusal(handle, count)
        assert forged.reason in rejection["reason"]
        assert rejection["actor"] is None and rejection["claimed_actor"] == "admin"

    status = await handle.query("status")
    assert status["stage"] == before["stage"] == "READY_TO_APPLY"
    assert status["audit_count"] == before["audit_count"] + 3
    refusals = catalog.events("apply_release")
    assert len(refusals) == 3
    assert all(t.event.actor is None and t.event.claimed_actor == "admin"
               and not t.event.accepted and t.release is None for t in refusals)
    audit = await handle.query("audit_log")
    assert [e["actor"] for e in audit["entries"][-3:]] == [None, None, None]
    no_token_in(status, audit, [t.model_dump(mode="json") for t in catalog.transitions])

    # The workflow answers the next, honest, command.
    answered = await handle.execute_update("apply_release", {TOKEN_FIELD: setup.token("dev")})
    assert answered["stage"] == "UNDER_REVIEW"
    assert catalog.events("apply_release")[-1].event.actor == "dev"


async def test_a_valid_token_without_the_role_is_refused_and_blames_its_subject(
    setup: Setup, catalog: FakeCatalog,
) -> None:
    handle = await start_release(setup)
    reason = await refused_update(handle, "full_release", {TOKEN_FIELD: setup.token("dev")})
    assert reason.startswith("dev is not authorised to full_release")
    assert catalog.events("full_release")[-1].event.actor == "dev"
    stranger = await refused_update(handle, "apply_release",
                                    {TOKEN_FIELD: setup.token("nobody")})
    assert "nobody is not authorised" in stranger and "has no role" in stranger


async def test_an_actor_field_naming_someone_else_is_refused_without_its_values(
    setup: Setup, catalog: FakeCatalog,
) -> None:
    handle = await start_release(setup)
    reason = await refused_update(handle, "apply_release",
                                  {TOKEN_FIELD: setup.token("dev"), "actor": "owner"})
    assert reason == ACTOR_MISMATCH
    event = catalog.events("apply_release")[-1].event
    assert event.actor is None and event.claimed_actor == "owner"
    # Naming oneself is allowed, and so is leaving the field out.
    accepted = await handle.execute_update(
        "apply_release", {TOKEN_FIELD: setup.token("dev"), "actor": "dev"})
    assert accepted["stage"] == "UNDER_REVIEW"


async def test_a_token_is_judged_when_its_command_arrived_not_when_its_turn_came(
    env: WorkflowEnvironment, setup: Setup, catalog: FakeCatalog,
) -> None:
    """A command waiting behind another that waits out a database outage keeps the time it
    arrived: its token, valid then, is not refused for expiring meanwhile."""
    handle = await start_release(setup)
    catalog.identity = Authenticator(IdentityVerifier(
        issuer=ISSUER.issuer, audience=ISSUER.audience, keys=JwksFile(ISSUER.jwks_file),
        subject_claim="preferred_username", leeway_seconds=0))
    catalog.writes_wait_for = asyncio.Event()
    first = asyncio.create_task(handle.execute_update("update_config", {
        TOKEN_FIELD: setup.token("dev"), "config": {"basic_info": {"description": "d"}}}))
    await asyncio.sleep(0.5)
    now = (await env.get_current_time()).timestamp()
    short_lived = ISSUER.token("dev", now=now, lifetime_seconds=3)
    second = asyncio.create_task(handle.execute_update(
        "apply_release", {TOKEN_FIELD: short_lived}))
    await asyncio.sleep(5)  # the outage outlasts the token
    assert (await env.get_current_time()).timestamp() > now + 3
    catalog.writes_wait_for.set()
    await first
    assert (await second)["stage"] == "UNDER_REVIEW"


async def test_a_release_answers_status_while_an_identity_check_waits_out_an_outage(
    setup: Setup, catalog: FakeCatalog,
) -> None:
    """The identity check is a local activity: retried inside its workflow task, it would hold
    back queries until the task heartbeats (8 s); past a second's backoff it waits on a timer
    with the task closed, and `status` answers at once."""
    handle = await start_release(setup)
    catalog.reads_down = True
    applying = asyncio.create_task(handle.execute_update(
        "apply_release", {TOKEN_FIELD: setup.token("dev")}))
    for _ in range(3):  # retried after 1 s, then after 2 s: on a timer
        await catalog.failed_reads.get()
    status = await asyncio.wait_for(handle.query("status"), timeout=3)
    assert status["stage"] == "READY_TO_APPLY" and not applying.done()
    catalog.reads_down = False
    assert (await applying)["stage"] == "UNDER_REVIEW"


async def test_an_undecryptable_command_is_refused_and_recorded(
    env: WorkflowEnvironment, setup: Setup, catalog: FakeCatalog,
) -> None:
    handle = await start_release(setup)
    # Encrypts with a key the worker lacks; reads the worker's answers with the session key.
    keys = f"{new_key_entry('stolen-key')},{PAYLOAD_KEYS}"
    foreign = Client(env.client.service_client, namespace=env.client.namespace,
                     data_converter=data_converter(Settings.from_env(
                         {"MPR_PAYLOAD_KEYS": keys, "MPR_PAYLOAD_ENCRYPTION": "on"})))
    sent = {TOKEN_FIELD: setup.token("dev")}
    count = (await handle.query("status"))["audit_count"]
    await foreign.get_workflow_handle(handle.id).signal("apply_release", sent)
    rejection = await last_refusal(handle, count)
    assert rejection["reason"] == "the payload could not be decrypted (key id 'stolen-key')"
    reason = await refused_update(foreign.get_workflow_handle(handle.id), "apply_release", sent)
    assert reason == "the payload could not be decrypted (key id 'stolen-key')"
    assert [t.event.reason for t in catalog.events("apply_release")] == [rejection["reason"]] * 2
    answered = await handle.execute_update("apply_release", sent)
    assert answered["stage"] == "UNDER_REVIEW"


@pytest.mark.parametrize(("who", "token_of", "expected"), [
    ("no token", lambda setup: None, "no identity_token"),
    ("expired", lambda setup: ISSUER.token("dev", now=setup.now - 2 * HOUR,
                                           lifetime_seconds=HOUR), "had expired"),
    ("no start role", lambda setup: setup.token("partner-rev"),
     "partner-rev is not authorised to start a release of this mini program"),
    ("someone else's name", lambda setup: setup.token("dev"), ACTOR_MISMATCH),
])
async def test_a_release_started_without_a_valid_identity_fails_and_writes_nothing(
    setup: Setup, catalog: FakeCatalog, who: str, token_of: Callable[[Setup], str | None],
    expected: str,
) -> None:
    request = start_input(requested_by="owner" if who == "someone else's name" else "dev")
    token = token_of(setup)
    if who != "someone else's name":
        request.pop("requested_by")
    workflow_id = release_id(request["mini_program_id"], "1.0.0", "alipaycn", "production")
    handle = await setup.client.start_workflow(
        "MiniProgramRelease", payload_of(token, **request), id=workflow_id,
        task_queue=setup.queue)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidStartInput"
    assert cause.message.startswith("start refused: ") and expected in cause.message
    assert catalog.transitions == [] and catalog.build_started == 0
    no_token_in(cause.message)


async def test_an_undecryptable_start_input_fails_the_start_naming_the_key(
    env: WorkflowEnvironment, setup: Setup, catalog: FakeCatalog,
) -> None:
    foreign = Client(env.client.service_client, namespace=env.client.namespace,
                     data_converter=data_converter(Settings.from_env(
                         {"MPR_PAYLOAD_KEYS": f"{new_key_entry('stolen-key')},{PAYLOAD_KEYS}",
                          "MPR_PAYLOAD_ENCRYPTION": "on"})))
    request = start_input()
    handle = await foreign.start_workflow(
        "MiniProgramRelease", {**request, TOKEN_FIELD: setup.token("dev")},
        id=release_id(request["mini_program_id"], "1.0.0", "alipaycn", "production"),
        task_queue=setup.queue)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidStartInput"
    assert cause.message == "the start input could not be decrypted (key id 'stolen-key')"
    assert catalog.transitions == []


# --- the mini service -------------------------------------------------------------------


@pytest.mark.parametrize("forgery", ["no token", "tampered claims", "expired", "wrong issuer"])
async def test_a_forged_identity_is_refused_by_a_mini_service_version(
    setup: Setup, service_catalog: FakeServiceCatalog, forgery: str,
) -> None:
    handle = await start_service(setup)
    forged = FORGERIES[forgery]
    sent = payload_of(forged.token("olly", setup.now), actor="ada", percent=1)
    reason = await refused_update(handle, "test", {**sent, "testers": ["qa@x.io"]})
    assert forged.reason in reason
    count = (await handle.query("status"))["audit_count"]
    await setup.plain.get_workflow_handle(handle.id).signal("test", sent)
    rejection = await last_refusal(handle, count)
    assert rejection["actor"] is None and rejection["claimed_actor"] == "ada"
    status = await handle.query("status")
    assert status["status"] == "DRAFT"
    events = [t.event for t in service_catalog.transitions if t.event.command == "test"]
    assert [(e.actor, e.claimed_actor, e.accepted) for e in events] == [(None, "ada", False)] * 2
    no_token_in(status, [t.model_dump(mode="json") for t in service_catalog.transitions])
    answered = await handle.execute_update(
        "test", {TOKEN_FIELD: setup.token("olly"), "testers": ["qa@x.io"]})
    assert answered["status"] == "TESTING"


@pytest.mark.parametrize(("token_user", "expected"), [
    (None, "no identity_token"),
    ("ada-impostor", "ada-impostor is not authorised to start a version of this mini service"),
])
async def test_a_mini_service_version_started_without_a_valid_identity_fails(
    setup: Setup, service_catalog: FakeServiceCatalog, token_user: str | None, expected: str,
) -> None:
    app = f"app{uuid.uuid4().hex[:6]}"
    token = setup.token(token_user) if token_user else None
    handle = await setup.client.start_workflow(
        "MiniServiceRelease", payload_of(token, super_app=app, version_no=1),
        id=mini_service_id(app, 1), task_queue=setup.queue)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidStartInput"
    assert expected in cause.message
    assert service_catalog.transitions == []


async def test_the_verified_subject_is_who_created_and_requested(
    setup: Setup, catalog: FakeCatalog, service_catalog: FakeServiceCatalog,
) -> None:
    release = await start_release(setup)
    assert (await release.query("status"))["requested_by"] == "dev"
    assert catalog.events("start_release")[0].event.actor == "dev"
    service = await start_service(setup)
    assert (await service.query("status"))["created_by"] == "olly"
