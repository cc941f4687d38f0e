"""JSON logs: one object a line, context ids on every line, secrets redacted, level from settings."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
from collections.abc import Iterator

import pytest

from aethera.observability.logs import Redactor, _utc_iso_ms, configure_logging, log_context, make_request_id
from aethera.settings import load_settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_api_lines_are_json_with_request_id(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging(load_settings({}), "api", stream=out)
    log = logging.getLogger("aethera.test")
    log.info("outside")
    with log_context(request_id="req-1"):
        log.info("inside %s", "a request", extra={"route": "/projects"})
    lines = _lines(out)
    assert [line["message"] for line in lines] == ["outside", "inside a request"]
    assert lines[0]["request_id"] is None  # the key is always there on API lines
    assert lines[1]["request_id"] == "req-1"
    assert lines[1]["route"] == "/projects"
    assert lines[1]["level"] == "INFO" and lines[1]["service"] == "api"
    assert lines[1]["ts"].endswith("+00:00")


async def test_worker_lines_carry_run_and_task_into_threads(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging(load_settings({}), "worker", stream=out)
    log = logging.getLogger("aethera.test")
    with log_context(run_id="r" * 32, task_id="t" * 32):
        # the pipeline runs in a thread: asyncio.to_thread copies the context, so ids follow it
        await asyncio.to_thread(log.info, "step done")
    log.info("idle")
    lines = _lines(out)
    assert lines[0]["run_id"] == "r" * 32 and lines[0]["task_id"] == "t" * 32
    assert lines[1]["run_id"] is None and lines[1]["task_id"] is None


def test_level_from_settings(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging(load_settings({"AETHERA_LOG_LEVEL": "WARNING"}), "api", stream=out)
    logging.getLogger("aethera.test").info("hidden")
    logging.getLogger("aethera.test").warning("shown")
    assert [line["message"] for line in _lines(out)] == ["shown"]


def test_secrets_never_logged(restore_logging: None) -> None:
    out = io.StringIO()
    settings = load_settings(
        {
            "STORAGE_BACKEND": "s3",
            "S3_BUCKET": "b",
            "S3_SECRET_ACCESS_KEY": "very-secret-key-123",
            "REDIS_URL": "redis://:hunter2pw@redis.internal:6379/0",
        }
    )
    configure_logging(settings, "api", stream=out)
    log = logging.getLogger("aethera.test")
    log.warning("connecting to %s with %s", "redis://:hunter2pw@redis.internal:6379/0", "very-secret-key-123")
    log.warning("header Authorization: Bearer ak_live_abcdef123456")
    log.warning("other url https://user:pa55word@s3.example.org/x")
    try:
        raise ValueError("boom very-secret-key-123")
    except ValueError:
        log.exception("failed")
    text = out.getvalue()
    for secret in ("hunter2pw", "very-secret-key-123", "ak_live_abcdef123456", "pa55word"):
        assert secret not in text
    lines = _lines(out)
    assert lines[0]["message"] == "connecting to *** with ***"
    assert "https://user:***@s3.example.org/x" in lines[2]["message"]
    assert lines[3]["exc_type"] == "ValueError" and "boom ***" in lines[3]["traceback"]


def test_redactor_keeps_ordinary_text() -> None:
    redact = Redactor(["abcd1234"])
    assert redact("nothing to hide, see http://example.org/a:b") == "nothing to hide, see http://example.org/a:b"
    assert redact("key abcd1234!") == "key ***!"


@pytest.mark.parametrize(
    ("supplied", "kept"),
    [
        ("abc-123", True),
        ("4f1c2e1d-0000-4000-8000-000000000000", True),
        ("", False),
        (None, False),
        ("has space", False),
        ("x" * 129, False),
        ('inject"}\n{', False),
    ],
)
def test_request_id_reused_only_when_safe(supplied: str | None, kept: bool) -> None:
    rid = make_request_id(supplied)
    assert (rid == supplied) is kept
    if not kept:
        assert len(rid) == 32 and int(rid, 16) >= 0


@pytest.mark.parametrize(
    "created",
    [0.0, 1.0005, 1170590979.425, 1e9 + 0.9999995, 1e9 + 0.9994999, 1_780_000_000.123456, 1_780_000_059.9999999],
)
def test_timestamp_is_the_isoformat_of_the_utc_time(created: float) -> None:
    # the cached-prefix timestamp rounds like datetime (to the microsecond, then cut to ms) at every edge
    expected = dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="milliseconds")
    assert _utc_iso_ms(created) == expected
    assert _utc_iso_ms(created + 1) == dt.datetime.fromtimestamp(created + 1, dt.UTC).isoformat(
        timespec="milliseconds"
    )  # the next second: a new prefix
    assert _utc_iso_ms(created) == expected  # and back: the cache follows the time it is given


def test_extra_fields_all_present_in_name_order(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging(load_settings({}), "api", stream=out)
    extra = {"status": 200, "route": "/x", "bytes_sent": None, "_private": 1, "duration_ms": 1.5}
    logging.getLogger("aethera.access").info("GET /x", extra=extra)
    line = json.loads(out.getvalue())
    fields = [k for k in line if k in extra]
    assert fields == ["bytes_sent", "duration_ms", "route", "status"]  # no underscore field
    assert line["status"] == 200 and line["bytes_sent"] is None
    assert "lineno" not in line and "thread" not in line  # standard record attributes stay out
