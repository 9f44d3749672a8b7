"""What of a payload is kept in audit rows or shown by `mpr history`."""

from mpr.domain.core.redaction import redact


def test_personal_lists_are_counted_and_tokens_never_shown() -> None:
    payload = {"actor": "adam", "user_ids": ["u1", "u2"], "identity_token": "eyJhbGciOi.x.y"}
    assert redact(payload) == {"actor": "adam", "user_ids": "<2 user ids>",
                               "identity_token": "<identity token>"}
    assert payload["identity_token"] == "eyJhbGciOi.x.y", "the payload itself is left as it is"
    assert redact(None) is None
