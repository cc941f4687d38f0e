"""Checking presented API keys under load: few scrypt runs at once, the least suspect caller first.

scrypt costs about 50 ms of CPU per check, so a process runs at most `slots` of them at once (a
`PriorityGate`). The bad-key throttle (in `auth.py`) has already refused all but a few attempts per
client address before they get here; of those that wait, the one whose address has the most tokens
left in its bad-key bucket goes first, so a client with a fresh valid key is served before the queued
guesses of an address that has been failing. Concurrent checks of the same key share one scrypt run
(a browser opening with ten parallel requests costs one check, not ten). A key id the keys file does
not list costs no scrypt: the answer (401) comes after about as long as a wrong secret takes.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aethera.security.apikeys import KeyStore, Principal, parse_key

DEFAULT_SLOTS = 2  # scrypt checks one API process runs at once (the machines have 2 cores)


class PriorityGate:
    """A semaphore whose waiters are served lowest `priority` first, then in arrival order."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a gate needs at least one slot")
        self._free = slots
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._arrival = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, fut in self._waiters if not fut.done())

    @asynccontextmanager
    async def slot(self, priority: float) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: float) -> None:
        if self._free > 0 and self.waiting == 0:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._arrival), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # the slot was handed over just as we were cancelled
                self._release()
            raise  # a cancelled waiter stays in the heap, done: `_release` skips it

    def _release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # the slot passes straight to the next waiter
                return
        self._free += 1


class KeyChecker:
    """Verifies keys the store has not cached yet, through the gate, one scrypt run per distinct key."""

    def __init__(self, store: KeyStore, slots: int = DEFAULT_SLOTS) -> None:
        self.store = store
        self.gate = PriorityGate(slots)
        self._flights: dict[bytes, asyncio.Future[Principal | None]] = {}

    def in_flight(self, key: str) -> bool:
        """Whether a check of this very key is already running (joining it costs nothing)."""
        return _fingerprint(key) in self._flights

    async def check(self, key: str, priority: float = 0.0) -> Principal | None:
        """The principal of a valid key, else None; lower `priority` is served first."""
        key_id = parse_key(key)
        if key_id is None:
            return None
        if not self.store.knows(key_id):
            # no scrypt, but no faster answer either: the key id must not be learnable from the timing
            await asyncio.sleep(self.store.typical_verify_s)
            return None
        fingerprint = _fingerprint(key)
        flight = self._flights.get(fingerprint)
        if flight is None:
            # a task of its own: a caller that goes away neither cancels the check others wait for nor
            # frees the gate's slot while its thread still hashes
            flight = asyncio.ensure_future(self._verify(key, priority))
            self._flights[fingerprint] = flight
            flight.add_done_callback(lambda _: self._flights.pop(fingerprint, None))
        return await asyncio.shield(flight)

    async def _verify(self, key: str, priority: float) -> Principal | None:
        async with self.gate.slot(priority):
            return await asyncio.to_thread(self.store.authenticate, key)


def _fingerprint(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
