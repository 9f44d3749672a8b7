"""Verifying the operators' OpenID Connect tokens (docs/security.md: identity).

A token is accepted when its signature verifies against the issuer's published keys (JWKS)
with an asymmetric algorithm, its `iss` and `aud` are the configured ones, and it is neither
expired nor not yet valid at the time the workflow received the command. The subject is read
from MPR_AUTH_SUBJECT_CLAIM. joserfc does the JOSE work; this module only chooses what to
check and words the refusals, which never repeat what was sent.

The keys are cached and fetched again when a token names a key id the cache does not have
(the issuer rotated its keys), at most once every KEY_REFRESH_INTERVAL.
"""

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from mpr.infra.settings import Settings, SettingsError

# Asymmetric algorithms only: `none` is never accepted, and an HMAC algorithm would let
# anyone holding the public key sign.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA")
KEY_REFRESH_INTERVAL = 30.0
FETCH_TIMEOUT_SECONDS = 10.0
MAX_TOKEN_LENGTH = 16_384
NO_TOKEN = ("no identity_token: send the command with a token from your identity provider "
            "(mpr login, MPR_TOKEN or MPR_TOKEN_COMMAND; docs/security.md)")


class IdentityRefused(Exception):
    """The token does not prove who sent the command; the message says what was wrong."""


class KeysUnavailable(Exception):
    """The issuer's keys could not be loaded (the command waits: the activity is retried)."""


class KeySource(Protocol):
    def load(self) -> KeySet:
        """The issuer's public keys as published now (blocking: run in a thread)."""
        ...

    @property
    def where(self) -> str: ...


class JwksFile:
    def __init__(self, path: Path) -> None:
        self._path = path

    @property
    def where(self) -> str:
        return str(self._path)

    def load(self) -> KeySet:
        try:
            return _key_set(json.loads(self._path.read_text()))
        except OSError as error:
            raise KeysUnavailable(f"cannot read MPR_AUTH_JWKS_FILE {self._path}: "
                                  f"{error.strerror}") from None
        except ValueError as error:
            raise KeysUnavailable(f"MPR_AUTH_JWKS_FILE {self._path} is not a JWKS: "
                                  f"{error}") from None


