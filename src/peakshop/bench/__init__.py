"""Benchmark tooling: seeding of large data sets, the load generator, scenarios, reports."""
