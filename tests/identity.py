"""Identities for tests: one issuer of the same kind as the embedded stack's (a real signing
key and JWKS, in a temporary directory), the verifier the worker would build for it, and the
tokens its users would send."""

import tempfile
from pathlib import Path
from typing import Any

from activities.identity import Authenticator
from mpr.domain.core.identity import TOKEN_FIELD
from mpr.infra.dev_issuer import DevIssuer
from mpr.infra.identity import IdentityVerifier, JwksFile
from mpr.infra.settings import DEFAULT_AUTH_LEEWAY, DEFAULT_SUBJECT_CLAIM

ISSUER = DevIssuer.under(Path(tempfile.mkdtemp(prefix="mpr-test-issuer-"))).ensure()


def verifier(issuer: DevIssuer = ISSUER) -> IdentityVerifier:
    return IdentityVerifier(issuer=issuer.issuer, audience=issuer.audience,
                            keys=JwksFile(issuer.jwks_file), subject_claim=DEFAULT_SUBJECT_CLAIM,
                            leeway_seconds=DEFAULT_AUTH_LEEWAY)


def verifying() -> Authenticator:
    """What the worker checks with MPR_AUTH=required, against ISSUER."""
    return Authenticator(verifier())


def token(user: str, **claims: Any) -> str:
    return ISSUER.token(user, **claims)


def signed(user: str, payload: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A command payload as `user` sends it: their token, and no actor field."""
    return {TOKEN_FIELD: token(user), **(payload or {}), **fields}


def auth_env(issuer: DevIssuer = ISSUER) -> dict[str, str]:
    """The worker's MPR_AUTH_* settings for `issuer`."""
    return issuer.settings()
