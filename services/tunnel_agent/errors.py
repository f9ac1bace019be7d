"""tunnel_agent's errors; handlers map them to HTTP statuses through the common tree."""

from __future__ import annotations

from services.common.errors import BadRequest, Conflict, ServiceError, Unavailable


class BadPeer(BadRequest):
    """The peer named in a request cannot be a tunnel's other end (unresolvable, this host...)."""


class InUse(Conflict):
    """A VNI, subnet or id this host already uses; `what` says which (`vni`, `subnet`, `id`)."""

    def __init__(self, message: str, what: str) -> None:
        super().__init__(message)
        self.what = what


class PoolExhausted(Unavailable):
    """No free VNI or /30 is left (on this host, or on both ends after retries)."""


class PeerFailed(ServiceError):
    """The peer's agent refused, answered nonsense or could not be reached."""

    status = 502


class PeerTimeout(PeerFailed):
    """The peer's agent did not answer within --peer-timeout."""

    status = 504


class KernelError(Unavailable):
    """Netlink refused an operation (the message names it and the kernel's reason)."""
