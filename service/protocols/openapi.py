"""The V2 infer and V1 predict routes in the OpenAPI document.

Like `/predict`, they are served by the raw ASGI hot path, which FastAPI never sees;
they are described here from the shapes the codecs read and write."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field

from service.openapi import operation
from service.protocols.api import ErrorBody

Output = Literal["predictions", "probabilities"]


class V2InputTensor(BaseModel):
    name: str = Field(description="Any name: the model has one input.")
    shape: list[int] = Field(min_length=2, max_length=2, description="[rows, features]")
    datatype: Literal["FP32", "FP64"]
    data: list[float] | list[list[float]] = Field(
        description="rows times features numbers, flat in row-major order or nested by row."
    )
    parameters: dict[str, Any] = Field(default_factory=dict)


class V2RequestedOutput(BaseModel):
    name: Output
    parameters: dict[str, Any] = Field(default_factory=dict)


class V2InferRequest(BaseModel):
    id: str | None = Field(None, description="Echoed in the answer.")
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[V2InputTensor] = Field(min_length=1, max_length=1)
    outputs: list[V2RequestedOutput] | None = Field(
        None, description="The outputs to return (default: all the model's metadata names)."
    )


class V2OutputTensor(BaseModel):
    name: Output
    datatype: str
    shape: list[int]
    data: list[int | float | str]


class V2InferResponse(BaseModel):
    model_name: str = Field(description="The model asked for (`perfserve`: the traffic split).")
    model_version: str
    id: str | None = None
    parameters: dict[str, str] = Field(description="`variant`: the variant that answered.")
    outputs: list[V2OutputTensor]


class V1PredictRequest(BaseModel):
    instances: list[list[float]] = Field(
        min_length=1, description="Rows of feature values, each as long as the model's features."
    )


class V1PredictResponse(BaseModel):
    predictions: list[int | float | str] = Field(description="One label (or value) per row.")


MODEL = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "`perfserve` follows the traffic split (`X-User-Id` sticks, as on "
    "`/predict`); a variant's name serves that variant.",
}
USER = {
    "name": "X-User-Id",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "Sticky assignment: the same user gets the same variant.",
}


def document_protocols(api: FastAPI) -> None:
    """Add `POST /v2/models/{name}/infer` and `POST /v1/models/{name}:predict`."""
    schema = api.openapi()
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    models = (V2InferRequest, V2InferResponse, V1PredictRequest, V1PredictResponse, ErrorBody)
    for model in models:
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(found.pop("$defs", {}))
        components[model.__name__] = found
    paths = schema["paths"]
    v2 = operation(
        "Infer (Open Inference Protocol)",
        [MODEL, USER],
        ("V2InferRequest", "V2InferResponse", "ErrorBody"),
    )
    v1 = operation(
        "Predict (KServe V1)",
        [MODEL, USER],
        ("V1PredictRequest", "V1PredictResponse", "ErrorBody"),
    )
    paths["/v2/models/{name}/infer"] = {"post": {**v2, "tags": ["Open Inference Protocol (V2)"]}}
    paths["/v1/models/{name}:predict"] = {"post": {**v1, "tags": ["KServe V1"]}}
