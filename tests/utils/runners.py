"""Runners that fail the way real models can, for tests of the batcher and the service."""

from __future__ import annotations

import numpy as np

from service.runtimes import Prediction, Runner


class ScalarOutputRunner:
    """A model whose first answer has a malformed shape (one probability for the whole
    batch): the model call succeeds, and splitting its answer between requests fails."""

    def __init__(self, inner: Runner) -> None:
        self.inner = inner
        self.calls = 0

    def predict(self, rows: np.ndarray) -> Prediction:
        self.calls += 1
        answer = self.inner.predict(rows)
        if self.calls == 1:
            return Prediction(answer.labels, np.float32(0.5))  # type: ignore[arg-type]
        return answer
