"""Which version a user is served, answered from the channels table alone.

Clients ask this on every launch, so it never touches Temporal: the release workflow keeps
the channel row current through `record_transition`.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from catalog.db import Database
from domain.bucketing import BUCKETS, in_rollout, rollout_bucket
from domain.models import Channel, Environment

Source = Literal["whitelist", "grayscale", "stable", "none"]


class ChannelState(BaseModel):
    mini_program_id: str
    target_app: str
    environment: Environment
    stable_version: str | None
    stable_release_id: str | None
    candidate_version: str | None
    candidate_release_id: str | None
    percent: int
    whitelist: list[str]
    revision: int
    updated_at: datetime


class Resolution(BaseModel):
    version: str | None
    """None when nothing is released to this user on the channel."""
    source: Source
    reason: str


async def get_channel(db: Database, channel: Channel) -> ChannelState | None:
    row = await db.fetchrow(
        """
        SELECT mini_program_id, target_app, environment, stable_version, stable_release_id,
               candidate_version, candidate_release_id, percent, whitelist, revision, updated_at
        FROM channels
        WHERE mini_program_id = $1 AND target_app = $2 AND environment = $3
        """,
        channel.mini_program_id,
        channel.target_app,
        channel.environment.value,
    )
    return ChannelState.model_validate(dict(row)) if row else None


async def resolve_version_detail(
    db: Database,
    mini_program_id: str,
    target_app: str,
    user_id: str,
    environment: str = Environment.PRODUCTION,
) -> Resolution:
    env = Environment(environment)
    # The whitelist can hold a thousand ids: test membership in the database, not here.
    row = await db.fetchrow(
        """
        SELECT stable_version, candidate_version, percent, $4 = ANY(whitelist) AS whitelisted
        FROM channels
        WHERE mini_program_id = $1 AND target_app = $2 AND environment = $3
        """,
        mini_program_id,
        target_app,
        env.value,
        user_id,
    )
    label = f"{mini_program_id}/{target_app}/{env.value}"
    if row is None:
        return Resolution(version=None, source="none", reason=f"nothing released on {label}")
    stable, candidate = row["stable_version"], row["candidate_version"]
    if candidate is not None:
        if row["whitelisted"]:
            return Resolution(version=candidate, source="whitelist", reason="whitelist")
        bucket = rollout_bucket(mini_program_id, target_app, env.value, candidate, user_id)
        if in_rollout(bucket, row["percent"]):
            threshold = row["percent"] * (BUCKETS // 100)
            return Resolution(
                version=candidate,
                source="grayscale",
                reason=f"grayscale bucket {bucket} < {threshold}",
            )
    if stable is None:
        return Resolution(version=None, source="none", reason=f"nothing released on {label}")
    return Resolution(version=stable, source="stable", reason="stable")


async def resolve_version(
    db: Database,
    mini_program_id: str,
    target_app: str,
    user_id: str,
    environment: str = Environment.PRODUCTION,
) -> str | None:
    """The version the user gets: the candidate if whitelisted or in its bucket, else stable."""
    resolution = await resolve_version_detail(db, mini_program_id, target_app, user_id, environment)
    return resolution.version
