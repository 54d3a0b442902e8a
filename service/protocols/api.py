"""The V2 and V1 routes that are not predictions: server and model metadata, liveness and
readiness, in each protocol's shape, errors as `{"error": "..."}`.

Readiness is `/readyz`'s: every variant loaded, warmed and able to answer, in every
worker. A model is ready when every variant it may route to can answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from perfserve_common.machine import package_version
from service.api import ServingDep
from service.protocols.codec import SPLIT_MODEL, unknown_model_message
from service.protocols.v2 import PREDICTIONS, PROBABILITIES
from service.serving import Serving

INPUT_NAME = "input-0"
"""What the metadata calls the one input (the name a request gives it is not checked)."""


class ErrorBody(BaseModel):
    error: str = Field(description="What was wrong, and what is expected.")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 stands for any number of rows.")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
NOT_READY: dict[int | str, dict[str, Any]] = {503: {"model": ErrorBody}}

v2_router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (V2)"])
v1_router = APIRouter(tags=["KServe V1"])


@v2_router.get("")
def server_metadata() -> ServerMetadata:
    """The server's name and version."""
    return ServerMetadata(name=SPLIT_MODEL, version=package_version() or "unknown", extensions=[])


@v2_router.get("/health/live")
def live() -> dict[str, bool]:
    """The process is alive and answering."""
    return {"live": True}


@v2_router.get("/health/ready", response_model=ServerReady, responses=NOT_READY)
def ready(service: ServingDep) -> ServerReady | JSONResponse:
    """Ready as `/readyz` is; 503 with the reason before that."""
    if (reason := service.not_ready()) is not None:
        return JSONResponse({"ready": False, "error": f"not ready: {reason}"}, status_code=503)
    return ServerReady(ready=True)


@v2_router.get("/models/{name}", response_model=ModelMetadata, responses=NOT_FOUND)
def model_metadata(name: str, service: ServingDep) -> ModelMetadata | JSONResponse:
    """The model's versions, input and outputs; `perfserve` is the traffic split."""
    if name not in model_names(service):
        return unknown_model(name, service)
    return describe_model(service, name)


@v2_router.get(
    "/models/{name}/ready", response_model=ModelReady, responses={**NOT_FOUND, **NOT_READY}
)
def model_ready_v2(name: str, service: ServingDep) -> ModelReady | JSONResponse:
    """200 when the model can answer, 503 when it cannot yet."""
    return _model_ready(name, service)


@v1_router.get("/")
def v1_live() -> dict[str, str]:
    """KServe V1 liveness."""
    return {"status": "alive"}


@v1_router.get("/v1/models")
def v1_models(service: ServingDep) -> dict[str, list[str]]:
    """The models served: the traffic split's (`perfserve`) and one per variant."""
    return {"models": model_names(service)}


@v1_router.get("/v1/models/{name}", response_model=ModelReady, responses={**NOT_FOUND, **NOT_READY})
def v1_model(name: str, service: ServingDep) -> ModelReady | JSONResponse:
    """200 with `ready: true` when the model can answer, 503 when it cannot yet."""
    return _model_ready(name, service)


def _model_ready(name: str, service: Serving) -> ModelReady | JSONResponse:
    if name not in model_names(service):
        return unknown_model(name, service)
    if not model_ready(service, name):
        message = f"model {name!r} is not ready"
        return JSONResponse({"name": name, "ready": False, "error": message}, status_code=503)
    return ModelReady(name=name, ready=True)


def model_names(service: Serving) -> list[str]:
    """The split's model name, then every variant's."""
    return [SPLIT_MODEL, *service.names]


def model_ready(service: Serving, name: str) -> bool:
    """Loaded and able to answer: for the split's name, every variant it may route to."""
    if not service.ready:
        return False
    names = service.split_variants() if name == SPLIT_MODEL else [name]
    return all(
        (loaded := service.variants.get(variant)) is not None and loaded.batcher.unavailable is None
        for variant in names
    )


def describe_model(service: Serving, name: str) -> ModelMetadata:
    """V2 model metadata: one input of [rows, features], the outputs the answer holds."""
    manifest = service.manifest
    variants = service.names if name == SPLIT_MODEL else [name]
    versions = sorted({manifest.variants[variant].model_version for variant in variants})
    platform = "perfserve" if name == SPLIT_MODEL else f"perfserve/{manifest.variants[name].format}"
    outputs = [TensorMetadata(name=PREDICTIONS, datatype=_label_type(service), shape=[-1])]
    if manifest.task == "classification" and manifest.classes is not None:
        outputs.append(
            TensorMetadata(name=PROBABILITIES, datatype="FP32", shape=[-1, len(manifest.classes)])
        )
    return ModelMetadata(
        name=name,
        versions=versions,
        platform=platform,
        inputs=[TensorMetadata(name=INPUT_NAME, datatype="FP32", shape=[-1, manifest.n_features])],
        outputs=outputs,
    )


def unknown_model(name: str, service: Serving) -> JSONResponse:
    """The 404 for a model name that is neither the split's nor a variant's."""
    message = unknown_model_message(name, service.names)
    return JSONResponse({"error": message}, status_code=404)


def _label_type(service: Serving) -> str:
    """The datatype of `predictions`: the classes' type for a classifier, else FP32."""
    classes = service.manifest.classes
    if service.manifest.task != "classification" or not classes:
        return "FP32"
    if all(type(label) is int for label in classes):
        return "INT64"
    return "BYTES" if any(type(label) is str for label in classes) else "FP64"
