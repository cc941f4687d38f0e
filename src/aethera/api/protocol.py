"""The HTTP connection side of the API: the header deadline and JSON answers to unparseable requests.

Two things happen before any middleware sees a request, so they are set here, on aiohttp's runner:

- The header deadline. aiohttp's `keepalive_timeout` runs from the moment a connection opens (and from
  each answer on), and closes a connection whose next request has not been fully received by then, so
  it bounds the request line and headers as well as idle keep-alive. It is `AETHERA_HEADER_TIMEOUT_S`:
  a client trickling its headers a byte at a time (slowloris) loses its connection at the deadline.
- Requests aiohttp's parser refuses (a bad request line, a malformed or over-long header) are answered
  by `RequestHandler.handle_error`, outside the application, as `400 text/plain` echoing the offending
  bytes, and logged as an ERROR with a traceback. `JsonErrorRequestHandler` answers them in the API's
  shape, JSON `{"detail", "code"}`, naming the kind of fault but never echoing the request, and logs
  one INFO line: a malformed request is the client's fault, not the server's.

aiohttp's `handler_cancellation` stays off: it would cancel a handler whenever its client disconnects,
say between storing a run record and queueing its job, leaving half-made state. Handlers notice a
client gone mid-body through the body stream instead (`middlewares.body_deadline_middleware`: 499).

aiohttp has no public hook for the protocol class (aio-libs/aiohttp#3287), so `ApiRunner` sets it on
the server its base class builds; `tests/faults/test_hostile_clients.py` proves it on a real process.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import (
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)
from aiohttp.web_protocol import RequestHandler

from aethera.api.errors import CODE_BY_STATUS, error_response
from aethera.settings import Settings

log = logging.getLogger(__name__)
access_log = logging.getLogger("aethera.access")

# the kind of fault, most specific first; the parser's own message quotes the request and is not sent
_PARSER_FAULTS: tuple[tuple[type[HttpProcessingError], str], ...] = (
    (LineTooLong, "the request line or a header is too long"),
    (BadStatusLine, "the request line is malformed"),
    (InvalidURLError, "the request target is malformed"),
    (InvalidHeader, "a request header is malformed"),
    (PayloadEncodingError, "the request body's framing is malformed"),
)


def _parser_fault(exc: HttpProcessingError) -> str:
    for cls, detail in _PARSER_FAULTS:
        if isinstance(exc, cls):
            return detail
    return "the request is not valid HTTP"


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering its own errors as JSON (see the module doc)."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # an answer has begun: the connection is all that is left
            raise ConnectionError("response already started; cannot send an error answer")
        if isinstance(exc, HttpProcessingError):
            status = exc.code if 400 <= exc.code < 500 else 400
            detail = _parser_fault(exc)
            # the exception's class only: its message repeats the bytes the client sent
            access_log.info(
                "malformed HTTP request -> %d (%s)",
                status,
                type(exc).__name__,
                extra={"status": status, "remote": request.remote, "route": "<unparsed>"},
            )
            code = CODE_BY_STATUS.get(status, "malformed_request")
        elif status == 504:
            log.warning("a request handler timed out")
            detail, code = "the request took too long", "gateway_timeout"
        else:
            self.log_exception("error outside the application's handlers", exc_info=exc)
            status, detail, code = 500, "internal error", "internal_error"
        resp = error_response(status, detail, code)
        resp.force_close()
        return resp


class ApiRunner(web.AppRunner):
    """`web.AppRunner` whose connections use `JsonErrorRequestHandler`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer
        return server


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


def make_runner(app: web.Application, settings: Settings, **options: Any) -> ApiRunner:
    """The runner of the API process, with the header deadline of `settings`."""
    return ApiRunner(app, keepalive_timeout=settings.header_timeout_s, **options)
