"""How often the rollout judge fails a healthy candidate, and how often it catches a bad one.

    python -m perfserve.benchmarks.judge.judge_noise           # resample the recorded fixture
    python -m perfserve.benchmarks.judge.judge_noise --record  # re-record it from a server

Each trial draws one analysis window from samples recorded on a real `perfserve serve`
(perfserve/benchmarks/judge/judge_record.py): two identical variants for latency and status,
a healthy conversion (sklearn_fp32 vs onnx_int8) for shadow scores, so the first row is
a healthy fp32 -> int8 candidate. Windows hold the samples
`required_samples` asks for (times `--scale`, 1 by default: the least data on which the
judge decides, where its power is the lowest). Faults are injected into the candidate's
draw: extra latency, a wider tail with the median unchanged, errors, flipped predictions.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import stats

from perfserve.benchmarks.judge.judge_record import (
    BASELINE,
    LATENCY_FILE,
    SCORES_FILE,
    TWIN,
    record,
)
from service.rollout.judge import (
    JudgePolicy,
    ShadowWindow,
    VariantWindow,
    combine,
    judge,
    required_samples,
)

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Samples:
    """One variant's recorded answers: server seconds and status, in sending order."""

    seconds: np.ndarray
    status: np.ndarray


@dataclass(frozen=True)
class Fixture:
    baseline: Samples
    candidate: Samples
    baseline_scores: np.ndarray
    candidate_scores: np.ndarray


@dataclass(frozen=True)
class Draw:
    """One trial's candidate window before a fault touches it."""

    seconds: np.ndarray
    status: np.ndarray
    baseline_scores: np.ndarray
    candidate_scores: np.ndarray


Fault = Callable[[Draw, np.random.Generator], Draw]


def load_fixture(data: Path) -> Fixture:
    with (data / LATENCY_FILE).open() as file:
        rows = list(csv.DictReader(file))
    by_variant = {
        name: Samples(
            np.array([float(r["server_ms"]) / 1e3 for r in rows if r["variant"] == name]),
            np.array([int(r["status"]) for r in rows if r["variant"] == name]),
        )
        for name in (BASELINE, TWIN)
    }
    with (data / SCORES_FILE).open() as file:
        scores = np.array(
            [
                [float(r["baseline_score"]), float(r["candidate_score"])]
                for r in csv.DictReader(file)
            ]
        )
    return Fixture(by_variant[BASELINE], by_variant[TWIN], scores[:, 0], scores[:, 1])


def window(seconds: np.ndarray, status: np.ndarray) -> VariantWindow:
    return VariantWindow(
        latencies_s=seconds[status == 200].tolist(),
        requests=int(status.size),
        errors=int(np.isin(status, (500, 504)).sum()),
        shed=int((status == 503).sum()),
    )


def shadow(draw: Draw) -> ShadowWindow:
    disagreed = int(((draw.baseline_scores >= 0.5) != (draw.candidate_scores >= 0.5)).sum())
    return ShadowWindow(
        compared=int(draw.baseline_scores.size),
        disagreed=disagreed,
        baseline_scores=draw.baseline_scores.tolist(),
        candidate_scores=draw.candidate_scores.tolist(),
    )


@dataclass(frozen=True)
class Sizes:
    """One window's shape: the candidate's requests, shadow comparisons, and how many
    times the candidate's requests the baseline serves (1: a 50% step, 19: a 5% step)."""

    requests: int
    comparisons: int
    baseline_factor: int


def window_sizes(policy: JudgePolicy, scale: int, baseline_factor: int) -> Sizes:
    """`scale` times the least data on which every gate decides."""
    needed = required_samples(policy)
    requests = max(needed["latency"], needed["errors"], needed["slo"])
    return Sizes(scale * requests, scale * needed["predictions"], baseline_factor)


def trial(
    fixture: Fixture, policy: JudgePolicy, sizes: Sizes, fault: Fault, rng: np.random.Generator
) -> list[str]:
    """Failed gates of one judgement on fresh bootstrap windows (empty: not failed)."""
    b_index = rng.integers(0, fixture.baseline.seconds.size, sizes.requests * sizes.baseline_factor)
    c_index = rng.integers(0, fixture.candidate.seconds.size, sizes.requests)
    rows = rng.integers(0, fixture.baseline_scores.size, sizes.comparisons)
    draw = fault(
        Draw(
            fixture.candidate.seconds[c_index],
            fixture.candidate.status[c_index],
            fixture.baseline_scores[rows],
            fixture.candidate_scores[rows],
        ),
        rng,
    )
    baseline = window(fixture.baseline.seconds[b_index], fixture.baseline.status[b_index])
    candidate = window(draw.seconds, draw.status)
    verdicts = judge(baseline, candidate, shadow(draw), policy)
    if combine(verdicts) == "inconclusive":
        raise RuntimeError(f"a window of the required size was inconclusive: {verdicts}")
    return [verdict.gate for verdict in verdicts if verdict.outcome == "fail"]


def identical(draw: Draw, rng: np.random.Generator) -> Draw:
    return draw


def added_latency(seconds: float) -> Fault:
    def fault(draw: Draw, rng: np.random.Generator) -> Draw:
        return replace(draw, seconds=draw.seconds + seconds)

    return fault


def slower(factor: float) -> Fault:
    def fault(draw: Draw, rng: np.random.Generator) -> Draw:
        return replace(draw, seconds=draw.seconds * factor)

    return fault


