"""A step's verdict from its measurement, and nothing else: the step runner measures
(loadtests/sweep/steps.py), this judges, and the result is built once with the verdict
(`results.step_result`). What a step is called can so be read, and tested, in one place
on figures alone; loadtests/sweep/acceptance.py holds the rule itself.
"""

from __future__ import annotations

from loadtests.sweep.acceptance import SATURATION, StepVerdict, verdict
from loadtests.sweep.results import StepMeasurement

GENERATOR_CPU_LIMIT = 0.9
"""A generator process using this much of a core is out of CPU (it has one thread)."""
CEILING_SHARE = 0.8
"""Above this share of its calibrated ceiling, a generator's own delays start to show
in what it measures (its CPU is busy most of the time): a miss there is not the server's."""


def judge(
    measured: StepMeasurement, slo_p99_ms: float, ceiling_qps: float | None = None
) -> StepVerdict:
    """The step's verdict against the SLO, `ceiling_qps` the generator's calibrated
    ceiling (None when not measured). Late and dropped arrivals count within the measured
    windows only.

    The server counts as saturated when its runners or its process are busy, when it
    sheds, or when every client connection was waiting on it (requests piling up in
    flight): the last catches a server starved of CPU by neighbours, whose own CPU
    use then looks low, unless the generator itself was out of CPU, when answers
    pile up unread on its side. The server owns a miss beside a generator out of
    breath only when it was busy and failed by its own measures (a stalled
    generator's burst also fills every connection)."""
    server, client, shed = measured.server, measured.client, measured.totals.shed
    generator_saturated = measured.generator_cpu >= GENERATOR_CPU_LIMIT
    busy = (
        server.utilization >= SATURATION
        or server.cpu_cores >= SATURATION * max(1.0, server.runners)
        or shed > 0
    )
    saturated = busy or (measured.blocked > 0 and not generator_saturated)
    server_holds = server.p99_ms_at_most <= slo_p99_ms
    return verdict(
        target_qps=measured.rate,
        achieved_qps=client.achieved_qps,
        sent_qps=client.sent_qps,
        miss_ratio=client.miss_ratio,
        late_share=measured.late_share,
        dropped=measured.dropped,
        server_saturated=saturated,
        settled=measured.settled,
        enough_answers=measured.enough_answers,
        sent_miss_ratio=client.sent_miss_ratio,
        generator_saturated=generator_saturated,
        beyond_ceiling=ceiling_qps is not None and measured.rate > CEILING_SHARE * ceiling_qps,
        server_failed=busy and (not server_holds or shed > 0),
    )
