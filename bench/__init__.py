"""Benchmarks against the test cluster: roundtrip (one task), fanout (N at once), dispatch (KWOK)."""
