"""Load generator engines for `perfserve sweep`: each offers a rate and hands back windows."""
