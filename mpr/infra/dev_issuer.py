"""The embedded stack's own identity issuer: a signing key under .data and its public JWKS.

`make up` creates the key once (mode 0600) and points the worker at the public keys;
`mpr login --user NAME` signs a short-lived token with it. It exists so that the embedded stack
runs with verification on, as production does; a real deployment uses its identity provider
(docs/production.md), and `mpr login` refuses to sign for anything but this issuer.
"""

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from mpr.infra.settings import DATA_DIR

ISSUER = "urn:mpr:embedded-dev-issuer"
AUDIENCE = "mpr"
ALGORITHM = "ES256"
TOKEN_LIFETIME_SECONDS = 8 * 3600
AUTH_DIR = DATA_DIR / "auth"
PRIVATE = 0o600


@dataclass(frozen=True)
class DevIssuer:
    """A signing key and where its public half is published."""

    key_file: Path
    jwks_file: Path
    issuer: str = ISSUER
    audience: str = AUDIENCE

    @classmethod
    def under(cls, directory: Path | None = None) -> "DevIssuer":
        """The issuer kept in `directory`, by default the stack's (.data/auth)."""
        directory = directory or AUTH_DIR
        return cls(key_file=directory / "signing-key.json", jwks_file=directory / "jwks.json")

    @property
    def exists(self) -> bool:
        return self.key_file.is_file()

    def ensure(self) -> "DevIssuer":
        """Make the signing key on first use and (re)write the public keys beside it."""
        if not self.key_file.is_file():
            self.key_file.parent.mkdir(parents=True, exist_ok=True)
            key = ECKey.generate_key("P-256", parameters={
                "kid": f"dev-{uuid.uuid4().hex[:12]}", "alg": ALGORITHM, "use": "sig"})
            descriptor = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
            with os.fdopen(descriptor, "w") as file:
                json.dump(key.as_dict(private=True), file)
        public = KeySet([self._key()]).as_dict(private=False)
        self.jwks_file.write_text(json.dumps(public, indent=2) + "\n")
        return self

    def _key(self) -> ECKey:
        return ECKey.import_key(json.loads(self.key_file.read_text()))

    def token(self, user: str, *, lifetime_seconds: int = TOKEN_LIFETIME_SECONDS,
              now: float | None = None, **claims: object) -> str:
        """A token for `user`, signed by this issuer (extra `claims` override the defaults)."""
        key = self._key()
        issued = int(time.time() if now is None else now)
        body = {
            "iss": self.issuer, "aud": self.audience, "sub": user,
            "preferred_username": user, "iat": issued, "nbf": issued,
            "exp": issued + lifetime_seconds, "jti": uuid.uuid4().hex, **claims,
        }
        return jwt.encode({"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"}, body, key)

    def settings(self) -> dict[str, str]:
        """The worker's MPR_AUTH_* settings for this issuer (written to stack.env)."""
        return {"MPR_AUTH": "required", "MPR_AUTH_ISSUER": self.issuer,
                "MPR_AUTH_AUDIENCE": self.audience,
                "MPR_AUTH_JWKS_FILE": str(self.jwks_file.resolve())}
