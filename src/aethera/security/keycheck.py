"""Checking presented API keys under load: few scrypt runs at once, the least suspect caller first.

scrypt costs about 50 ms of CPU per check, so a process runs at most `slots` of them at once (a
`PriorityGate`). Before that, each check takes a token from its client address's bad-key bucket (the
`reserve` that `auth.py` passes in), so all but a few attempts per address are refused before any
scrypt; of those that wait, the one whose address has the most tokens left goes first, so a client
with a fresh valid key is served before the queued guesses of an address that has been failing.
Concurrent checks of the same key share one scrypt run
(a browser opening with ten parallel requests costs one check, not ten). A key id the keys file does
not list costs no scrypt: the answer (401) comes after about as long as a wrong secret takes.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aethera.security.apikeys import KeyStore, Principal, parse_key
from aethera.security.ratelimit import Decision

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


@dataclass(frozen=True)
class Verdict:
    """What checking a presented key found."""

    principal: Principal | None  # None: not a valid key (malformed, unknown key id or wrong secret)
    retry_after_s: int = 0  # above 0: refused by the bad-key throttle before any check ran


Reserve = Callable[[], Awaitable[Decision | None]]  # take a bad-key token; None when there is no throttle
GiveBack = Callable[[], Awaitable[None]]  # return the token taken by `Reserve`


class KeyChecker:
    """Checks keys the store has not cached yet: throttle token first, then scrypt through the gate.

    Everything about one distinct key (its token, its scrypt run) happens once however many requests
    present it at the same time: the others wait for the first one's verdict.
    """

    def __init__(self, store: KeyStore, slots: int = DEFAULT_SLOTS) -> None:
        self.store = store
        self.gate = PriorityGate(slots)
        self._flights: dict[bytes, asyncio.Future[Verdict]] = {}

    async def check(self, key: str, reserve: Reserve, give_back: GiveBack) -> Verdict:
        fingerprint = _fingerprint(key)
        flight = self._flights.get(fingerprint)
        if flight is None:
            # a task of its own: a caller that goes away neither cancels the check others wait for nor
            # frees the gate's slot while its thread still hashes
            flight = asyncio.ensure_future(self._settle(key, reserve, give_back))
            self._flights[fingerprint] = flight
            flight.add_done_callback(lambda _: self._flights.pop(fingerprint, None))
        return await asyncio.shield(flight)

    async def _settle(self, key: str, reserve: Reserve, give_back: GiveBack) -> Verdict:
        decision = await reserve()  # before any scrypt: the 21st of 200 concurrent guesses is refused here
        if decision is not None and not decision.allowed:
            return Verdict(None, retry_after_s=decision.retry_after_s)
        key_id = parse_key(key)
        if key_id is None:
            return Verdict(None)
        if not self.store.knows(key_id):
            # no scrypt, but no faster answer either: the key id must not be learnable from the timing
            await asyncio.sleep(self.store.typical_verify_s)
            return Verdict(None)
        # the fewer failures the caller's address has behind it, the sooner its check runs
        priority = -decision.remaining if decision is not None else 0.0
        async with self.gate.slot(priority):
            principal = await asyncio.to_thread(self.store.authenticate, key)
        if principal is not None and decision is not None:
            await give_back()  # a valid key costs its address nothing
        return Verdict(principal)


def _fingerprint(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
