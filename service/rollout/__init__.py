"""Canary rollouts: the plan, the evidence every replica records, the controller and its
admin endpoints, and the statistical judge they consult."""
