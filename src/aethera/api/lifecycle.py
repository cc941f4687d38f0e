"""Running the API process, and stopping it without cutting anyone off.

Why not `web.run_app(shutdown_timeout=...)`: on SIGTERM aiohttp marks every connection closing before it
waits, and a closing connection drops the bytes that still arrive, so an upload whose body was still
coming in could never finish; it just hung until the timeout. Here the order is:

1. SIGTERM (or SIGINT): close the listening socket, so new connections are refused at once;
2. let every request in flight run to its end (bodies still arriving, downloads still streaming) for up
   to `AETHERA_SHUTDOWN_GRACE_S`; answers given meanwhile carry `Connection: close`;
3. then aiohttp's own cleanup: idle keep-alive connections close, a request still running past the
   grace period is cancelled after `_CUT_OFF_S`, and the cleanup contexts close Redis and storage pools.

A second SIGTERM skips what is left of the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from aethera.api.instrumentation import DRAIN
from aethera.api.keys import SETTINGS
from aethera.api.protocol import make_runner

log = logging.getLogger(__name__)

# past the grace period, how long aiohttp waits for a cancelled handler before closing its connection
_CUT_OFF_S = 1.0


async def serve_until_signalled(app: web.Application, *, host: str, port: int, grace_s: float) -> None:
    """Serve `app` on host:port until SIGTERM or SIGINT, then drain and clean up (see module doc)."""
    # the header deadline and JSON answers to unparseable requests (api/protocol.py)
    runner = make_runner(app, app[SETTINGS], access_log=None, handle_signals=False, shutdown_timeout=_CUT_OFF_S)
    await runner.setup()  # startup and cleanup contexts: pools open here
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("API listening on http://%s:%d", host, port)
        stop, hurry = asyncio.Event(), asyncio.Event()

        def on_signal() -> None:
            (hurry if stop.is_set() else stop).set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await stop.wait()

        drain = app[DRAIN]
        drain.draining = True
        await site.stop()
        log.info("stopping: no new connections; %d request(s) in flight get up to %g s", drain.active, grace_s)
        hurried = asyncio.create_task(hurry.wait())
        idle = asyncio.create_task(drain.idle.wait())
        await asyncio.wait({hurried, idle}, timeout=grace_s, return_when=asyncio.FIRST_COMPLETED)
        hurried.cancel()
        idle.cancel()
        if drain.active:
            log.warning("stopping: %d request(s) still running after the grace period are cut off", drain.active)
        else:
            log.info("stopping: every request in flight finished")
    finally:
        await runner.cleanup()  # closes connections, runs on_shutdown and the cleanup contexts
        log.info("API stopped")


def run_api(app: web.Application, *, host: str, port: int, grace_s: float) -> None:
    """Blocking: `serve_until_signalled` on a new event loop."""
    asyncio.run(serve_until_signalled(app, host=host, port=port, grace_s=grace_s))
