"""The order in which a login is decided, cheapest refusal first (SPEC section 7, issue 14).

On the event loop, without a worker: the token's static limits (`precheck`: size, encoding,
block count, each block's size, statements and rule bodies; ~40 us), its revocation ids (every
block's, from the live list), and whether its authority block blew the limits recently
(`BlownTokens`). Only then, when the scheduler gives this user a turn (join-free tokens on the
fast lane, the others on the slow one), does a worker verify the signature and run the Datalog
under the CPU alarm. A token that blows
the limits there is remembered, so it and every token attenuated from it are refused at once
for `--blown-token-ttl` seconds, and its user is served last.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from .blown import BlownTokens
from .pool import VerifierPool
from .revocations import RevocationList
from .scheduler import Priority
from .verdict import Reason, Verdict
from .verifier import precheck

# Verdicts that mean "this token costs too much to verify": remembered by authority id. A
# CPU-alarm verdict has no ids (the worker died) but only ever follows a good signature: parsing
# and checking a token within the precheck limits takes ~1 ms, the alarm at least 20 ms.
BLOWN = (Reason.DATALOG_LIMITS, Reason.TOKEN_LIMITS)


def revoked_verdict(ids: tuple[str, ...], revocations: RevocationList) -> Verdict | None:
    """REVOKED when one of the token's block ids is in the list (a block revokes its heirs)."""
    block = revocations.first_revoked(ids)
    if block is None:
        return None
    return Verdict(
        Reason.REVOKED,
        f"the token is revoked (block {block}, revocation id {ids[block][:16]}...)",
        ids,
    )


class Authenticator:
    """Decides logins: precheck, revocations, remembered bombs, then a worker's turn."""

    def __init__(
        self,
        pool: VerifierPool,
        revocations: Callable[[], RevocationList],
        blown: BlownTokens,
    ) -> None:
        self.pool = pool
        self._revocations = revocations
        self.blown = blown
        # Refusals decided here without a worker, by reason: what the cheap checks save.
        self.refused_early: collections.Counter[Reason] = collections.Counter()

    def _early(self, verdict: Verdict) -> Verdict:
        self.refused_early[verdict.reason] += 1
        return verdict

    async def authenticate(self, username: str, key: bytes, token: str) -> Verdict:
        """The verdict on one login; never raises for anything the caller sent."""
        checked = precheck(token)
        if isinstance(checked, Verdict):
            return self._early(checked)
        ids = checked.revocation_ids
        revoked = revoked_verdict(ids, self._revocations())
        if revoked is not None:
            return self._early(revoked)
        left = self.blown.refused_for(checked.authority_id)
        if left is not None:
            return self._early(
                Verdict(
                    Reason.DATALOG_LIMITS,
                    f"a token with this authority block (revocation id "
                    f"{checked.authority_id[:16]}...) blew the verification limits recently; "
                    f"refused without running it for another {left:.0f} s",
                    ids,
                )
            )
        # A join-free token cannot blow up, whoever sends it; the others take the slow lane,
        # after everyone else when this user's tokens blew the limits recently.
        if not checked.joins:
            priority = Priority.CHEAP
        elif self.blown.is_heavy(username):
            priority = Priority.HEAVY
        else:
            priority = Priority.JOINS
        verdict = await self.pool.verify(token, key, username, priority=priority)
        if verdict.reason in BLOWN:
            self.blown.remember(checked.authority_id, username)
        if verdict.valid:
            # The list may have changed while this login waited for its turn.
            revoked = revoked_verdict(ids, self._revocations())
            if revoked is not None:
                return revoked
        return verdict
