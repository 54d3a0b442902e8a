"""One step's result, as the sweep reports it: client side, server side, theory, verdict."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from loadtests.arrivals import ArrivalProcess, squared_cv
from loadtests.recorder import Tally, Window, count_above_ms, new_histogram, percentile_ms
from loadtests.sweep.acceptance import StepVerdict, WindowPoint
from loadtests.sweep.server_metrics import ServerSplit
from perfserve_common.queueing import little_disagreement, predicted_queue_s


@dataclass
class ClientSide:
    """What the generator saw over a step's measured windows (latency from scheduled
    time unless named `sent_*`)."""

    achieved_qps: float
    sent_qps: float
    answers: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    sent_p50_ms: float
    sent_p99_ms: float
    sent_max_ms: float
    miss_ratio: float
    """Share of requests slower than the SLO (from scheduled time) or failed."""
    sent_miss_ratio: float
    """The same, timing answers from their actual send."""
    outside_p50_ms: float
    """Client time minus server time: per answer, latency from scheduled time minus the
    server's own `Server-Timing` total (the wire, both HTTP stacks, the generator)."""
    outside_p99_ms: float
    late_sends: int
    """Sends more than the tolerance behind schedule in these windows (the step's
    `Totals.late` counts its warm-up and tail too)."""


@dataclass
class Totals:
    """Counts over the whole step, warm-up and tail included: what the server saw."""

    requests: int = 0
    ok: int = 0
    shed: int = 0
    errors: int = 0
    late: int = 0
    blocked: int = 0
    """Arrivals that found every connection busy and waited: the server's doing."""
    dropped: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    answered_by: dict[str, int] = field(default_factory=dict)


def misses(tally: Tally, slo_ms: float, from_sent: bool = False) -> int:
    """Requests slower than the SLO (from their scheduled time, or their send) or failed."""
    histogram = tally.sent if from_sent else tally.scheduled
    return count_above_ms(histogram, slo_ms) + tally.outcomes["shed"] + tally.outcomes["error"]


def miss_ratio(tally: Tally, slo_ms: float, from_sent: bool = False) -> float:
    """Share of requests slower than the SLO or failed (1.0 when there were none)."""
    histogram = tally.sent if from_sent else tally.scheduled
    failed = tally.outcomes["shed"] + tally.outcomes["error"]
    requests = histogram.get_total_count() + failed
    return misses(tally, slo_ms, from_sent) / requests if requests else 1.0


def client_side(windows: list[Window], window_s: float, slo_ms: float) -> ClientSide:
    tally = Tally()
    for window in windows:
        tally.add(window.merged_tally())
    seconds = len(windows) * window_s
    answers = tally.scheduled.get_total_count()
    return ClientSide(
        achieved_qps=sum(w.completed for w in windows) / seconds if seconds else 0.0,
        sent_qps=sum(w.sent for w in windows) / seconds if seconds else 0.0,
        answers=answers,
        p50_ms=percentile_ms(tally.scheduled, 50),
        p90_ms=percentile_ms(tally.scheduled, 90),
        p95_ms=percentile_ms(tally.scheduled, 95),
        p99_ms=percentile_ms(tally.scheduled, 99),
        p999_ms=percentile_ms(tally.scheduled, 99.9),
        max_ms=tally.scheduled.get_max_value() / 1000 if answers else math.nan,
        sent_p50_ms=percentile_ms(tally.sent, 50),
        sent_p99_ms=percentile_ms(tally.sent, 99),
        sent_max_ms=tally.sent.get_max_value() / 1000 if answers else math.nan,
        miss_ratio=miss_ratio(tally, slo_ms),
        sent_miss_ratio=miss_ratio(tally, slo_ms, from_sent=True),
        outside_p50_ms=percentile_ms(tally.outside, 50),
        outside_p99_ms=percentile_ms(tally.outside, 99),
        late_sends=sum(w.late for w in windows),
    )


def own_late_share(windows: list[Window]) -> float:
    """Share of sends late for the generator's own reasons: late sends less those that
    waited for a free connection (the server's doing, or a pool too small)."""
    sent = sum(w.sent for w in windows)
    late = sum(w.late for w in windows) - sum(w.blocked for w in windows)
    return max(0, late) / sent if sent else 0.0


def totals(windows: list[Window]) -> Totals:
    outcomes: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    answered_by: Counter[str] = Counter()
    for window in windows:
        for variant, tally in window.tallies.items():
            outcomes.update(tally.outcomes)
            statuses.update(tally.statuses)
            answered_by[variant] += tally.outcomes["ok"]
    return Totals(
        requests=sum(w.sent for w in windows),
        ok=outcomes["ok"],
        shed=outcomes["shed"],
        errors=outcomes["error"],
        late=sum(w.late for w in windows),
        blocked=sum(w.blocked for w in windows),
        dropped=sum(w.dropped for w in windows),
        statuses=dict(statuses),
        answered_by={k: v for k, v in answered_by.items() if v},
    )


