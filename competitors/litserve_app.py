"""LitServe with its dynamic batching (up to 64 rows, 2 ms), onnxruntime, one worker.

Run: python competitors/litserve_app.py MODEL.onnx PORT
"""

from __future__ import annotations

import sys
from typing import Any

import litserve as ls
import numpy as np
import onnxruntime as ort


class OnnxAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(sys.argv[1], options)

    # LitServe reads the JSON body only for an unannotated `request` parameter.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return np.asarray(request["instances"][0], np.float32)

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels, probabilities = self.session.run(None, {"input": rows})
        return labels, probabilities

    def unbatch(self, output: tuple[np.ndarray, np.ndarray]) -> list[tuple[int, list[float]]]:
        labels, probabilities = output
        return [(int(label), p.tolist()) for label, p in zip(labels, probabilities, strict=True)]

    def encode_response(self, output: tuple[int, list[float]]) -> dict[str, Any]:
        return {"predictions": [output[0]], "probabilities": [output[1]]}


if __name__ == "__main__":
    api = OnnxAPI(max_batch_size=64, batch_timeout=0.002)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(
        host="127.0.0.1",
        port=int(sys.argv[2]),
        log_level="warning",
        generate_client_file=False,
        access_log=False,
    )
