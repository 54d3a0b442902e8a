"""Plain-text views for the terminal: latency lines, the progress line and the knee table."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

from loadtests.recorder import percentile_ms

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def latency_line(label: str, histogram: HdrHistogram) -> str:
    """`label: n=…  p50 … p99.9 … max … ms` from an HdrHistogram of microseconds."""
    count = histogram.get_total_count()
    if not count:
        return f"{label}: no answers"
    parts = [f"p{p:g} {percentile_ms(histogram, p):.3f}" for p in PERCENTILES]
    parts.append(f"max {histogram.get_max_value() / 1000:.3f}")
    return f"{label}: n={count}  " + "  ".join(parts) + " ms"