class JwksUrl:
    def __init__(self, url: str) -> None:
        self._url = url

    @property
    def where(self) -> str:
        return self._url

    def load(self) -> KeySet:
        # One GET of a small JSON document: the standard library is enough, and keeps an
        # HTTP client out of the worker's dependencies.
        request = urllib.request.Request(self._url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
                document = json.loads(response.read())
        except (OSError, ValueError) as error:
            raise KeysUnavailable(f"cannot load the issuer's keys from {self._url}: "
                                  f"{error}") from None
        try:
            return _key_set(document)
        except ValueError as error:
            raise KeysUnavailable(f"{self._url} is not a JWKS: {error}") from None


def _key_set(document: Any) -> KeySet:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("expected an object with a `keys` list")
    try:
        return KeySet.import_key_set(document)  # type: ignore[arg-type]
    except (JoseError, KeyError, TypeError, ValueError) as error:
        raise ValueError(str(error) or type(error).__name__) from None


class IdentityVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: KeySource,
        subject_claim: str,
        leeway_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._source = keys
        self._subject_claim = subject_claim
        self._leeway = leeway_seconds
        self._clock = clock
        self._keys: KeySet | None = None
        self._loaded_at = float("-inf")
        self._loading = asyncio.Lock()

    @property
    def issuer(self) -> str:
        return self._issuer

    @property
    def keys_from(self) -> str:
        return self._source.where

    async def key_set(self, *, refresh: bool = False) -> KeySet:
        async with self._loading:
            stale = self._clock() - self._loaded_at >= KEY_REFRESH_INTERVAL
            if self._keys is None or (refresh and stale):
                self._keys = await asyncio.to_thread(self._source.load)
                self._loaded_at = self._clock()
            return self._keys

    async def subject(self, token: Any, received_at: datetime) -> str:
        """The verified subject of `token` at `received_at`; IdentityRefused says why not."""
        if token is None or token == "":
            raise IdentityRefused(NO_TOKEN)
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise IdentityRefused("the identity_token is not a token: send the compact JWT "
                                  "your identity provider issued, as a string")
        try:
            verified = jwt.decode(token, await self.key_set(), algorithms=ALGORITHMS)
        except InvalidKeyIdError:
            try:
                verified = jwt.decode(token, await self.key_set(refresh=True),
                                      algorithms=ALGORITHMS)
            except JoseError as error:
                raise IdentityRefused(_signature_refusal(error)) from None
        except JoseError as error:
            raise IdentityRefused(_signature_refusal(error)) from None
        claims = verified.claims
        registry = JWTClaimsRegistry(
            now=int(received_at.timestamp()), leeway=self._leeway,
            iss={"essential": True, "value": self._issuer},
            aud={"essential": True, "value": self._audience},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise IdentityRefused("the identity token had expired when the command arrived: "
                                  "get a new one (mpr login) and send the command again") from None
        except MissingClaimError as error:
            raise IdentityRefused(f"the identity token has no {error.claim} claim") from None
        except InvalidClaimError as error:
            raise IdentityRefused(_claim_refusal(error.claim)) from None
        except JoseError:
            raise IdentityRefused("the identity token's claims are not valid") from None
        subject = claims.get(self._subject_claim)
        if not isinstance(subject, str) or not subject.strip():
            raise IdentityRefused(f"the identity token has no {self._subject_claim} claim "
                                  "(MPR_AUTH_SUBJECT_CLAIM) naming who sent it")
        return subject


def _signature_refusal(error: JoseError) -> str:
    if isinstance(error, UnsupportedAlgorithmError):
        return ("the identity token's algorithm is not accepted (allowed: "
                f"{', '.join(ALGORITHMS)})")
    if isinstance(error, InvalidKeyIdError):
        return "the identity token was signed with a key the issuer does not publish"
    if isinstance(error, BadSignatureError):
        return "the identity token's signature does not verify"
    return "the identity token is malformed: expected a signed JWT"


def _claim_refusal(claim: str) -> str:
    if claim == "iss":
        return "the identity token was issued by another issuer than MPR_AUTH_ISSUER"
    if claim == "aud":
        return "the identity token is for another audience than MPR_AUTH_AUDIENCE"
    if claim in ("nbf", "iat"):
        return ("the identity token was not yet valid when the command arrived (nbf or iat "
                "in the future)")
    return f"the identity token's {claim} claim is not valid"


def verifier_from(settings: Settings) -> IdentityVerifier | None:
    """The worker's verifier, or None with MPR_AUTH=off; SettingsError names what is missing."""
    if not settings.auth_required:
        return None
    missing = [name for name, value in (("MPR_AUTH_ISSUER", settings.auth_issuer),
                                        ("MPR_AUTH_AUDIENCE", settings.auth_audience))
               if not value]
    if settings.auth_jwks_url and settings.auth_jwks_file:
        raise SettingsError("set MPR_AUTH_JWKS_URL or MPR_AUTH_JWKS_FILE, not both")
    if not (settings.auth_jwks_url or settings.auth_jwks_file):
        missing.append("MPR_AUTH_JWKS_URL or MPR_AUTH_JWKS_FILE")
    if missing:
        raise SettingsError(
            f"MPR_AUTH is required but {', '.join(missing)} is not set: run `make up` (its "
            "own issuer), configure your identity provider (docs/security.md), or set "
            "MPR_AUTH=off to believe the actor field"
        )
    assert settings.auth_issuer and settings.auth_audience
    keys: KeySource = (JwksUrl(settings.auth_jwks_url) if settings.auth_jwks_url
                       else JwksFile(settings.auth_jwks_file))  # type: ignore[arg-type]
    return IdentityVerifier(issuer=settings.auth_issuer, audience=settings.auth_audience,
                            keys=keys, subject_claim=settings.auth_subject_claim,
                            leeway_seconds=settings.auth_leeway_seconds)
