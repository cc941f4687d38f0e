"""The API's access line: one JSON line per request, built the cheap way when logging allows it.

The line goes through the `aethera.access` logger, so the logging configuration decides where it
goes. A LogRecord, the JSON formatter and the handler's dispatch cost about a fifth of the API's
time per request, though, so when that logger's records would reach exactly one handler, the
`JsonLinesHandler` that `configure_logging` installs, with no filter on the way, the line is encoded
here from a fixed struct (the same fields, in the same order, as the formatter writes) and handed to
that handler in one write. Any other configuration (another handler, a filter, pytest's capture, a
level above INFO, a run or task id bound) takes the ordinary `logging` route, which writes the same
line.
"""

from __future__ import annotations

import logging
import time

import msgspec

from aethera.observability.logs import (
    JsonFormatter,
    JsonLinesHandler,
    _utc_iso_ms,
    request_id_var,
    run_id_var,
    task_id_var,
)

ACCESS_LOGGER = "aethera.access"
access_log = logging.getLogger(ACCESS_LOGGER)


class _AccessLine(msgspec.Struct):
    """The JsonFormatter's output for an access record, field for field: its fixed keys, then the
    `extra=` fields in name order."""

    ts: str
    level: str
    logger: str
    message: str
    service: str
    request_id: str | None
    bytes_sent: int | None
    duration_ms: float
    method: str
    path: str
    remote: str | None
    route: str
    status: int


_encode = msgspec.json.Encoder().encode


def _direct_handler() -> JsonLinesHandler | None:
    """The one handler an access record would reach, when it is an API `JsonLinesHandler` and
    nothing on the way filters; None when the ordinary route must run."""
    if not access_log.isEnabledFor(logging.INFO):  # cached by logging per level
        return None
    found: JsonLinesHandler | None = None
    logger: logging.Logger | None = access_log
    while logger is not None:
        if logger.filters:
            return None
        for handler in logger.handlers:
            if found is not None or type(handler) is not JsonLinesHandler:
                return None
            found = handler
        if not logger.propagate:
            break
        logger = logger.parent
    if found is None or found.filters or found.level > logging.INFO:
        return None
    formatter = found.formatter
    if type(formatter) is not JsonFormatter or formatter.service != "api":
        return None
    return found


def log_access(
    *,
    method: str,
    path: str,
    route: str,
    status: int,
    elapsed_s: float,
    bytes_sent: int | None,
    remote: str | None,
) -> None:
    """Write the access line of one request (call it in the request's context: it reads the id)."""
    handler = _direct_handler()
    # a run or task id bound inside a request would add keys: the formatter knows how to place them
    if handler is not None and run_id_var.get() is None and task_id_var.get() is None:
        formatter = handler.formatter
        assert isinstance(formatter, JsonFormatter)  # checked by _direct_handler
        duration_ms = elapsed_s * 1000
        line = _AccessLine(
            ts=_utc_iso_ms(time.time()),
            level="INFO",
            logger=ACCESS_LOGGER,
            message=f"{method} {path} {status:d} {duration_ms:.1f} ms",
            service="api",
            request_id=request_id_var.get(),
            bytes_sent=bytes_sent,
            duration_ms=round(duration_ms, 2),
            method=method,
            path=path,
            remote=remote,
            route=route,
            status=status,
        )
        try:
            handler.write_line(formatter.redact(_encode(line).decode()))
        except Exception:  # a failed write: the ordinary route below retries it and reports it as logging does
            pass
        else:
            return
    access_log.info(
        "%s %s %d %.1f ms",
        method,
        path,
        status,
        elapsed_s * 1000,
        extra={
            "method": method,
            "path": path,  # without the query string, which may carry anything
            "route": route,
            "status": status,
            "duration_ms": round(elapsed_s * 1000, 2),
            "bytes_sent": bytes_sent,
            "remote": remote,  # behind trusted proxies, the forwarded client
        },
    )
