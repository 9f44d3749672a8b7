"""What of a command payload may be kept in audit rows or shown: its shape, not the personal
data, and never a credential."""

from typing import Any

# Whitelisted user ids and tester emails identify people.
PERSONAL_LISTS = ("user_ids", "testers")
# A token shown could be replayed by whoever sees it until it expires (core.identity).
CREDENTIALS = ("identity_token",)


def redact(payload: dict[str, Any] | None) -> dict[str, Any] | None:
    if payload is None:
        return None
    kept = dict(payload)
    for key in PERSONAL_LISTS:
        if isinstance(kept.get(key), list):
            kept[key] = f"<{len(kept[key])} {key.replace('_', ' ')}>"
    for key in CREDENTIALS:
        if key in kept:
            kept[key] = "<identity token>"
    return kept
