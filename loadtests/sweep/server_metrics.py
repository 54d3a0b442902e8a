"""The server's side of a step, from `/metrics` read at the step's boundaries.

Counters and histogram sums only move forward, so the difference between a scrape
before the step and one after it (taken once every request of the step was answered)
is exactly what the step cost the server: how many requests it answered, how long they
queued, how long the model ran per batch, how big the batches were, how busy the
runners and the process were. Gauges (in-flight requests, queue depth, memory) say
nothing between two scrapes, so a sampler reads them several times a second.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]
SAMPLE_INTERVAL_S = 1.0


CLIENT_SIDE_ONLY = (
    "the target exports none of perfserve's metrics: only client-side figures exist; "
    "the server-side columns (queue, batch, utilisation, server p99) are left empty"
)


def scrape(url: str, timeout_s: float = 5.0) -> Samples:
    """The target's `/metrics`; empty when it has none (another inference server may
    export its metrics elsewhere, or not in Prometheus' text format)."""
    try:
        response = httpx.get(f"{url}/metrics", timeout=timeout_s)
        return parse(response.text) if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}


def exports_perfserve_metrics(samples: Samples) -> bool:
    """Whether the server-side figures can be read from these samples."""
    return any(name.startswith("perfserve_") for name, _ in samples)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, variants: list[str] | None = None, **labels: str) -> float:
    """The sum over the samples of `name` that carry `labels` (and one of `variants`)."""
    wanted = set(labels.items())
    found = 0.0
    for (sample_name, sample_labels), value in samples.items():
        if sample_name != name or not wanted <= sample_labels:
            continue
        if variants is not None and dict(sample_labels).get("variant") not in variants:
            continue
        found += value
    return found


@dataclass
class ServerSplit:
    """What the server did during one step, for the variants the step targeted."""

    requests: float
    ok: float
    statuses: dict[str, float]
    rejected: dict[str, float]
    mean_latency_ms: float
    queue_ms: float
    infer_ms_per_batch: float
    batches: float
    mean_batch_rows: float
    utilization: float
    runners: float
    cpu_cores: float
    little_in_flight: float
    """Throughput times mean server latency: Little's law's in-flight (= Σ latency / time)."""
    sampled_in_flight: float
    """The `perfserve_inflight_requests` gauge, averaged over the samples of the step."""
    in_flight_samples: int
    """How many readings of the gauge that average is of."""
    rss_bytes: float
    p99_ms_at_most: float
    """Server-side p99 of successful requests, as the upper bound of its histogram bucket."""


def bucket_p99_ms(before: Samples, after: Samples, variants: list[str] | None) -> float:
    """The smallest `perfserve_request_duration_seconds` bucket bound holding 99% of the
    step's successful requests: coarse, but enough to tell a slow server from time lost
    between server and client."""
    name = "perfserve_request_duration_seconds_bucket"
    bounds = sorted(
        {float(dict(labels)["le"]) for (n, labels) in after if n == name},
    )
    counts = [
        total(after, name, variants, status="200", le=_le(b))
        - total(before, name, variants, status="200", le=_le(b))
        for b in bounds
    ]
    if not counts or counts[-1] <= 0:
        return float("nan")
    for bound, count in zip(bounds, counts, strict=True):
        if count >= 0.99 * counts[-1]:
            return bound * 1000
    return float("inf")


