"""Who sent a command, as the activities that load roles establish it (docs/security.md).

With MPR_AUTH=required the identity token is verified (mpr.infra.identity) and its subject is
the actor. With MPR_AUTH=off, which the worker warns about at start, the payload's `actor` is
believed, as it was before identities were verified.
"""

from collections.abc import Awaitable, Callable

from mpr.domain.core.identity import IdentityCheck, IdentityVerdict
from mpr.domain.core.models import Role
from mpr.infra.identity import IdentityRefused, IdentityVerifier
from mpr.infra.logging import get_logger

log = get_logger(__name__)

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

    async def verdict(
        self, check: IdentityCheck, roles_of: Callable[[str], Awaitable[list[Role]]]
    ) -> IdentityVerdict:
        """The verified subject and its roles (`roles_of`), or why the identity is refused."""
        try:
            subject = await self.subject(check)
        except IdentityRefused as refused:
            log.info("identity refused", reason=str(refused), claimed_actor=check.claimed_actor)
            return IdentityVerdict(refusal=str(refused))
        roles = await roles_of(subject)
        log.info("identity verified", actor=subject, roles=[role.value for role in roles])
        return IdentityVerdict(subject=subject, roles=roles)
