"""Errors every layer below the routes may raise; the app turns each into `{"detail": ...}` with its status.

Services and session parts raise these with a message a person can act on; they never build HTTP
responses themselves. `status` is the HTTP status the routes answer with.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal with a plain-words `detail`; subclasses fix the status."""

    status = 500

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class Invalid(ServiceError):
    status = 400


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class TooLarge(ServiceError):
    status = 413


class Unprocessable(ServiceError):
    status = 422


class TooMany(ServiceError):
    status = 429


class Unavailable(ServiceError):
    status = 503


class ApiError(ServiceError):
    """A refusal with an explicit status, for the few statuses without a class of their own."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, headers)
        self.status = status
