"""Load testing for perfserve: Locust scenarios, the open-loop QPS sweep and its report."""

SPLIT = "split"
"""The target name for the live traffic split (`POST /predict`) rather than one variant."""
