"""Fault injection for rehearsals: one variant made slower, failing or wrong on purpose.

A team rehearses a rollback in staging, and the rollout's tests prove that its judge
catches a bad candidate, by giving one variant a fault:

    perfserve serve --allow-faults --inject onnx_int8:latency-ms=20,error-rate=0.05

- `latency-ms=N`: every batch of the variant takes N ms longer. The batcher waits it
  out as part of the batch's inference time (asyncio, so with inline inference the
  other variants keep running), so queueing, metrics and Server-Timing see a slower
  model.
- `error-rate=P`: each batch fails with probability P, as if the model raised: every
  request of that batch gets the variant's 500.
- `flip-rate=P`: each answered row is wrong with probability P: its class
  probabilities are mirrored and its label follows them (classifiers only).

Faults are refused unless `allow_faults` is set too, so a rehearsal setting copied into
a production environment fails at start-up instead of hurting users.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # settings import this module; the runtimes load only when serving
    from service.runtimes import Prediction, Runner

LIMITS: Mapping[str, tuple[float, float]] = {
    "latency-ms": (0.0, 60_000.0),
    "error-rate": (0.0, 1.0),
    "flip-rate": (0.0, 1.0),
}
"""Each kind of fault with the range its value must fall in."""

Faults = dict[str, dict[str, float]]
"""Per variant, per kind, the value set: {"onnx_int8": {"latency-ms": 20.0}}."""


class InjectedError(RuntimeError):
    """The failure `error-rate` injects; reaches clients as the variant's 500."""


def parse_faults(specs: str | Iterable[str]) -> Faults:
    """`VARIANT:KIND=VALUE` items, comma-joined or given one by one; an item without
    `VARIANT:` continues the variant before it (`a:latency-ms=5,error-rate=0.1`)."""
    parts = [specs] if isinstance(specs, str) else list(specs)
    items = [item.strip() for part in parts for item in part.split(",") if item.strip()]
    faults: Faults = {}
    variant = ""
    for item in items:
        if ":" in item:
            variant, _, item = item.partition(":")
            variant = variant.strip()
        if not variant:
            raise ValueError(f"fault {item!r} names no variant; use VARIANT:KIND=VALUE")
        kind, _, value = item.partition("=")
        faults.setdefault(variant, {})[kind.strip()] = _fault_value(kind.strip(), value)
    return faults


def _fault_value(kind: str, text: str) -> float:
    if kind not in LIMITS:
        raise ValueError(f"unknown fault {kind!r}; use one of {', '.join(LIMITS)}")
    low, high = LIMITS[kind]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise ValueError(f"fault {kind}={text!r}: give a number from {low:g} to {high:g}")
    return value


def latency_s(faults: Mapping[str, float]) -> float:
    """The latency a variant's faults add to each batch, in seconds."""
    return faults.get("latency-ms", 0.0) / 1000


class FaultyRunner:
    """A runner that fails whole batches and flips single rows at the configured rates.

    Wraps the variant's real runner, so everything downstream (batcher, metrics, the
    response) treats the outcome as the model's own."""

    def __init__(
        self,
        inner: Runner,
        faults: Mapping[str, float],
        classes: Sequence[int | float | str],
        seed: int | Sequence[int] | None = None,
    ) -> None:
        self.inner = inner
        self.error_rate = faults.get("error-rate", 0.0)
        self.flip_rate = faults.get("flip-rate", 0.0)
        self.classes = np.asarray(classes)
        self._random = np.random.default_rng(seed)

    def predict(self, rows: np.ndarray) -> Prediction:
        if self.error_rate and self._random.random() < self.error_rate:
            raise InjectedError(f"injected fault (error-rate={self.error_rate:g})")
        prediction = self.inner.predict(rows)
        if not self.flip_rate:
            return prediction
        return flip_rows(prediction, self._random.random(len(rows)) < self.flip_rate, self.classes)


def flip_rows(prediction: Prediction, rows: np.ndarray, classes: np.ndarray) -> Prediction:
    """Wrong answers for the rows where `rows` is True: probabilities mirrored (the most
    likely class becomes the least), labels the classes the mirrored probabilities pick."""
    if prediction.probabilities is None:
        raise ValueError("flip-rate needs class probabilities (a classifier)")
    probabilities = prediction.probabilities.copy()
    probabilities[rows] = probabilities[rows, ::-1]
    labels = prediction.labels.copy()
    labels[rows] = classes[probabilities[rows].argmax(axis=1)].astype(labels.dtype)
    return dataclasses.replace(prediction, labels=labels, probabilities=probabilities)
