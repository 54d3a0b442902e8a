"""The replica bounds an autoscaler should use, from a capacity plan.

deploy/ scales the Deployment on the fleet's request rate divided by a target per replica
(KEDA's Prometheus trigger, `metricType: AverageValue`). The target is the rate one
replica serves at the planned utilization, so the autoscaler adds replicas where
`perfserve capacity` would; the most replicas are those the peak plan needs, and the
fewest keep serving while one replica is drained or moved (the PodDisruptionBudget lets
one go at a time).
"""

from __future__ import annotations

from dataclasses import dataclass

from perfserve.benchmarks.capacity.capacity import Plan, replicas_for

MIN_AVAILABLE_REPLICAS = 2
"""Fewest replicas: one may be drained (rollout, node drain) while another serves."""


@dataclass(frozen=True)
class ReplicaBounds:
    variant: str
    min_replicas: int
    max_replicas: int
    target_qps_per_replica: float
    """Requests per second per replica at which the autoscaler adds a replica."""
    target_utilization: float


def replica_bounds(
    plan: Plan, target_utilization: float, trough_qps: float | None = None
) -> ReplicaBounds:
    """Bounds for one variant's plan; `trough_qps` (the quietest load) may raise the floor."""
    target = plan.service_rate * target_utilization
    floor = MIN_AVAILABLE_REPLICAS
    if trough_qps is not None:
        floor = max(floor, replicas_for(trough_qps, plan.service_rate, target_utilization))
    return ReplicaBounds(
        variant=plan.variant,
        min_replicas=floor,
        max_replicas=max(floor, plan.replicas),
        target_qps_per_replica=target,
        target_utilization=target_utilization,
    )


def render_bounds(bounds: list[ReplicaBounds]) -> str:
    """A table, then where each figure goes in deploy/ (the KEDA ScaledObject)."""
    lines = [
        "autoscaler bounds (deploy/: ScaledObject minReplicaCount, maxReplicaCount, and the "
        "requests trigger's threshold):",
        f"{'variant':<16}{'min':>5}{'max':>5}{'target req/s per replica':>26}",
    ]
    lines += [
        f"{b.variant:<16}{b.min_replicas:>5}{b.max_replicas:>5}{b.target_qps_per_replica:>26,.0f}"
        for b in bounds
    ]
    return "\n".join(lines)
