"""`perfserve robustness`: every variant under every condition, then what a reader needs
from it: degradation curves, the most sensitive features, and where variants part ways."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from perfserve.benchmarks.robustness.evaluate import Outcome, Scoring, evaluate, quality_name
from perfserve.benchmarks.robustness.perturbations import conditions, training_statistics
from service.guards import FeatureRangeGuard
from service.runtimes import Runner, open_variant
from service.store import Manifest, load_holdout

if TYPE_CHECKING:
    from perfserve.benchmarks.offline.bench import VariantSpec

SENSITIVE_SHOWN = 5

Say = Callable[[str], None]


class Sensitivity(BaseModel):
    """A feature and how much quality falls when it alone is perturbed."""

    variant: str
    perturbation: str
    feature: str
    drop: float
    """Clean quality minus perturbed (for RMSE: perturbed minus clean), so higher is worse."""


class Divergence(BaseModel):
    """A condition under which a variant's quality differs from the reference's by more
    than chance (the paired gap's 95% interval excludes 0)."""

    variant: str
    condition: str
    gap: float
    low: float
    high: float
    agreement: float


class RobustnessSummary(BaseModel):
    model_name: str
    task: str
    metric: str
    reference: str
    holdout_rows: int
    statistics_source: str
    caveat: str | None
    guard_factor: float
    seed: int
    outcomes: list[Outcome]
    sensitivity: list[Sensitivity]
    divergences: list[Divergence]
    elapsed_seconds: float

    def curve(self, variant: str, perturbation: str) -> list[Outcome]:
        """The variant's outcomes on all-feature conditions of one perturbation, by size."""
        rows = [
            o
            for o in self.outcomes
            if o.variant == variant and o.perturbation == perturbation and o.feature is None
        ]
        return sorted(rows, key=lambda o: o.size)

    def quality_under(self, variant: str, key: str) -> Outcome | None:
        """The outcome of a condition named as in requirements: "noise:0.5", "clean"."""
        for o in self.outcomes:
            name = "clean" if o.perturbation == "clean" else f"{o.perturbation}:{o.label}"
            if o.variant == variant and o.feature is None and name == key:
                return o
        return None


def run_robustness(
    store: Path,
    manifest: Manifest,
    specs: list[VariantSpec],
    perturbations: list[str],
    guard_factor: float,
    k_values: list[int],
    seed: int = 0,
    say: Say | None = None,
    per_feature: bool = True,
) -> RobustnessSummary:
    """Score the variants (the reference always, for agreement) on each condition;
    `per_feature` False leaves out the one-feature conditions (no sensitivity ranking)."""
    report = say or _stderr
    started = time.perf_counter()
    holdout = load_holdout(store, manifest)
    stats = training_statistics(manifest, holdout)
    guard = FeatureRangeGuard(manifest, guard_factor)
    chosen = conditions(perturbations, manifest, stats, guard, k_values)
    chosen = [c for c in chosen if per_feature or c.feature is None]
    runners = _runners(store, manifest, specs)
    scoring = Scoring(manifest.task, holdout, manifest.reference, guard, seed)
    ranking = Scoring(manifest.task, holdout, manifest.reference, guard, seed, False)
    report(f"{len(chosen)} conditions x {len(runners)} variants on {len(holdout.target)} rows")
    outcomes = evaluate(scoring, runners, None)
    for condition in chosen:
        outcomes += evaluate(ranking if condition.feature else scoring, runners, condition)
    shown = {spec.name for spec in specs}
    outcomes = [o for o in outcomes if o.variant in shown]
    metric = quality_name(manifest.task)
    return RobustnessSummary(
        model_name=manifest.model_name,
        task=manifest.task,
        metric=metric,
        reference=manifest.reference,
        holdout_rows=len(holdout.target),
        statistics_source=stats.source,
        caveat=stats.caveat,
        guard_factor=guard_factor,
        seed=seed,
        outcomes=outcomes,
        sensitivity=_sensitivity(outcomes, metric),
        divergences=_divergences(outcomes, manifest.reference),
        elapsed_seconds=time.perf_counter() - started,
    )


def _runners(store: Path, manifest: Manifest, specs: list[VariantSpec]) -> dict[str, Runner]:
    runners = {spec.name: open_variant(spec.store, spec.info, manifest.task) for spec in specs}
    if manifest.reference not in runners:
        info = manifest.variants[manifest.reference]
        runners[manifest.reference] = open_variant(store, info, manifest.task)
    return runners


def _sensitivity(outcomes: list[Outcome], metric: str) -> list[Sensitivity]:
    """Per variant and per-feature perturbation, features ranked by the quality they cost."""
    clean = {o.variant: o.quality.value for o in outcomes if o.perturbation == "clean"}
    sign = -1.0 if metric == "rmse" else 1.0
    found = [
        Sensitivity(
            variant=o.variant,
            perturbation=f"{o.perturbation}:{o.label}",
            feature=o.feature,
            drop=sign * (clean[o.variant] - o.quality.value),
        )
        for o in outcomes
        if o.feature is not None
    ]
    return sorted(found, key=lambda s: (s.variant, s.perturbation, -s.drop))


def _divergences(outcomes: list[Outcome], reference: str) -> list[Divergence]:
    return [
        Divergence(
            variant=o.variant,
            condition="clean" if o.perturbation == "clean" else f"{o.perturbation}:{o.label}",
            gap=o.gap.value,
            low=o.gap.low,
            high=o.gap.high,
            agreement=o.agreement.value,
        )
        for o in outcomes
        if o.variant != reference and o.feature is None and (o.gap.low > 0 or o.gap.high < 0)
    ]


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
