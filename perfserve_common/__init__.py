"""Helpers that the service and the tools built on it share: usage errors, processes,
queueing, the SLO."""
