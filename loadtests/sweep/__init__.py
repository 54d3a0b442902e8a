"""The QPS sweep: steps, their acceptance, the knee search, the server side, stress and soak."""