def _le(bound: float) -> str:
    """A bucket bound as the exposition writes it (`0.005`, `1.0`, `+Inf`)."""
    return "+Inf" if bound == float("inf") else repr(bound)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def server_split(
    before: Samples,
    after: Samples,
    elapsed_s: float,
    variants: list[str] | None,
    in_flight_samples: list[float],
) -> ServerSplit:
    if not exports_perfserve_metrics(after):
        return _unknown(in_flight_samples)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, variants, **labels) - total(before, name, variants, **labels)

    statuses = {
        dict(labels)["status"]: delta("perfserve_request_duration_seconds_count", status=status)
        for (name, labels) in after
        if name == "perfserve_request_duration_seconds_count"
        and (status := dict(labels)["status"])
        and (variants is None or dict(labels).get("variant") in variants)
    }
    rejected = {
        dict(labels)["reason"]: value - before.get((name, labels), 0.0)
        for (name, labels), value in after.items()
        if name == "perfserve_rejected_requests_total"
    }
    batches = delta("perfserve_batch_size_count")
    runners = total(after, "perfserve_runners", variants) or 1.0
    latency_sum = delta("perfserve_request_duration_seconds_sum", status="200")
    ok = statuses.get("200", 0.0)
    return ServerSplit(
        requests=sum(statuses.values()),
        ok=ok,
        statuses={k: v for k, v in statuses.items() if v},
        rejected={k: v for k, v in rejected.items() if v},
        mean_latency_ms=_ratio(latency_sum, ok) * 1000,
        queue_ms=_ratio(
            delta("perfserve_queue_duration_seconds_sum"),
            delta("perfserve_queue_duration_seconds_count"),
        )
        * 1000,
        infer_ms_per_batch=_ratio(delta("perfserve_inference_duration_seconds_sum"), batches)
        * 1000,
        batches=batches,
        mean_batch_rows=_ratio(delta("perfserve_batch_size_sum"), batches),
        utilization=_ratio(delta("perfserve_busy_seconds_total"), elapsed_s * runners),
        runners=runners,
        cpu_cores=_ratio(
            total(after, "process_cpu_seconds_total") - total(before, "process_cpu_seconds_total"),
            elapsed_s,
        ),
        little_in_flight=_ratio(
            total(after, "perfserve_request_duration_seconds_sum")
            - total(before, "perfserve_request_duration_seconds_sum"),
            elapsed_s,
        ),
        sampled_in_flight=_ratio(sum(in_flight_samples), len(in_flight_samples)),
        in_flight_samples=len(in_flight_samples),
        rss_bytes=total(after, "process_resident_memory_bytes"),
        p99_ms_at_most=bucket_p99_ms(before, after, variants),
    )


def _unknown(in_flight_samples: list[float]) -> ServerSplit:
    """A step on a target without perfserve's metrics: every server-side figure unknown
    (NaN, written as an empty cell), none of them taken for a zero."""
    nan = float("nan")
    return ServerSplit(
        requests=nan,
        ok=nan,
        statuses={},
        rejected={},
        mean_latency_ms=nan,
        queue_ms=nan,
        infer_ms_per_batch=nan,
        batches=nan,
        mean_batch_rows=nan,
        utilization=nan,
        runners=1.0,
        cpu_cores=nan,
        little_in_flight=nan,
        sampled_in_flight=_ratio(sum(in_flight_samples), len(in_flight_samples)),
        in_flight_samples=len(in_flight_samples),
        rss_bytes=nan,
        p99_ms_at_most=nan,
    )


@dataclass
class GaugeSampler:
    """Reads the in-flight gauge and resident memory once a second, in the background,
    while a step runs."""

    url: str
    interval_s: float = SAMPLE_INTERVAL_S
    in_flight: list[float] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since start, bytes)."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> GaugeSampler:
        self._thread = threading.Thread(target=self._run, name="gauge-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        """One connection for all samples, only the two gauges asked for, and a plain scan
        of them: the sampler shares the generator's CPU and the whole exposition costs
        the server milliseconds, so each sample must cost both next to nothing."""
        started = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while not self._stop.wait(self.interval_s):
                try:
                    text = client.get("/metrics", params={"name[]": GAUGES}).text
                except httpx.HTTPError:
                    continue
                gauges = dict(_gauge_lines(text, GAUGES))
                self.in_flight.append(gauges.get("perfserve_inflight_requests", 0.0))
                rss = gauges.get("process_resident_memory_bytes", 0.0)
                self.rss.append((time.monotonic() - started, rss))


GAUGES = ("perfserve_inflight_requests", "process_resident_memory_bytes")


def _gauge_lines(text: str, names: tuple[str, ...]) -> list[tuple[str, float]]:
    """Unlabelled samples of `names`, read straight off the exposition lines."""
    found = []
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            found.append((name, float(value)))
    return found
