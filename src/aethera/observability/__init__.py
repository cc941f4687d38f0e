"""Observability: structured JSON logs with request/run context, Prometheus metrics, worker heartbeats."""
