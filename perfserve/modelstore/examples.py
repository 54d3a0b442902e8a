"""The example models `perfserve build --example NAME` trains, from data scikit-learn ships
(nothing is downloaded).

Two, because the right variant depends on the model: `small` (breast cancer, 30 features,
a 64-32 MLP) is so small that per-call overhead dominates and static int8 cannot pay at
small batches; `wide` (handwritten digits, 64 features, 10 classes, a 1024-1024 MLP) spends
its time in matrix products, where int8 arithmetic (VNNI on x86) can.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sklearn.datasets import load_breast_cancer, load_digits


@dataclass(frozen=True)
class Example:
    model_name: str
    load: Callable[[], Any]
    """Returns a scikit-learn Bunch with `data`, `target` and `feature_names`."""
    hidden_layers: tuple[int, ...]
    max_iter: int


EXAMPLES: dict[str, Example] = {
    "small": Example("breast-cancer-mlp", load_breast_cancer, (64, 32), 800),
    "wide": Example("digits-wide-mlp", load_digits, (1024, 1024), 60),
}
DEFAULT_EXAMPLE = "small"
