"""Where a run attempt's time goes, phase by phase (the run's fixed cost beside the pipeline itself).

The worker logs one line per attempt with these figures (`run … phases: …`); `bench/e2e.py` reads them
to print the fixed-cost breakdown. Durations are wall-clock seconds on the worker's monotonic clock,
except the queue pick-up, which compares the job's due time (Redis-side score, written by the API's
clock) with the worker's wall clock: both run on one machine in the bench.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

# the order the phases happen in (and are printed in)
ORDER = ("pickup", "lease", "start", "spawn", "pipeline", "writes", "render", "handoff", "reap", "commit")


class PhaseClock:
    """Accumulates seconds per phase name; a phase may be entered several times (writes)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + max(0.0, seconds)

    @contextmanager
    def measure(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - t0)

    def line(self) -> str:
        """`pickup=0.012 lease=0.001 …` in ORDER, then any other phase; milliseconds would hide nothing
        here, seconds keep one unit with the rest of the logs."""
        names = [p for p in ORDER if p in self.seconds] + sorted(set(self.seconds) - set(ORDER))
        return " ".join(f"{p}_s={self.seconds[p]:.4f}" for p in names)


def queue_wait_s(ctx: Mapping[str, Any], now_s: float) -> float | None:
    """How long the job waited in the queue after it was due, from arq's job context; None if unknown.

    arq's `score` is the job's place in the queue, in ms: its due time for a deferred job (a retry's
    backoff), but a run queued for now is placed `INTERACTIVE_LEAD_S` ahead of its enqueue time
    (`jobs/queue.py`), so the wait counts from the later of the two."""
    score_ms, enqueued = ctx.get("score"), ctx.get("enqueue_time")
    if not isinstance(score_ms, (int, float)):
        return None
    due_s = score_ms / 1000
    if isinstance(enqueued, datetime):  # arq gives the enqueue time as a datetime
        due_s = max(due_s, enqueued.timestamp())
    return max(0.0, now_s - due_s)


def parse_line(text: str) -> dict[str, float]:
    """The phases of one `line()` (for the bench)."""
    out: dict[str, float] = {}
    for part in text.split():
        name, sep, value = part.partition("_s=")
        if sep:
            try:
                out[name] = float(value.rstrip('",'))
            except ValueError:
                continue
    return out
