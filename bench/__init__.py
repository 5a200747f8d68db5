"""`python -m bench`: the nightly latency benchmark with history and regression detection."""
