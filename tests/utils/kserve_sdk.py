"""KServe's Python SDK (`kserve.InferenceRESTClient`) asking a server, V1 and V2, what a
KServe client would ask; prints what it answered as JSON.

The SDK pins psutil, protobuf and others older than this project's, so it runs from its
own virtualenv (`python -m venv V && V/bin/pip install kserve`), named by
`PERFSERVE_KSERVE_PYTHON`; this file imports nothing of the project's:

    V/bin/python tests/utils/kserve_sdk.py URL REQUEST.json

REQUEST.json holds `{"models": [...], "chunks": [[row, ...], ...]}`. The output has, per
protocol, the server's liveness (and readiness, V2), each model's readiness, each model's
predictions per chunk, and what the SDK raised for a model that does not exist.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from kserve import InferenceRESTClient, RESTConfig


async def ask(url: str, protocol: str, models: list[str], chunks: list[Any]) -> dict[str, Any]:
    client = InferenceRESTClient(RESTConfig(protocol=protocol))
    try:
        answers: dict[str, Any] = {"live": await client.is_server_live(url)}
        if protocol == "v2":
            answers["ready"] = await client.is_server_ready(url)
        answers["models_ready"] = {m: await client.is_model_ready(url, m) for m in models}
        answers["predictions"] = {
            model: [await predict(client, url, protocol, model, rows) for rows in chunks]
            for model in models
        }
        answers["unknown_model"] = await refusal(client, url)
        return answers
    finally:
        await client.close()


async def predict(
    client: InferenceRESTClient, url: str, protocol: str, model: str, rows: list[list[float]]
) -> list[Any]:
    if protocol == "v1":
        answer = await client.infer(url, {"instances": rows}, model_name=model)
        predictions: list[Any] = answer["predictions"]
        return predictions
    tensor = {
        "name": "input-0",
        "shape": [len(rows), len(rows[0])],
        "datatype": "FP64",
        "data": [value for row in rows for value in row],
    }
    response = await client.infer(url, {"inputs": [tensor]}, model_name=model)
    outputs = {output.name: output.data for output in response.outputs}
    return list(outputs["predictions"])


async def refusal(client: InferenceRESTClient, url: str) -> str:
    """What the SDK says when asked for a model the server does not have."""
    try:
        await client.infer(url, {"instances": [[0.0]]}, model_name="no-such-model")
    except Exception as error:  # the SDK's own error type, whatever its version raises
        return str(error)
    return "no error"


async def main(url: str, request_file: str) -> None:
    with open(request_file) as file:
        request = json.load(file)
    models, chunks = request["models"], request["chunks"]
    result = {p: await ask(url, p, models, chunks) for p in ("v1", "v2")}
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
