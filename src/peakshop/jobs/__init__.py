"""The worker runtime: durable queues, retries, dead letters, scheduled sweeps."""
