"""Locust scenarios: users, load shapes, pacing, the per-process events and the CI gate."""
