"""Who sent a command: the identity token that travels in its payload, and what the
verification said.

The token is split from the payload before anything else reads it, so it never reaches a
command model, the workflow state, the audit log, the catalog or a refusal message. The
worker verifies it in an activity (the verdict is then part of the history, and replay is
deterministic); the verified subject is the actor. A payload's `actor` is only a claim: it may
be left out, and when present it must name the subject.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mpr.domain.core.models import Role

TOKEN_FIELD = "identity_token"
ACTOR_MISMATCH = "the actor field does not match the verified identity"


def split_token(payload: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """The payload without its identity token, and the token as sent (None when absent)."""
    rest = {name: value for name, value in payload.items() if name != TOKEN_FIELD}
    return rest, payload.get(TOKEN_FIELD)


def claimed_actor(payload: Mapping[str, Any] | None, field: str = "actor") -> str | None:
    """Who the payload says it comes from, when it says so in a string."""
    value = (payload or {}).get(field)
    return value if isinstance(value, str) else None


class IdentityCheck(BaseModel):
    """What the verifying activity needs: the token, who the payload claims to be (believed
    only with MPR_AUTH=off) and when the workflow received the command, which is the time
    `exp` and `nbf` are checked against (a command sent with a valid token during an outage
    stays valid however late the activity runs)."""

    model_config = ConfigDict(frozen=True)

    identity_token: Any = Field(default=None, repr=False)  # out of reprs, logs, tracebacks
    claimed_actor: str | None = None
    received_at: datetime


class IdentityVerdict(BaseModel):
    """The verified subject and the roles it holds where the command applies, or why the
    identity was refused."""

    model_config = ConfigDict(frozen=True)

    subject: str | None = None
    roles: list[Role] = []
    refusal: str | None = None


def actor_refusal(verdict: IdentityVerdict, claimed: str | None) -> str | None:
    """Why a command cannot be taken as coming from the verified subject, if it cannot."""
    if verdict.refusal is not None or verdict.subject is None:
        return verdict.refusal or "the identity could not be verified"
    if claimed is not None and claimed != verdict.subject:
        return ACTOR_MISMATCH
    return None
