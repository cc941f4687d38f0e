"""A bounded, short-lived in-process copy of answers that can no longer change.

A final run record never changes again (docs/architecture.md, "Run lifecycle"), so the answer of `GET /tasks/{id}`
and `GET /runs/{id}` for a finished run is the same bytes forever. The frontend keeps polling those
after a run ended; keeping the bytes here for a short while saves the Redis round trip (tasks) and two
storage reads on the thread pool (runs) per poll. Entries carry their owner: the tenant check runs on
every request as before. Only final answers are ever put here; the time limit bounds how long a
process serves a copy whose Redis original was deleted by hand, and the size limit bounds memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from aiohttp import web

FINAL_ANSWER_TTL_S = 30.0
FINAL_ANSWER_MAX_ENTRIES = 4096


class FinalAnswers:
    """(kind, id) -> (owner tenant, JSON body) of a finished run's answer; least recently used evicted."""

    def __init__(self, max_entries: int = FINAL_ANSWER_MAX_ENTRIES, ttl_s: float = FINAL_ANSWER_TTL_S) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[float, str, bytes]] = OrderedDict()
        self._max = max_entries
        self._ttl_s = ttl_s

    def get(self, kind: str, key: str) -> tuple[str, bytes] | None:
        entry = self._entries.get((kind, key))
        if entry is None:
            return None
        expires, owner, body = entry
        if time.monotonic() >= expires:
            del self._entries[(kind, key)]
            return None
        self._entries.move_to_end((kind, key))
        return owner, body

    def put(self, kind: str, key: str, owner: str, body: bytes) -> None:
        self._entries[(kind, key)] = (time.monotonic() + self._ttl_s, owner, body)
        self._entries.move_to_end((kind, key))
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


FINAL_ANSWERS = web.AppKey("final_answers", FinalAnswers)
