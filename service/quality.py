"""Model quality on a hold-out set, computed the same way by the store and the benchmark."""

from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn import metrics

Task = Literal["classification", "regression"]


def quality_metrics(
    task: Task,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    probabilities: np.ndarray | None = None,
    classes: np.ndarray | None = None,
) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and ROC-AUC for a classifier; MSE, RMSE, MAE, R² else.

    Binary problems score the second class as positive; multi-class problems use macro
    averages (and one-vs-rest AUC), so every class counts the same whatever its size.
    """
    if task == "regression":
        mse = float(metrics.mean_squared_error(y_true, y_pred))
        return {
            "mse": mse,
            "rmse": mse**0.5,
            "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
            "r2": float(metrics.r2_score(y_true, y_pred)),
        }
    labels = classes if classes is not None else np.unique(y_true)
    binary = len(labels) == 2
    average = "binary" if binary else "macro"
    pos_label = labels[1] if binary else 1
    scores = {
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "precision": float(
            metrics.precision_score(
                y_true, y_pred, average=average, pos_label=pos_label, zero_division=0
            )
        ),
        "recall": float(
            metrics.recall_score(
                y_true, y_pred, average=average, pos_label=pos_label, zero_division=0
            )
        ),
        "f1": float(
            metrics.f1_score(y_true, y_pred, average=average, pos_label=pos_label, zero_division=0)
        ),
    }
    if probabilities is not None and len(np.unique(y_true)) > 1:
        if binary:
            auc = metrics.roc_auc_score(y_true == labels[1], probabilities[:, 1])
        else:
            auc = metrics.roc_auc_score(
                y_true, probabilities, multi_class="ovr", average="macro", labels=labels
            )
        scores["roc_auc"] = float(auc)
    return scores


def agreement(reference: np.ndarray, candidate: np.ndarray, task: Task) -> float:
    """Share of rows where two variants give the same answer (regression: within 1e-3 relative)."""
    return float(np.mean(agreeing_rows(reference, candidate, task)))


def agreeing_rows(reference: np.ndarray, candidate: np.ndarray, task: Task) -> np.ndarray:
    """Per row, whether two variants give the same answer: what `agreement` averages, kept
    row by row where an interval over the rows is wanted."""
    if task == "regression":
        close: np.ndarray = np.isclose(reference, candidate, rtol=1e-3, atol=1e-6)
        return close
    same: np.ndarray = np.asarray(reference == candidate)
    return same
