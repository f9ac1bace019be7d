"""Exception tree shared by the services; handlers map it to HTTP statuses."""

from __future__ import annotations


class ConfigError(Exception):
    """Bad flags, config file or environment: the command exits 2 with this message."""


class ServiceError(Exception):
    """An error a handler turns into a JSON reply with `status`."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServiceError):
    status = 400


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Unavailable(ServiceError):
    """A dependency (oned, a peer agent, the kernel) cannot be reached."""

    status = 503


class OneError(Unavailable):
    """oned refused or failed a call; `code` is OpenNebula's error code when it answered."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
