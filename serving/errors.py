"""Errors of the service, each an RFC 9457 problem with its HTTP status.

::

    ApiError                      status, title and detail of a problem document
    ├── DuplicateJsonKey          400: a JSON object names one key twice
    ├── Unauthenticated           401: no bearer token, or an unknown or revoked one
    ├── Forbidden                 403: the token may not act on this resource
    ├── NotFound                  404: no such resource for this caller
    ├── Conflict                  409: the request clashes with the current state
    ├── IdempotencyMismatch       409: an Idempotency-Key reused with another request
    ├── PayloadTooLarge           413: the request body exceeds the cap
    ├── UnsupportedMediaType      415: a body of a content type the route does not read
    ├── NonFiniteNumber           422: NaN, Infinity or a number beyond a float's range
    ├── InvalidTelemetry          422: a batch of readings with a problem; nothing booked
    ├── RateLimited               429: the token spent its request budget
    └── ServiceUnavailable        503: a store or the forecasts are not available yet
"""

from __future__ import annotations


class ApiError(Exception):
    """Root of the service's errors: one problem document with an HTTP status.

    A subclass names its status and title in its class line:
    ``class NotFound(ApiError, status=404, title="Not found")``.
    """

    status: int = 400
    title: str = "Bad request"

    def __init_subclass__(
        cls, *, status: int | None = None, title: str | None = None, **kwargs: object
    ) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status
        if title is not None:
            cls.title = title

    def __init__(self, detail: str, *, title: str | None = None, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        if title is not None:
            self.title = title
        self.extra = extra


class DuplicateJsonKey(ApiError, status=400, title="Duplicate JSON key"):
    """A JSON object of the body names one key twice: which value was meant is unknown."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"the body names the key {key!r} twice in one object; send each key once",
            key=key,
        )
        self.key = key


class Unauthenticated(ApiError, status=401, title="Authentication required"):
    """No bearer token, or one that is unknown or revoked."""


class Forbidden(ApiError, status=403, title="Forbidden"):
    """The caller's token may not act on this resource."""


class NotFound(ApiError, status=404, title="Not found"):
    """No such resource for this caller."""


class Conflict(ApiError, status=409, title="Conflict"):
    """The request clashes with the current state of a resource."""


class IdempotencyMismatch(ApiError, status=409, title="Idempotency key reused"):
    """An Idempotency-Key reused with a request that differs from the first."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was first used with a different request; "
            "use a new key for a new request",
            idempotency_key=key,
        )
        self.key = key


class PayloadTooLarge(ApiError, status=413, title="Request body too large"):
    """The request body exceeds the service's cap."""


class UnsupportedMediaType(ApiError, status=415, title="Unsupported media type"):
    """A body of a content type the route does not read."""


class InvalidTelemetry(ApiError, status=422, title="Invalid telemetry"):
    """A batch of readings with at least one problem: none of it was booked.

    ``errors`` lists the first problems (row, field, value, problem, message).
    """


class NonFiniteNumber(ApiError, status=422, title="Invalid request"):
    """The body holds NaN, an infinity or a number too large for a float."""

    def __init__(self, number: str) -> None:
        super().__init__(
            f"the body holds the number {number}, which is not finite; send finite numbers",
            number=number,
        )
        self.number = number


class RateLimited(ApiError, status=429, title="Too many requests"):
    """The token spent its request budget; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"this token's request budget is spent; retry in {retry_after} s",
            retry_after=retry_after,
        )
        self.retry_after = retry_after


class ServiceUnavailable(ApiError, status=503, title="Service unavailable"):
    """A store or the forecasts are not available yet."""
