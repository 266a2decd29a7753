"""Errors of the service, each an RFC 9457 problem with its HTTP status.

::

    ApiError                      status, title and detail of a problem document
    ├── Unauthenticated           401: no bearer token, or an unknown or revoked one
    ├── Forbidden                 403: the token may not act on this resource
    ├── NotFound                  404: no such resource for this caller
    ├── Conflict                  409: the request clashes with the current state
    ├── IdempotencyMismatch       409: an Idempotency-Key reused with another request
    ├── PayloadTooLarge           413: the request body exceeds the cap
    ├── RateLimited               429: the token spent its request budget
    └── ServiceUnavailable        503: a store or the forecasts are not available yet
"""

from __future__ import annotations


class ApiError(Exception):
    """Root of the service's errors: one problem document with an HTTP status."""

    status: int = 400
    title: str = "Bad request"

    def __init__(self, detail: str, *, title: str | None = None, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        if title is not None:
            self.title = title
        self.extra = extra


class Unauthenticated(ApiError):
    """No bearer token, or one that is unknown or revoked."""

    status = 401
    title = "Authentication required"


class Forbidden(ApiError):
    """The caller's token may not act on this resource."""

    status = 403
    title = "Forbidden"


class NotFound(ApiError):
    """No such resource for this caller."""

    status = 404
    title = "Not found"


class Conflict(ApiError):
    """The request clashes with the current state of a resource."""

    status = 409
    title = "Conflict"


class IdempotencyMismatch(ApiError):
    """An Idempotency-Key reused with a request that differs from the first."""

    status = 409
    title = "Idempotency key reused"

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was first used with a different request; "
            "use a new key for a new request",
            idempotency_key=key,
        )
        self.key = key


class PayloadTooLarge(ApiError):
    """The request body exceeds the service's cap."""

    status = 413
    title = "Request body too large"


class RateLimited(ApiError):
    """The token spent its request budget; retry after ``retry_after`` seconds."""

    status = 429
    title = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"this token's request budget is spent; retry in {retry_after} s",
            retry_after=retry_after,
        )
        self.retry_after = retry_after


class ServiceUnavailable(ApiError):
    """A store or the forecasts are not available yet."""

    status = 503
    title = "Service unavailable"
