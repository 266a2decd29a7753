"""The FastAPI application: ``create_app(settings, clock=...)``.

The app serves forecasts and the credit market of one creditx store over HTTP. Every
route but ``/v1/health`` needs a bearer token; every error is an RFC 9457
``application/problem+json`` document.
"""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from market.clock import system_clock
from serving.forecasts import ChampionSource
from serving.problems import PROBLEM_JSON, BodySizeLimit, install_problem_handlers
from serving.routes import (
    admin,
    allowances,
    forecasts,
    health,
    instances,
    orders,
    rounds,
    telemetry,
    tiers,
    tokens,
)
from serving.schemas import Problem, TelemetryBatchCreate
from serving.services import Services, build_services
from serving.settings import Settings

_ERRORS_PUBLIC = (400, 404, 413, 422)
_DOCS_ASSETS = "/docs-assets"
_ERRORS_SECURED = (400, 401, 403, 404, 409, 413, 422, 429, 503)


def _optional_routers() -> list[APIRouter]:
    # routes that other packages contribute join the app when they are installed
    if importlib.util.find_spec("serving.routes.decisions") is None:
        return []
    from serving.routes import decisions  # type: ignore[attr-defined, unused-ignore]

    router: APIRouter = decisions.router
    return [router]


def create_app(
    settings: Settings | None = None,
    clock: Callable[[], datetime] = system_clock,
    *,
    champion: ChampionSource | bool | None = True,
    services: Services | None = None,
) -> FastAPI:
    """Build the API over the stores ``settings`` names.

    Parameters
    ----------
    settings
        The configuration; read from ``CREDITX_*`` when ``None``.
    clock
        The market's clock (the system clock at the service's edge).
    champion
        ``True`` follows the MLflow champion of ``settings``; a ``ChampionSource``
        follows that one; ``None`` serves the batch predictions only.
    services
        Already built services, to share stores between apps.
    """
    settings = settings or Settings()
    wired = services or build_services(settings, clock, champion)
    app = FastAPI(
        title="creditx",
        version="0.1.0",
        summary="Demand forecasts and the burstable-credit exchange of a fleet.",
        description=(
            "Agents read their instance's forecasts and trade its credits; administrators "
            "set exchange rates, swap tier pools and check the ledger. Credits are integer "
            "milli-credits, money integer minor units, exchange rates integer micro-units."
        ),
        lifespan=_lifespan(wired, settings),
        docs_url=None,
        redoc_url=None,
    )
    _install_docs(app)
    app.state.services = wired
    install_problem_handlers(app)
    _include_routes(app)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        paths={"/v1/telemetry": settings.telemetry_max_body_bytes},
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _include_routes(app: FastAPI) -> None:
    for module in (
        health,
        forecasts,
        tiers,
        instances,
        allowances,
        orders,
        telemetry,
        admin,
        rounds,
        tokens,
    ):
        app.include_router(module.router)
    for router in _optional_routers():
        app.include_router(router)


def _lifespan(
    wired: Services, settings: Settings
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    # the order desk and the forecasts' reloading run while the app serves

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        wired.desk.start()
        wired.forecasts.start(settings.forecast_reload_seconds)
        # what is built by now (libraries, stores, the books) lives as long as the app:
        # full collections need not walk it (they paused requests for 100-300 ms)
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            await wired.desk.stop()
            wired.forecasts.stop()

    return lifespan


def _install_docs(app: FastAPI) -> None:
    # Swagger UI and ReDoc from an installed package, not a CDN: /docs works offline.
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount(_DOCS_ASSETS, StaticFiles(directory=static), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{_DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{_DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{_DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            redoc_js_url=f"{_DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{_DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": HTTPStatus(status).phrase,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status == 429:
        response["headers"] = {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
        }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"description": "the scheme to use", "schema": {"type": "string"}}
        }
    return response


def _document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            secured = bool(operation.get("security"))
            responses = operation.setdefault("responses", {})
            for status in _ERRORS_SECURED if secured else _ERRORS_PUBLIC:
                responses[str(status)] = _problem_response(status)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    # POST /v1/telemetry reads its body itself (JSON or Parquet) and names the JSON schema
    batch = TelemetryBatchCreate.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(batch.pop("$defs", {}))
    schemas["TelemetryBatchCreate"] = batch
    return document
