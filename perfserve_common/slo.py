"""The service's latency objective, defined once for every tool that judges against it.

The staging stack's recording rule `perfserve:slo_p99_seconds`
(prometheus/rules/recording.yml) holds the same number for the alert and the dashboard's
SLO line; a test keeps the two equal.
"""

SLO_P99_MS = 50.0
"""Answered predictions should take at most this long at the 99th percentile."""
