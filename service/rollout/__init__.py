"""Canary rollouts that decide for themselves: weight steps, a statistical judge, rollback."""
