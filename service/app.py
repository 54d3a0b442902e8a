"""The app factory: builds the service, its FastAPI routes, and the two paths that run in
front of them: predictions and the plain `/metrics` scrape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service.admin import ManagementGuard
from service.api import router
from service.docs import serve_docs
from service.metrics import Metrics, new_registry
from service.openapi import document_predict
from service.predict import PredictEndpoint
from service.protocols.api import v1_router, v2_router
from service.protocols.openapi import document_protocols
from service.rollout_routes import router as rollout_router
from service.scrape import ScrapeEndpoint
from service.settings import Settings
from service.state import Service


def create_app(settings: Settings | None = None) -> PredictEndpoint[Service]:
    """An ASGI app serving the store named in `settings` (default: from the environment)."""
    settings = settings or Settings()
    service = Service(settings, Metrics(new_registry()))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    api = FastAPI(
        title="perfserve",
        summary="Inference service with load testing built in",
        lifespan=lifespan,
        docs_url=None,  # served from local files below, not a CDN
        redoc_url=None,
    )
    api.state.service = service
    api.include_router(router)
    api.include_router(rollout_router)
    api.include_router(v2_router)
    api.include_router(v1_router)
    serve_docs(api)
    api.add_exception_handler(RequestValidationError, _invalid_request)
    api.add_exception_handler(Exception, _internal_error)
    document_predict(api)
    document_protocols(api)
    return PredictEndpoint(service, ScrapeEndpoint(service, ManagementGuard(service, api)))


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    # FastAPI's own handler echoes each bad input, which fails to encode when it is not
    # JSON (a NaN weight) and turns a 422 into a 500; the message says what is wrong.
    assert isinstance(error, RequestValidationError)
    detail = [{k: v for k, v in e.items() if k not in ("input", "ctx")} for e in error.errors()]
    return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    # A bug must still answer in JSON, and never with a stack trace.
    return JSONResponse({"detail": f"internal error: {type(error).__name__}"}, status_code=500)
