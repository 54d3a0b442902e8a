"""FastAPI routes for everything but predictions: models, traffic, health and metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from service.metrics import exposition, multiprocess_mode
from service.routing import TrafficSplit, UnknownVariant
from service.serving import Serving
from service.shared_split import ReadOnlySplit
from service.state import Service
from service.tokens import admin_refusal

router = APIRouter()


async def get_service(request: Request) -> Service:
    # `async`, though it never awaits: FastAPI runs a plain function dependency in its
    # thread pool, a hop to a thread and back on every request (`/metrics` included).
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
ServingDep = Annotated[Serving, Depends(get_service)]
"""The same service, seen as the request path sees it (service/serving.py): for the routes
that serve clients, not operators."""


def require_admin(
    service: ServiceDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """`Authorization: Bearer <admin token>` guards admin changes. `ManagementGuard` has
    already checked every state-changing request before its body was read; this keeps the
    check on the route itself, and in its OpenAPI description."""
    refusal = admin_refusal(service.settings.admin_token, authorization)
    if refusal is not None:
        raise HTTPException(refusal.status, refusal.message, {"WWW-Authenticate": "Bearer"})


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive and answering."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(service: ServiceDep) -> dict[str, Any] | JSONResponse:
    """Ready once every variant is loaded and warmed, in every worker; 503 before that, if
    loading failed, or while a background loop keeps failing (`loop_unready_after_s`)."""
    if (reason := service.not_ready()) is not None:
        return JSONResponse({"detail": reason}, status_code=503)
    return {"status": "ready", "variants": service.names}


@router.get("/models")
def models(service: ServiceDep) -> dict[str, Any]:
    """Every variant: format, precision, size, features, hold-out quality, memory, version,
    and its row cache (this worker's; null when `--cache-rows` is 0)."""
    manifest = service.manifest
    return {
        "model_name": manifest.model_name,
        "task": manifest.task,
        "reference": manifest.reference,
        "classes": manifest.classes,
        "n_features": manifest.n_features,
        "feature_names": manifest.feature_names,
        "drift": service.drift.describe(),
        "variants": [describe_variant(service, name) for name in service.names],
    }


@router.get("/models/{variant}")
def model(variant: str, service: ServiceDep) -> dict[str, Any]:
    if variant not in service.names:
        raise HTTPException(404, f"unknown variant {variant!r}; available: {service.names}")
    return describe_variant(service, variant)


def describe_variant(service: Service, name: str) -> dict[str, Any]:
    info = service.manifest.variants[name]
    loaded = service.variants.get(name)
    return {
        **info.model_dump(exclude={"path"}),
        "n_features": service.manifest.n_features,
        "loaded": loaded is not None,
        "memory_bytes": loaded.memory_bytes if loaded else None,
        "cache": loaded.cache.describe() if loaded and loaded.cache else None,
        "traffic_weight": service.traffic.router.weight(name),
        "faults": service.settings.inject.get(name, {}),
    }


@router.get("/traffic")
def get_traffic(service: ServiceDep) -> dict[str, Any]:
    """The current split: weights per variant (summing to 1), the shadow variant, and the
    split's version (every replica following the same split file reports the same)."""
    split, version = service.traffic.split.current
    return {**split.model_dump(), "version": version, "variants": service.names}


@router.put("/traffic", dependencies=[Depends(require_admin)])
def put_traffic(split: TrafficSplit, service: ServiceDep) -> dict[str, Any]:
    """Replace the split at run time, for every replica following the split file; requests
    already routed keep their variant. Weights that do not sum to 1 are rescaled, and
    the answer says so under `normalized_from`."""
    try:
        version = service.traffic.set(split)
    except UnknownVariant as error:
        raise HTTPException(422, str(error)) from None
    except ReadOnlySplit as error:
        raise HTTPException(409, str(error)) from None
    except OSError as error:  # e.g. a read-only volume: the split stays as it was
        raise HTTPException(503, f"the split file cannot be written: {error.strerror}") from None
    answer = {**split.model_dump(), "version": version, "variants": service.names}
    if split.rescaled_from is not None:
        answer["normalized_from"] = split.rescaled_from
    return answer


@router.get("/metrics")
async def metrics(request: Request, service: ServiceDep) -> Response:
    """Prometheus text format; with several workers, summed over all of them. (A plain
    scrape of one worker is answered before it reaches here: service/scrape.py.)

    `?name[]=NAME` (repeatable) renders only those metrics, as prometheus_client's own
    exporters do: the whole text costs the server milliseconds of CPU, which a client
    that samples a gauge every second would take from the requests it measures.
    This process's folded hot-path metrics are flushed first, on the event loop that folds
    them, so a scrape shows every request answered before it. One process's text is
    rendered on the loop: it costs a fraction of a millisecond (service/metrics/rendering.py),
    less than a hop to a thread, whose GIL the loop would wait for anyway. With several
    workers, the merge reads files and runs off the loop."""
    service.metrics.folding.flush()
    names = request.query_params.getlist("name[]")
    if multiprocess_mode():
        text = await run_in_threadpool(exposition, service.metrics.renderer, names)
    else:
        text = exposition(service.metrics.renderer, names)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
