"""`perfserve capacity`: how many replicas a peak load needs, and what waiting it brings.

Each replica is one server of an M/M/c queue: requests arrive at the design rate
(peak QPS x safety factor), a replica serves `service_rate` requests per second (measured
by `bench`, or the knee of a `sweep`: the highest rate that held the p99 SLO). Erlang C
gives the chance a request waits and the mean wait; Little's law turns rates and times
into how many requests are in flight. Batching makes real service times less random than
M/M/c assumes, so its waits are on the pessimistic side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from perfserve.benchmarks.figures import figures_from_summary
from perfserve.benchmarks.offline.summary_types import BenchSummary
from perfserve_common.queueing import erlang_c

TAIL = 0.99


@dataclass(frozen=True)
class ReplicaFigures:
    """What capacity planning needs of one variant."""

    variant: str
    service_rate: float
    """Requests per second one replica serves."""
    source: str
    load_memory_bytes: int | None = None
    peak_inference_bytes: int | None = None
    file_size_bytes: int | None = None


@dataclass(frozen=True)
class Plan:
    variant: str
    source: str
    design_qps: float
    service_rate: float
    replicas: int
    utilization: float
    wait_probability: float
    """Erlang C: the share of requests that queue at all."""
    mean_wait_s: float
    p99_wait_s: float
    mean_response_s: float
    in_flight: float
    """Little's law L = lambda W: requests inside the fleet on average."""
    queued: float
    """Little's law Lq = lambda Wq: requests waiting on average."""
    max_concurrent_per_replica: int | None
    """Inferences one replica can run at once within the memory budget (None: no budget)."""
    replicas_in_storage: int | None


def replicas_for(design_qps: float, service_rate: float, target_utilization: float) -> int:
    """Fewest replicas that keep utilization at or under the target."""
    needed = design_qps / (service_rate * target_utilization)
    return max(1, math.ceil(needed - 1e-9))


def plan_capacity(
    figures: ReplicaFigures,
    peak_qps: float,
    safety_factor: float = 1.5,
    target_utilization: float = 0.7,
    memory_budget_bytes: int | None = None,
    storage_budget_bytes: int | None = None,
) -> Plan:
    if peak_qps <= 0 or safety_factor < 1 or not 0 < target_utilization < 1:
        raise ValueError("need peak QPS > 0, safety factor >= 1, 0 < target utilization < 1")
    if figures.service_rate <= 0:
        raise ValueError(f"{figures.variant}: service rate must be positive")
    design = peak_qps * safety_factor
    mu = figures.service_rate
    replicas = replicas_for(design, mu, target_utilization)
    wait_probability = erlang_c(replicas, design / mu)
    spare = replicas * mu - design  # > 0 because utilization < 1
    mean_wait = wait_probability / spare
    # P(wait > t) = C exp(-(c mu - lambda) t)  =>  the 99th percentile of the wait.
    p99_wait = (
        math.log(wait_probability / (1 - TAIL)) / spare if wait_probability > 1 - TAIL else 0.0
    )
    mean_response = mean_wait + 1 / mu
    return Plan(
        variant=figures.variant,
        source=figures.source,
        design_qps=design,
        service_rate=mu,
        replicas=replicas,
        utilization=design / (replicas * mu),
        wait_probability=wait_probability,
        mean_wait_s=mean_wait,
        p99_wait_s=p99_wait,
        mean_response_s=mean_response,
        in_flight=design * mean_response,
        queued=design * mean_wait,
        max_concurrent_per_replica=_concurrency(figures, memory_budget_bytes),
        replicas_in_storage=_storage(figures, storage_budget_bytes),
    )


def _concurrency(figures: ReplicaFigures, budget: int | None) -> int | None:
    if budget is None or figures.load_memory_bytes is None or figures.peak_inference_bytes is None:
        return None
    spare = budget - figures.load_memory_bytes
    if spare <= 0:
        return 0
    return spare // max(1, figures.peak_inference_bytes)


def _storage(figures: ReplicaFigures, budget: int | None) -> int | None:
    if budget is None or figures.file_size_bytes is None:
        return None
    return budget // max(1, figures.file_size_bytes)


def render_plans(plans: list[Plan], peak_qps: float, safety_factor: float, target: float) -> str:
    lines = [
        f"peak {peak_qps:g} QPS x safety {safety_factor:g} = design load "
        f"{peak_qps * safety_factor:g} QPS; target utilization {target:.0%}; "
        "M/M/c (Erlang C) per replica",
        f"{'variant':<16}{'req/s/replica':>14}{'replicas':>9}{'util':>7}{'P(wait)':>9}"
        f"{'mean wait':>11}{'p99 wait':>10}{'in flight':>10}{'mem conc.':>10}{'in storage':>11}",
    ]
    for p in plans:
        lines.append(
            f"{p.variant:<16}{p.service_rate:>14,.0f}{p.replicas:>9}{p.utilization:>7.0%}"
            f"{p.wait_probability:>9.3f}{p.mean_wait_s * 1000:>9.3f}ms{p.p99_wait_s * 1000:>8.3f}ms"
            f"{p.in_flight:>10.2f}{_maybe(p.max_concurrent_per_replica):>10}"
            f"{_maybe(p.replicas_in_storage):>11}"
        )
    lines += sorted({f"  {p.variant}: service rate from {p.source}" for p in plans})
    return "\n".join(lines)


