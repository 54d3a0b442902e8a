"""The obvious FastAPI server: a pydantic body, onnxruntime on every request, no batching.

Run: PERFSERVE_MODEL=model_store/onnx_int8/model.onnx \
  uvicorn competitors.naive_fastapi:app
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(os.environ["PERFSERVE_MODEL"], options)
app = FastAPI()


class Request(BaseModel):
    instances: list[list[float]]


@app.post("/predict")
async def predict(request: Request) -> dict[str, list[int] | list[list[float]]]:
    labels, probabilities = session.run(None, {"input": np.asarray(request.instances, np.float32)})
    return {"predictions": labels.tolist(), "probabilities": probabilities.tolist()}
