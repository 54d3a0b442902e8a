"""perfserve: an HTTP inference service with load testing built in."""
