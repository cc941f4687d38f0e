"""Every Redis key the observability code writes or reads, in one place.

They live under their own `aethera:obs:` prefix so that they never collide with the queue's or the task
records' keys, and so that emptying them loses nothing but counters (Prometheus treats a counter that
goes down as a reset).
"""

from __future__ import annotations

PREFIX = "aethera:obs:"

# hash: field = encoded label values, value = counter total
COUNTER = PREFIX + "counter:{name}"
# hash: fields "<labels>|b<i>" (observations in bucket i, not cumulative), "<labels>|sum", "<labels>|count"
HISTOGRAM = PREFIX + "hist:{name}"
# sorted set: member = worker name, score = Redis server time (s) of its last heartbeat
WORKERS = PREFIX + "workers"
# string (JSON, expires): what a worker said about itself at its last heartbeat (host, pid, started)
WORKER_INFO = PREFIX + "worker:{name}"
