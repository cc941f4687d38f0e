"""JSON logs: one object per line, with the request id (API) or run and task ids (worker) on every line.

The ids travel in `contextvars`, so they follow a request or a run through every `await` and into the
threads started with `asyncio.to_thread` (which copies the context), without being passed around.
Secrets never reach a line: the values of every secret setting, passwords inside URLs and bearer tokens
are replaced by `***` in the final text, whatever logger or library produced it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import random
import re
import sys
import traceback
from collections.abc import Iterator
from contextvars import ContextVar
from typing import IO, Any, Literal

import msgspec

from aethera.settings import _SPECS, Settings

Service = Literal["api", "worker", "cli"]

request_id_var: ContextVar[str | None] = ContextVar("aethera_request_id", default=None)
run_id_var: ContextVar[str | None] = ContextVar("aethera_run_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("aethera_task_id", default=None)

# A client-supplied X-Request-ID is reused only when it is short and harmless, so it cannot forge log
# structure or grow lines without bound; anything else is replaced by a fresh id.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}\Z")

# userinfo of a URL (redis://:pw@host, https://user:pw@host) and bearer tokens, wherever they appear
_URL_PASSWORD_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]+")

# attributes every LogRecord has; anything else was passed through `extra=` and is emitted as a field
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def make_request_id(supplied: str | None) -> str:
    """The request id for a request: the client's `X-Request-ID` when it is safe to reuse, else a new one."""
    if supplied and _REQUEST_ID_RE.match(supplied):
        return supplied
    return new_request_id()


def new_request_id() -> str:
    """32 hex digits, unique enough to correlate log lines (not a secret: no urandom call per request)."""
    return f"{random.getrandbits(128):032x}"


@contextlib.contextmanager
def log_context(
    *, request_id: str | None = None, run_id: str | None = None, task_id: str | None = None
) -> Iterator[None]:
    """Bind ids to every log line emitted inside the block (and in threads started from it)."""
    tokens = []
    if request_id is not None:
        tokens.append((request_id_var, request_id_var.set(request_id)))
    if run_id is not None:
        tokens.append((run_id_var, run_id_var.set(run_id)))
    if task_id is not None:
        tokens.append((task_id_var, task_id_var.set(task_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class Redactor:
    """Replaces secret values, URL passwords and bearer tokens in a text by `***`."""

    def __init__(self, secrets: list[str]) -> None:
        # longest first, so a secret that contains another is replaced whole
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        # the regexes only where they can match (an access line is written per request: this is hot)
        if "://" in text:
            text = _URL_PASSWORD_RE.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
        if "bearer" in text.lower():
            text = _BEARER_RE.sub(r"\1***", text)
        return text

    @classmethod
    def from_settings(cls, settings: Settings | None) -> Redactor:
        if settings is None:
            return cls([])
        values = [getattr(settings, spec.field) for spec in _SPECS if spec.secret]
        return cls([str(v) for v in values if v is not None])


# (second, "YYYY-MM-DDTHH:MM:SS") of the last line: the API writes an access line per request, and building
# the timestamp from this cached prefix is cheaper than a datetime per line. One tuple, read and replaced
# whole, so a line logged from another thread never pairs one second's prefix with another's check.
_ts_cache: tuple[int, str] = (-1, "")


def _utc_iso_ms(created: float) -> str:
    """`created` as `datetime.isoformat(timespec="milliseconds")` in UTC: 2026-01-31T12:00:00.123+00:00."""
    global _ts_cache
    second = int(created)
    micros = round((created - second) * 1e6)  # as datetime rounds: to the microsecond, then truncated to ms
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    cached_second, prefix = _ts_cache
    if second != cached_second:
        prefix = _dt.datetime.fromtimestamp(second, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _ts_cache = (second, prefix)
    return f"{prefix}.{micros // 1000:03d}+00:00"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, context ids, extra fields."""

    def __init__(self, service: Service, redactor: Redactor) -> None:
        super().__init__()
        self._service = service
        self._redact = redactor

    @property
    def service(self) -> Service:
        return self._service

    @property
    def redact(self) -> Redactor:
        return self._redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _utc_iso_ms(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self._service,
        }
        # the API promises a request id on every line, the worker a run and task id: the keys are always
        # present for that service (null outside a request or run), so a log query never misses a line
        if self._service == "api" or request_id_var.get() is not None:
            entry["request_id"] = request_id_var.get()
        if self._service == "worker" or run_id_var.get() is not None or task_id_var.get() is not None:
            entry["run_id"] = run_id_var.get()
            entry["task_id"] = task_id_var.get()
        # the few `extra=` fields by one set difference in C (a record has ~25 standard attributes; this
        # runs for every access line), in name order so every line lists them alike
        fields = record.__dict__
        for key in sorted(fields.keys() - _RECORD_ATTRS):
            if not key.startswith("_") and key not in entry:
                entry[key] = fields[key]
        if record.exc_info:
            entry["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            entry["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            entry["traceback"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        line = msgspec.json.encode(entry, enc_hook=str).decode()
        return self._redact(line)


class JsonLinesHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stream handler `configure_logging` installs; it can also take a line already formatted.

    `write_line` is for the API's access line (observability/access.py), which builds its JSON itself
    when this handler is the only place the line would go: it writes and flushes like `emit`, under
    the same lock, so lines from both routes never interleave."""

    def write_line(self, line: str) -> None:
        with self.lock:  # type: ignore[union-attr]
            self.stream.write(line + self.terminator)
            self.stream.flush()


def configure_logging(
    settings: Settings | None,
    service: Service,
    *,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every log record of the process, as JSON lines, to `stream` (default stderr).

    Replaces the root logger's handlers, so libraries (aiohttp, arq, botocore) log through the same
    formatter and redaction. The level comes from `settings.log_level`. Returns the installed handler.
    """
    level = (settings.log_level if settings is not None else "INFO").upper()
    handler = JsonLinesHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(service, Redactor.from_settings(settings)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # chatty libraries stay at WARNING unless the operator asks for DEBUG
    if level != "DEBUG":
        for name in ("botocore", "aiobotocore", "boto3", "urllib3", "asyncio"):
            logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    _skip_unused_record_fields()
    return handler


def _skip_unused_record_fields() -> None:
    """Stop `logging` from collecting, for every record, what no JSON line shows (the logging HOWTO's
    "Optimization" section): the caller's file and line (a stack walk per record), thread, process
    and task names. The API writes an access line per request, so this is on its hot path."""
    logging._srcfile = None  # documented switch: no findCaller per record
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if hasattr(logging, "logAsyncioTasks"):  # Python 3.12+
        logging.logAsyncioTasks = False
