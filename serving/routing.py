"""The route class of every API route: authorise first, then read the body strictly.

FastAPI reads, parses and validates a request's body, headers and parameters before
its route runs, so a route that checks its caller in a dependency or by hand would
answer a caller with no token, a bad one or another instance's with 422 and the
validation details. A :class:`GuardedRoute` checks the caller before any of that:

1. the route's access rule (:class:`Access`), taken from its dependencies
   (``CurrentAgent``, ``AdminDep``, ``ReadInstance``, ``ActInstance``) or, for a busy
   route that declares none, from :func:`access`: 401 without a valid token, 429 over
   its rate limit, 403 for a caller the rule refuses, all before the body is read;
2. the JSON body, parsed strictly: a key twice in one object is refused with 400
   (:class:`~serving.errors.DuplicateJsonKey`, naming the key), and ``NaN``,
   ``Infinity`` or a number too large for a float with 422
   (:class:`~serving.errors.NonFiniteNumber`), where Python's parser would keep the
   last value or an infinity;
3. then FastAPI's own validation and the route.

The caller is kept on ``request.state.principal``, so the route's dependencies do not
authenticate (nor spend its rate limit) twice.
"""

from __future__ import annotations

import contextlib
import email.message
import json
import math
from collections.abc import Callable, Coroutine, Iterator
from enum import StrEnum
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from serving.deps import (
    actable_instance,
    authenticate,
    bearer_token,
    check_act,
    check_admin,
    check_collect,
    check_read,
    check_token,
    current_principal,
    readable_instance,
    require_admin,
)
from serving.errors import DuplicateJsonKey, NonFiniteNumber
from serving.services import Services

_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


class Access(StrEnum):
    """Who may call a route: an agent's or administrator's token, administrators, the
    path's instance, or (telemetry) a collector or an administrator."""

    TOKEN = "token"
    ADMIN = "admin"
    READ = "read"
    ACT = "act"
    COLLECT = "collect"


# strongest first: a route whose dependencies name several takes the first
_RULES = (
    (actable_instance, Access.ACT),
    (readable_instance, Access.READ),
    (require_admin, Access.ADMIN),
    (current_principal, Access.TOKEN),
)


def access(rule: Access) -> Callable[[_Endpoint], _Endpoint]:
    """Declare the access rule of a route that checks its caller without dependencies."""

    def mark(endpoint: _Endpoint) -> _Endpoint:
        endpoint.access = rule  # type: ignore[attr-defined]
        return endpoint

    return mark


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def route_access(endpoint: Callable[..., Any], dependant: Dependant) -> Access | None:
    """Return a route's access rule, or ``None`` for a public route."""
    calls = set(_calls(dependant))
    for call, rule in _RULES:
        if call in calls:
            return rule
    declared = getattr(endpoint, "access", None)
    return None if declared is None else Access(declared)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise DuplicateJsonKey(key)
        document[key] = value
    return document


def _non_finite(text: str) -> Any:
    raise NonFiniteNumber(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(text)
    return value


def strict_json_loads(body: bytes | str) -> Any:
    """Parse a JSON document, refusing duplicate keys and non-finite numbers.

    Raises
    ------
    DuplicateJsonKey
        If an object names a key twice.
    NonFiniteNumber
        For ``NaN``, ``Infinity``, ``-Infinity`` or a number beyond a float's range.
    json.JSONDecodeError
        If the document is not JSON.
    """
    return json.loads(
        body,
        object_pairs_hook=_reject_duplicates,
        parse_constant=_non_finite,
        parse_float=_finite_float,
    )


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json_loads(await self.body())
        return self._json


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type")
    if not content_type:
        # FastAPI reads a body without a content type as JSON
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class GuardedRoute(APIRoute):
    """An API route that authorises its caller, then parses its JSON body strictly,
    before FastAPI validates the request (see the module's docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        rule = route_access(self.endpoint, self.dependant)
        reads_body = self.body_field is not None

        async def guarded(request: Request) -> Response:
            if rule is not None:
                services: Services = request.app.state.services
                token = bearer_token(request)
                if token and services.tokens.cached(token) is None:
                    # a token not trusted yet is read from the store: off the event loop
                    principal = await run_in_threadpool(authenticate, services, token)
                else:
                    principal = authenticate(services, token)
                instance_id = request.path_params.get("instance_id")
                if rule is Access.ADMIN:
                    check_admin(principal)
                elif rule is Access.READ:
                    check_read(principal, str(instance_id))
                elif rule is Access.ACT:
                    check_act(principal, str(instance_id))
                elif rule is Access.COLLECT:
                    check_collect(principal)
                else:
                    check_token(principal)
                request.state.principal = principal
            if reads_body:
                request = _StrictJsonRequest(request.scope, request.receive)
                if _is_json(request) and await request.body():
                    # a body that is not JSON (or not UTF-8) at all: FastAPI parses it
                    # again and says where it breaks
                    with contextlib.suppress(ValueError):
                        await request.json()
            return await handler(request)

        return guarded