def _maybe(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def from_bench(
    summary: BenchSummary,
    batch_size: int | None,
    rows_per_request: int,
    overhead_s: float | dict[str, float] = 0.0,
    overhead_source: str = "given",
) -> list[ReplicaFigures]:
    """Service rates from a bench: the model time of a request's rows (at the throughput of
    `batch_size`) plus a per-request overhead (one for all variants, or one per variant),
    whose origin `overhead_source` names.

    A bench times the model alone; a replica behind HTTP also parses, routes and answers
    every request, which for a sub-millisecond model can cost more than the model does.
    """
    figures = []
    for f in figures_from_summary(summary, batch_size):
        extra = overhead_s if isinstance(overhead_s, float | int) else overhead_s[f.variant]
        figures.append(
            ReplicaFigures(
                variant=f.variant,
                service_rate=1 / (rows_per_request / f.throughput_sps + extra),
                source=(
                    f"bench throughput at batch {f.batch_size}, {rows_per_request} "
                    f"row(s)/request, +{extra * 1000:.3g} ms HTTP overhead per request "
                    f"({overhead_source})"
                ),
                load_memory_bytes=f.load_memory_bytes,
                peak_inference_bytes=f.peak_inference_bytes,
                file_size_bytes=f.file_size_bytes,
            )
        )
    return figures


SHORT_STEP_S = 10.0
"""Steps shorter than this measure a knee from seconds of load: enough to rank variants
run side by side, short for sizing production (MLPerf's server runs last ten minutes)."""
MOVED_CORE = 0.9
"""A server core that read under this share of its fastest during the sweep moved enough
to move a knee by more than the 10% two measurements of one are expected to agree to."""


def from_sweep(
    sweep: dict[str, Any], bench: list[ReplicaFigures]
) -> tuple[list[ReplicaFigures], list[str]]:
    """Service rates from a sweep's knees, at the low end of each knee's interval (what
    every round held); memory and size from the bench when given.

    Returns the figures and notes: a variant without a knee (it never held the SLO), a
    knee that is only a lower bound because something other than the server's SLO ended
    the search (a saturated generator, an unstable step, the top of the rates tried), whose
    replicas are then more than the server needs, and the sweep's own warnings
    (`sweep_warnings`).
    """
    slo = sweep["slo_p99_ms"]
    variants = sweep["variants"]
    if not isinstance(variants, dict):
        raise ValueError("sweep summary has no variants mapping")
    measured = {f.variant: f for f in bench}
    figures, notes = [], sweep_warnings(sweep)
    for name, row in variants.items():
        knee = row.get("knee_qps")
        if knee is None or knee <= 0:
            notes.append(f"{name}: no knee in the sweep (never held the {slo} ms p99 SLO)")
            continue
        if row.get("knee_is_lower_bound"):
            notes.append(
                f"{name}: the knee ≥ {knee:,.0f} QPS is a lower bound (limited by "
                f"{row['knee_limited_by']}, not the SLO), so these replicas are an upper bound"
            )
        low = row.get("knee_low_qps")
        rate, source = float(knee), f"sweep knee (highest QPS holding p99 <= {slo} ms)"
        if low:
            rate = float(low)
            source = (
                f"low end of the sweep knee's interval ({low:,.0f} of {knee:,.0f} QPS, "
                f"{row.get('knee_rounds', 1)} round(s), p99 <= {slo} ms)"
            )
        other = measured.get(name)
        figures.append(
            ReplicaFigures(
                variant=name,
                service_rate=rate,
                source=source,
                load_memory_bytes=other.load_memory_bytes if other else None,
                peak_inference_bytes=other.peak_inference_bytes if other else None,
                file_size_bytes=other.file_size_bytes if other else None,
            )
        )
    return figures, notes


def sweep_warnings(sweep: dict[str, Any]) -> list[str]:
    """What makes a sweep's knees a weak base for a plan: a run that was not conclusive,
    short steps, a server core whose speed moved, a knee from one round."""
    warnings = []
    if sweep.get("conclusive") is False:
        warnings.append(
            f"WARNING: the sweep was not conclusive ({sweep.get('inconclusive_reason')}): "
            "repeat it before sizing from it"
        )
    step_s = (sweep.get("settings") or {}).get("step_seconds")
    if step_s is not None and step_s < SHORT_STEP_S:
        warnings.append(
            f"WARNING: planned from short steps ({step_s:g} s each): repeat the sweep with "
            f"--step-seconds {SHORT_STEP_S:g} or more before sizing production"
        )
    core = (sweep.get("conditions") or {}).get("core_speed") or {}
    if (share := core.get("between_rounds_share")) is not None and share < MOVED_CORE:
        warnings.append(
            f"WARNING: the server's core ran at {share:.2f} of its fastest round's speed in "
            "the sweep's slowest round: its knees moved with the machine"
        )
    rounds = [row.get("knee_rounds") for row in sweep["variants"].values()]
    if any(r == 1 for r in rounds):
        warnings.append("WARNING: a knee from one round has no measured spread (--rounds 3)")
    return warnings
