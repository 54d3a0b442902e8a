"""Tools for the staging stack: its Prometheus config outside Docker, and canary splits
applied to every replica at once."""
