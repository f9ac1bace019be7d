"""The outcome of one authentication: a reason code (also the metric label) and a message."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any


class Reason(enum.StrEnum):
    """Why a token was accepted or rejected; the values are metric label values."""

    VALID = "valid"
    BAD_REQUEST = "bad_request"
    BAD_KEY = "bad_key"
    MALFORMED_TOKEN = "malformed_token"
    BAD_SIGNATURE = "bad_signature"
    USER_MISMATCH = "user_mismatch"
    EXPIRED = "expired"
    FAILED_CHECK = "failed_check"
    DATALOG_LIMITS = "datalog_limits"
    TOKEN_LIMITS = "token_limits"
    REVOKED = "revoked"
    UNAVAILABLE = "unavailable"
    BUSY = "busy"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A reason, a message safe to log and return (never the token), and the token's ids."""

    reason: Reason
    message: str
    # Revocation ids (hex) of every block, present once the signature has been verified.
    revocation_ids: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return self.reason is Reason.VALID

    def to_json(self) -> dict[str, Any]:
        """The verdict as the worker sends it over its pipe."""
        return {
            "reason": self.reason.value,
            "message": self.message,
            "revocation_ids": list(self.revocation_ids),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        """The verdict a worker sent; ValueError/KeyError/TypeError when it is not one."""
        ids = data.get("revocation_ids") or []
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError("revocation_ids must be a list of strings")
        message = data["message"]
        if not isinstance(message, str):
            raise TypeError("message must be a string")
        return cls(Reason(data["reason"]), message, tuple(ids))
