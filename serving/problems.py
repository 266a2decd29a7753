"""RFC 9457 problem documents for every error, and the request-body cap.

Routes raise domain errors; this module translates them into HTTP: a status, a
title, the error's own message as the detail, and its structured fields. Errors
that only the current state explains (a balance, a clock, an order's lifecycle) are
409; input the domain cannot accept is 422; nothing a client sends yields a 5xx.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from market import errors as market_errors
from market import ledger
from models.errors import ForecastError
from serving.errors import ApiError, PayloadTooLarge, RateLimited

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# the most specific class wins: the map is searched along each error's MRO
_STATUS: dict[type[Exception], int] = {
    market_errors.MarketError: 422,
    market_errors.UnknownTier: 404,
    market_errors.UnknownInstance: 404,
    market_errors.UnknownOrder: 404,
    market_errors.DuplicateOrder: 409,
    market_errors.InvalidTransition: 409,
    market_errors.InvalidExpiry: 409,
    market_errors.StandingLimitViolation: 409,
    market_errors.InsufficientEscrow: 409,
    market_errors.SelfTradeRejected: 409,
    market_errors.ExchangeError: 422,
    market_errors.DuplicateId: 409,
    market_errors.TierNotFound: 404,
    market_errors.HostNotFound: 404,
    market_errors.InstanceNotFound: 404,
    market_errors.NotAuthorised: 403,
    market_errors.InsufficientHeadroom: 409,
    market_errors.InsufficientPoolCredits: 409,
    market_errors.InsufficientCredits: 409,
    market_errors.InsufficientFunds: 409,
    market_errors.AccrualContention: 503,
    ledger.LedgerError: 422,
    ledger.UnknownAccount: 404,
    ledger.InsufficientBalance: 409,
    ledger.IdempotencyConflict: 409,
    ledger.StoreUnavailable: 503,
    ForecastError: 422,
}

_DOMAIN_ERRORS = (
    market_errors.MarketError,
    market_errors.ExchangeError,
    ledger.LedgerError,
    ForecastError,
)
_WORD = re.compile(r"(?<!^)(?=[A-Z])")


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Return an ``application/problem+json`` response."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def status_of(exc: Exception) -> int:
    """Return the HTTP status of a domain error."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500


def _title(exc: Exception) -> str:
    words = _WORD.sub(" ", type(exc).__name__).lower()
    return words[:1].upper() + words[1:]


def _fields(exc: Exception) -> dict[str, Any]:
    # structured fields of the domain error, where they are plain JSON values
    out: dict[str, Any] = {}
    for name, value in vars(exc).items():
        if name.startswith("_") or name in {"args"}:
            continue
        if isinstance(value, str | int | bool) or value is None:
            out[name] = value
    return out


def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    if "retry_after" in exc.extra:
        headers = {"Retry-After": str(exc.extra["retry_after"])}
    if exc.status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="creditx"'}
    return problem_response(
        exc.status,
        exc.title,
        exc.detail,
        instance=request.url.path,
        headers=headers,
        **{k: v for k, v in exc.extra.items() if k != "retry_after"},
    )


def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_of(exc)
    if status >= 500:
        logger.error("domain error with no client cause: %r", exc)
    return problem_response(
        status, _title(exc), str(exc), instance=request.url.path, **_fields(exc)
    )


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"]) or "request"
    return problem_response(
        422,
        "Invalid request",
        f"{where}: {first['msg']}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
        instance=request.url.path,
        errors=errors,
    )


def _allowed_methods(request: Request) -> str:
    # a path may be served by several routes, one per method: list what the document says
    table = getattr(request.app.state, "allowed_methods", None)
    if table is None:
        table = [
            (
                re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"),
                {method.upper() for method in item},
            )
            for path, item in request.app.openapi().get("paths", {}).items()
        ]
        request.app.state.allowed_methods = table
    methods: set[str] = set()
    for pattern, allowed in table:
        if pattern.match(request.url.path):
            methods |= allowed
    return ", ".join(sorted(methods))


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) else phrase
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
        detail = f"{request.method} is not allowed here; use {headers['Allow']}"
    return problem_response(
        exc.status_code, phrase, detail, instance=request.url.path, headers=headers
    )


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(
        500,
        "Internal server error",
        "the service failed; the error is logged",
        instance=request.url.path,
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` an ``application/problem+json`` response."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for cls in _DOMAIN_ERRORS:
        app.add_exception_handler(cls, _domain_error)
    app.add_exception_handler(Exception, _unexpected)


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, declared or streamed.

    Parameters
    ----------
    app
        The application to guard.
    max_bytes
        The largest body accepted.
    paths
        Paths with a limit of their own (a batch of readings is larger than an order).
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, paths: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = dict(paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope.get("path", ""), self.max_bytes)
        headers = scope.get("headers", ())
        for name, value in headers:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    detail = f"the body declares {declared} bytes; the limit is {limit}"
                    await self._refuse(detail, limit, scope, receive, send)
                    return
        if not any(name in (b"content-length", b"transfer-encoding") for name, _ in headers):
            await self.app(scope, receive, send)
            return
        # read the whole (capped) body first, so an oversized stream is refused before
        # any route parses it
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                detail = f"the body exceeds the limit of {limit} bytes"
                await self._refuse(detail, limit, scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(
        self, detail: str, limit: int, scope: Scope, receive: Receive, send: Send
    ) -> None:
        response = problem_response(
            PayloadTooLarge.status,
            PayloadTooLarge.title,
            detail,
            instance=scope.get("path"),
            max_bytes=limit,
        )
        await response(scope, receive, send)