def wider_tail(factor: float) -> Fault:
    """Stretch every answer above the median away from it: median unchanged, tail longer."""

    def fault(draw: Draw, rng: np.random.Generator) -> Draw:
        median = float(np.median(draw.seconds))
        excess = np.maximum(draw.seconds - median, 0.0)
        return replace(draw, seconds=draw.seconds + (factor - 1.0) * excess)

    return fault


def errors(rate: float) -> Fault:
    """Failed requests on top of the answered ones, a share `rate` of all requests, so the
    latency gates keep their answers and only the errors gate sees a change."""

    def fault(draw: Draw, rng: np.random.Generator) -> Draw:
        failed = int(rng.binomial(draw.status.size, rate / (1.0 - rate)))
        return replace(
            draw,
            seconds=np.concatenate([draw.seconds, np.full(failed, np.nan)]),
            status=np.concatenate([draw.status, np.full(failed, 500)]),
        )

    return fault


def flips(rate: float) -> Fault:
    """The candidate answers the other class on a share of rows (score mirrored)."""

    def fault(draw: Draw, rng: np.random.Generator) -> Draw:
        flipped = rng.random(draw.candidate_scores.size) < rate
        scores = np.where(flipped, 1.0 - draw.candidate_scores, draw.candidate_scores)
        return replace(draw, candidate_scores=scores)

    return fault


def scenarios(fixture: Fixture) -> list[tuple[str, str | None, Fault]]:
    """(name, the gate that should fail or None, fault)."""
    median_ms = float(np.median(fixture.baseline.seconds)) * 1e3
    return [
        ("healthy int8 (twin latency, fp32 -> int8 scores)", None, identical),
        (f"+1 ms ({1 / median_ms:.0%} of the median)", "latency", added_latency(0.001)),
        ("every answer x1.25", "latency", slower(1.25)),
        ("every answer x1.5", "latency", slower(1.5)),
        ("tail above the median x2, same median", "latency", wider_tail(2.0)),
        ("2% errors (baseline 0)", "errors", errors(0.02)),
        ("2% flipped predictions", "predictions", flips(0.02)),
        ("3% flipped predictions", "predictions", flips(0.03)),
    ]


def clopper_pearson_upper(failures: int, trials: int, confidence: float = 0.95) -> float:
    if failures >= trials:
        return 1.0
    return float(stats.beta.ppf(confidence, failures + 1, trials - failures))


def run(
    fixture: Fixture,
    policy: JudgePolicy,
    trials: int,
    factors: Sequence[int],
    scale: int,
    seed: int,
) -> Iterator[str]:
    """The table, line by line as each row is measured."""
    shapes = [window_sizes(policy, scale, factor) for factor in factors]
    medians = [float(np.median(v.seconds)) * 1e3 for v in (fixture.baseline, fixture.candidate)]
    lines = [
        f"windows: {shapes[0].requests} candidate requests, {shapes[0].comparisons} shadow "
        f"comparisons; {trials} trials per cell; medians {medians[0]:.3f} ms (baseline) "
        f"and {medians[1]:.3f} ms (twin)",
        "",
        "| candidate | gate expected | "
        + " | ".join(f"fail rate, baseline {f}x" for f in factors)
        + " |",
        "| --- | --- |" + " --- |" * len(factors),
    ]
    yield from lines
    for name, gate, fault in scenarios(fixture):
        cells = []
        for sizes in shapes:
            rng = np.random.default_rng(seed)
            failed = [trial(fixture, policy, sizes, fault, rng) for _ in range(trials)]
            count = sum(1 for gates in failed if gates)
            if gate is None:
                cells.append(
                    f"{count}/{trials} = {count / trials:.2%} "
                    f"(95% upper {clopper_pearson_upper(count, trials):.2%})"
                )
            else:
                right = sum(1 for gates in failed if gate in gates)
                cells.append(f"{count / trials:.1%} (by {gate}: {right / trials:.1%})")
        yield f"| {name} | {gate or 'none'} | " + " | ".join(cells) + " |"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perfserve.benchmarks.judge.judge_noise",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--data", type=Path, default=DATA, help="fixture folder")
    parser.add_argument("--trials", type=_positive, default=1000, help="windows per cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--baseline-factors",
        type=_factors,
        default=(1, 19),
        help="baseline sizes as multiples of the candidate's (1: a 50%% step, 19: a 5%% step)",
    )
    parser.add_argument(
        "--scale", type=_positive, default=1, help="windows this many times the required size"
    )
    parser.add_argument("--record", action="store_true", help="record the fixture anew")
    parser.add_argument("--requests", type=_positive, default=3000, help="per variant, --record")
    parser.add_argument("--concurrency", type=_positive, default=8, help="clients, --record")
    parser.add_argument("--server-cpus", default="0", help="CPU list of the server, --record")
    args = parser.parse_args(argv)
    if args.record:
        record(args.data, args.requests, args.concurrency, args.server_cpus or None)
        print(f"recorded {args.data / LATENCY_FILE} and {args.data / SCORES_FILE}")
        return 0
    policy = JudgePolicy()
    fixture = load_fixture(args.data)
    for line in run(fixture, policy, args.trials, args.baseline_factors, args.scale, args.seed):
        print(line, flush=True)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _factors(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"each at least 1, got {text!r}")
    return values


if __name__ == "__main__":
    sys.exit(main())
