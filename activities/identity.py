"""Who sent a command, as the activities that load roles establish it (docs/security.md).

With MPR_AUTH=required the identity token is verified (mpr.infra.identity) and its subject is
the actor. With MPR_AUTH=off, which the worker warns about at start, the payload's `actor` is
believed, as it was before identities were verified.
"""

from mpr.domain.core.identity import IdentityCheck
from mpr.infra.identity import IdentityRefused, IdentityVerifier

ACTOR_NEEDED = ("the payload names no actor, and with MPR_AUTH=off the actor field is the "
                "only identity: add it")


class Authenticator:
    def __init__(self, verifier: IdentityVerifier | None) -> None:
        self._verifier = verifier

    @property
    def verifies(self) -> bool:
        return self._verifier is not None

    async def subject(self, check: IdentityCheck) -> str:
        """The actor of a command or start; IdentityRefused says why there is none. An
        unreachable issuer raises KeysUnavailable: the activity is retried, and the command,
        judged at the time it was received, waits."""
        if self._verifier is None:
            if not check.claimed_actor:
                raise IdentityRefused(ACTOR_NEEDED)
            return check.claimed_actor
        return await self._verifier.subject(check.identity_token, check.received_at)
