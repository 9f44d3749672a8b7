"""Stable grayscale buckets: a user served the candidate at p% is served it at every higher p."""

import hashlib

BUCKETS = 10_000


def rollout_bucket(
    mini_program_id: str, target_app: str, environment: str, candidate_version: str, user_id: str
) -> int:
    """A bucket in [0, BUCKETS) fixed for this user and candidate version.

    Salting with the candidate version gives each release its own early cohort, so the same
    users are not always the first to meet a new version.
    """
    key = f"{mini_program_id}\x00{target_app}\x00{environment}\x00{candidate_version}\x00{user_id}"
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_rollout(bucket: int, percent: int) -> bool:
    return bucket < percent * (BUCKETS // 100)
