"""Score every variant on every perturbed copy of the hold-out: quality, agreement with the
reference variant, and the quality gap to the reference, each with a bootstrap 95% interval
over the hold-out rows.

All variants see the same perturbed rows (one seeded draw per condition), so their
differences are paired row by row and the gap's interval is narrower than the two
qualities' intervals would suggest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from perfserve.benchmarks.figures import headline_metric
from perfserve.benchmarks.robustness.perturbations import Condition
from perfserve.benchmarks.statistics import Interval, bootstrap_mean_ci
from service.guards import FeatureRangeGuard
from service.quality import Task, agreeing_rows
from service.runtimes import Runner
from service.store import Dataset


class Estimate(BaseModel):
    """A point estimate with its 95% bootstrap interval."""

    value: float
    low: float
    high: float


class Outcome(BaseModel):
    """One variant under one condition."""

    variant: str
    perturbation: str
    label: str
    size: float
    feature: str | None
    quality: Estimate
    """Accuracy (classifier) or RMSE (regressor) of the model's answers, refused rows included."""
    agreement: Estimate
    """Share of rows answered like the reference variant on the same perturbed rows."""
    gap: Estimate
    """Quality minus the reference's on the same rows (for RMSE: of the squared errors' mean)."""
    refused_share: float
    """Rows the service would refuse with 422 (the range guard) instead of answering."""


@dataclass(frozen=True)
class Scoring:
    task: Task
    holdout: Dataset
    reference: str
    guard: FeatureRangeGuard
    seed: int = 0
    intervals: bool = True
    """Per-feature conditions (sensitivity) skip the intervals: one point each is enough to
    rank features, and the bootstrap is most of the run's time."""


def evaluate(
    scoring: Scoring, runners: dict[str, Runner], condition: Condition | None
) -> list[Outcome]:
    """Every variant on one condition; None is the clean hold-out."""
    rng = np.random.default_rng(scoring.seed)
    clean = scoring.holdout.features.astype(np.float64)
    rows = clean if condition is None else condition.apply(clean, rng)
    with np.errstate(over="ignore", invalid="ignore"):
        served = rows.astype(np.float32)
    bad = scoring.guard.bad_rows(served)
    refused = 0.0 if bad is None else float(bad.mean())
    answers = {name: runner.predict(served).labels for name, runner in runners.items()}
    reference = answers[scoring.reference]
    reference_scores = row_scores(scoring.task, scoring.holdout.target, reference)
    outcomes = []
    for name, labels in answers.items():
        losses = row_scores(scoring.task, scoring.holdout.target, labels)
        agrees = agreeing_rows(reference, labels, scoring.task).astype(float)
        outcomes.append(
            Outcome(
                variant=name,
                perturbation="clean" if condition is None else condition.perturbation,
                label="" if condition is None else condition.label,
                size=0.0 if condition is None else condition.size,
                feature=None if condition is None else condition.feature,
                quality=_quality(scoring, losses),
                agreement=_estimate(scoring, agrees),
                gap=_gap(scoring, losses, reference_scores),
                refused_share=refused,
            )
        )
    return outcomes


def row_scores(task: Task, truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row: 1 for a right label (so the mean is accuracy), or the squared error."""
    if task == "regression":
        errors: np.ndarray = (labels.astype(float) - truth.astype(float)) ** 2
        return errors
    right: np.ndarray = (labels == truth).astype(float)
    return right


def quality_name(task: Task) -> str:
    return headline_metric(task)


def _estimate(scoring: Scoring, values: np.ndarray) -> Estimate:
    if not scoring.intervals:
        mean = float(np.mean(values))
        return Estimate(value=mean, low=mean, high=mean)
    interval: Interval = bootstrap_mean_ci(values, seed=scoring.seed)
    return Estimate(value=interval.estimate, low=interval.low, high=interval.high)


def _quality(scoring: Scoring, losses: np.ndarray) -> Estimate:
    """Accuracy is a mean of per-row hits; RMSE the root of a mean, so the interval of the
    mean squared error maps through the (monotone) square root."""
    estimate = _estimate(scoring, losses)
    if scoring.task != "regression":
        return estimate
    return Estimate(
        value=float(np.sqrt(estimate.value)),
        low=float(np.sqrt(max(estimate.low, 0.0))),
        high=float(np.sqrt(estimate.high)),
    )


def _gap(scoring: Scoring, losses: np.ndarray, reference: np.ndarray) -> Estimate:
    return _estimate(scoring, losses - reference)
