"""A BentoML service for an ONNX classifier, with BentoML's adaptive batching.

Run from the repository root:
PERFSERVE_MODEL=model_store/onnx_int8/model.onnx \
  bentoml serve competitors.bentoml_service:OnnxService --port 8505
"""

from __future__ import annotations

import os

import bentoml
import numpy as np
import onnxruntime as ort


@bentoml.service(workers=1)
class OnnxService:
    def __init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(os.environ["PERFSERVE_MODEL"], options)

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=1000)
    def predict(self, instances: np.ndarray) -> np.ndarray:
        _, probabilities = self.session.run(None, {"input": instances.astype(np.float32)})
        return np.asarray(probabilities)
