"""What of a command payload may be kept in audit rows: its shape, not the personal data."""

from typing import Any

# Whitelisted user ids and tester emails identify people.
PERSONAL_LISTS = ("user_ids", "testers")


def redact(payload: dict[str, Any] | None) -> dict[str, Any] | None:
    if payload is None:
        return None
    kept = dict(payload)
    for key in PERSONAL_LISTS:
        if isinstance(kept.get(key), list):
            kept[key] = f"<{len(kept[key])} {key.replace('_', ' ')}>"
    return kept