def window_points(windows: list[Window], window_s: float, slo_ms: float) -> list[WindowPoint]:
    points = []
    so_far = new_histogram()
    for window in windows:
        tally = window.merged_tally()
        so_far.add(tally.scheduled)
        points.append(
            WindowPoint(
                window.completed / window_s,
                percentile_ms(tally.scheduled, 99),
                miss_ratio(tally, slo_ms),
                percentile_ms(so_far, 99),
            )
        )
    return points


@dataclass(frozen=True)
class StepResult:
    """One step as the sweep reports it, built once (`step_result`) with all it holds,
    its verdict and round included, and never changed after: what is known only once the
    run is over (a step's core speed, against the run's fastest reading) is made where it
    is reported."""

    target: str
    step: int
    phase: str
    """sweep, stress, recovery or soak."""
    target_qps: float
    duration_s: float
    window_s: float
    windows: int
    client: ClientSide
    totals: Totals
    server: ServerSplit
    predicted_queue_ms: float
    little_disagreement: float
    generator_cpu: float
    """Busiest generator process, in cores."""
    generator_late_share: float
    """Sends late by the generator's own doing (see `own_late_share`)."""
    enough_samples: bool
    stable: bool
    verdict: StepVerdict
    window_p99_ms: list[float] = field(default_factory=list)
    window_qps: list[float] = field(default_factory=list)
    window_miss_ratio: list[float] = field(default_factory=list)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)
    core_rate: float | None = None
    """The server's core just before the step, idle: a fixed loop's rate (see
    perfserve_common/core_speed.py), in millions of passes per second; None when not read.
    As a share of the run's fastest it is known only once the run is over, so the report
    makes that (`core_share` in loadtests/sweep/runner.py)."""
    round: int = 1
    """Which round of the knee search measured the step (loadtests/sweep/rounds.py); steps
    after the rounds (stress, recovery, soak) count as the first."""
    warmup_s: float = 0.0
    """How long the step ran at its rate before its measured windows."""
    warmup: ClientSide | None = None
    """What the generator saw during the warm-up, reported apart: connections opening
    and the server's queue finding its level, not the server's steady state."""

    @property
    def holds(self) -> bool:
        return self.verdict == StepVerdict.HOLDS


@dataclass(frozen=True)
class StepMeasurement:
    """What one step measured, before it is judged (loadtests/sweep/judge.py): the
    generator's side over the measured windows, the server's side, the machine's."""

    step: int
    phase: str
    rate: float
    """The rate offered (the step's target)."""
    duration_s: float
    window_s: float
    client: ClientSide
    points: list[WindowPoint]
    """One per measured window."""
    totals: Totals
    server: ServerSplit
    generator_cpu: float
    late_share: float
    """Sends late by the generator's own doing (see `own_late_share`)."""
    dropped: int
    blocked: int
    """Arrivals dropped, and arrivals that waited for a free connection, in the measured
    windows only: the tail after the last one (while the step is stopped) is not measured."""
    settled: bool
    enough_answers: bool
    rss_mb: list[tuple[float, float]]
    core_rate: float | None
    warmup_s: float
    warmup: ClientSide | None


def step_result(
    target: str,
    measured: StepMeasurement,
    verdict: StepVerdict,
    arrivals: ArrivalProcess,
    round_number: int,
) -> StepResult:
    """The step as the sweep reports it, built once its measurement is judged, in the
    round that measured it; with what queueing theory predicts for it (Allen-Cunneen for
    `arrivals`, Little's law)."""
    server = measured.server
    return StepResult(
        target=target,
        step=measured.step,
        phase=measured.phase,
        target_qps=measured.rate,
        duration_s=measured.duration_s,
        window_s=measured.window_s,
        windows=len(measured.points),
        client=measured.client,
        totals=measured.totals,
        server=server,
        predicted_queue_ms=_predicted_queue_ms(server, arrivals),
        little_disagreement=little_disagreement(
            server.sampled_in_flight, server.little_in_flight, server.in_flight_samples
        ),
        generator_cpu=measured.generator_cpu,
        generator_late_share=measured.late_share,
        enough_samples=measured.enough_answers,
        stable=measured.settled,
        verdict=verdict,
        window_p99_ms=[p.p99_ms for p in measured.points],
        window_qps=[p.throughput for p in measured.points],
        window_miss_ratio=[p.miss_ratio for p in measured.points],
        rss_mb=measured.rss_mb,
        core_rate=measured.core_rate,
        round=round_number,
        warmup_s=measured.warmup_s,
        warmup=measured.warmup,
    )


def _predicted_queue_ms(server: ServerSplit, arrivals: ArrivalProcess) -> float:
    return 1000 * predicted_queue_s(
        server.utilization,
        server.infer_ms_per_batch / 1000,
        max(1, round(server.runners)),
        squared_cv(arrivals),
    )
