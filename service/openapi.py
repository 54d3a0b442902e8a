"""The prediction endpoints in the OpenAPI document.

They are served by the raw ASGI hot path (`predict.py`), which FastAPI never sees, so
they are described here, from the same request and response shapes a client sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field


class PredictRequest(BaseModel):
    instances: list[list[float]] = Field(
        min_length=1, description="Rows of feature values, each as long as the model's features."
    )


class PredictResponse(BaseModel):
    variant: str = Field(description="The variant that answered (also in `X-Variant`).")
    model_version: str
    predictions: list[int | float | str] = Field(description="One label (or value) per row.")
    probabilities: list[list[float]] | None = Field(
        description="Class probabilities per row, in the order of `GET /models` `classes`."
    )


class ErrorResponse(BaseModel):
    detail: str = Field(description="What was wrong, and what is expected.")


HEADERS = [
    {
        "name": "X-Variant",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "Serve this variant instead of following the traffic split.",
    },
    {
        "name": "X-User-Id",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "Sticky assignment: the same user gets the same variant.",
    },
]
ERRORS = {
    "400": "Malformed JSON or empty body.",
    "404": "Unknown variant.",
    "408": "The body did not arrive within the body timeout; the connection is closed.",
    "413": "Too many rows or body too large.",
    "415": "A Content-Type other than application/json.",
    "422": "Rows of the wrong width, non-numbers or values out of float32 range.",
    "500": "The model failed on this request's batch; the details are in the server's log.",
    "503": "Queue full, variant unavailable, not ready or shutting down; see `Retry-After`.",
    "504": "Still queued when the request timeout passed.",
}


def document_predict(api: FastAPI) -> None:
    """Add `POST /predict` and `POST /models/{variant}/predict` to the app's OpenAPI."""
    schema = api.openapi()
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (PredictRequest, PredictResponse, ErrorResponse):
        components[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    schema["paths"]["/predict"] = {"post": operation("Predict with the traffic split", HEADERS)}
    variant = {"name": "variant", "in": "path", "required": True, "schema": {"type": "string"}}
    schema["paths"]["/models/{variant}/predict"] = {
        "post": operation("Predict with one variant", [variant])
    }


def operation(
    summary: str,
    parameters: list[dict[str, Any]],
    bodies: tuple[str, str, str] = ("PredictRequest", "PredictResponse", "ErrorResponse"),
) -> dict[str, Any]:
    """A prediction route's OpenAPI operation: `bodies` names its request, answer and
    error schemas under `components`; the statuses are those of the one prediction path."""
    request, answer, error = bodies

    def content(name: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}

    responses: dict[str, Any] = {
        "200": {
            "description": "Answers, with `Server-Timing: queue;dur=…, infer;dur=…, total;dur=…`.",
            "content": content(answer),
        }
    }
    for status, description in ERRORS.items():
        responses[status] = {"description": description, "content": content(error)}
    return {
        "summary": summary,
        "parameters": parameters,
        "requestBody": {"required": True, "content": content(request)},
        "responses": responses,
    }
