"""Slow and broken clients against the real API process (`python server.py`), over raw sockets.

- slowloris: connections trickling their headers a byte at a time are closed at the header deadline;
- a body that does not arrive within the body deadline is answered 408 JSON and the connection closed;
- a client that disconnects mid-body is a 499 access line: no ERROR line, no 5xx in the metrics;
- requests aiohttp's parser refuses are answered 400 JSON {detail, code}, never echoing the request.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultstack import Stack

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
# the test's own patience for an event the server must cause. The deadline itself is checked by lower
# bounds (nothing closed before it) and by the event happening at all (a client that never finishes is
# never let go otherwise); the upper bound is only patience, long enough for two cores busy elsewhere
BOUND_S = 30 * HEADER_TIMEOUT_S
SLOWLORIS_CONNECTIONS = 30


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sample_catalog: Path) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("hostile"),
        sample_catalog,
        AETHERA_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        AETHERA_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
    )
    stack.start_redis()
    try:
        stack.start_api()
        yield stack
    finally:
        stack.close()


def connect(stack: Stack) -> socket.socket:
    return socket.create_connection(("127.0.0.1", stack.port), timeout=BOUND_S)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer (status, lower-cased headers, body by Content-Length); the socket's timeout
    bounds the wait."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-answer"
        body += chunk
    return status, headers, body[:length]


def wait_closed(sock: socket.socket, trickle: bytes | None = None) -> float:
    """Seconds until the server closed `sock`, sending `trickle` a byte at a time meanwhile."""
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < BOUND_S:
        readable, _, _ = select.select([sock], [], [], 0.2)  # an event wait, paced like a slow client
        if readable:
            try:
                if sock.recv(65536) == b"":
                    return time.monotonic() - started
            except ConnectionResetError:
                return time.monotonic() - started
        if trickle:
            try:
                sock.send(trickle[sent % len(trickle) :][:1])
                sent += 1
            except OSError:
                return time.monotonic() - started
    raise AssertionError(f"the server kept the connection open for {BOUND_S:g} s")


def api_log_lines(stack: Stack) -> list[dict[str, Any]]:
    lines = []
    for line in stack.log_of(stack.api).splitlines():  # type: ignore[arg-type]
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            lines.append(entry)
    return lines


def assert_no_error_lines(stack: Stack) -> None:
    errors = [e for e in api_log_lines(stack) if e.get("level") in ("ERROR", "CRITICAL")]
    assert not errors, errors


def test_slowloris_connections_are_closed_at_the_header_deadline(stack: Stack) -> None:
    socks = [connect(stack) for _ in range(SLOWLORIS_CONNECTIONS)]
    opened = time.monotonic()
    for sock in socks:
        sock.setblocking(False)
        sock.send(b"GET /health HTTP/1.1\r\nHost: aethera\r\nX-Slow: ")
    open_socks = set(socks)
    closed_after: list[float] = []
    received = b""
    while open_socks and time.monotonic() - opened < BOUND_S:
        readable, _, _ = select.select(list(open_socks), [], [], 0.2)  # paced like the attack
        for sock in readable:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            received += data
            if not data:
                closed_after.append(time.monotonic() - opened)
                open_socks.discard(sock)
        for sock in list(open_socks):
            try:
                sock.send(b"x")  # one more byte of a header that never ends
            except BlockingIOError:
                pass
            except OSError:
                closed_after.append(time.monotonic() - opened)
                open_socks.discard(sock)
    for sock in socks:
        sock.close()
    print(
        f"slowloris: {len(closed_after)} of {SLOWLORIS_CONNECTIONS} closed after "
        f"{min(closed_after, default=0):.2f}-{max(closed_after, default=0):.2f} s (header deadline {HEADER_TIMEOUT_S:g} s)"
    )
    assert not open_socks, f"{len(open_socks)} slow connections still open after {BOUND_S:g} s"
    assert min(closed_after) >= HEADER_TIMEOUT_S * 0.9  # closed by the deadline, not by something else
    assert b"200 OK" not in received
    # the server itself is unharmed
    assert stack.request("GET", "/health", auth=False).status == 200
    assert_no_error_lines(stack)


def test_an_idle_connection_is_closed_at_the_header_deadline(stack: Stack) -> None:
    sock = connect(stack)
    try:
        took_s = wait_closed(sock)
    finally:
        sock.close()
    assert took_s >= HEADER_TIMEOUT_S * 0.9


def test_a_body_slower_than_the_deadline_is_answered_408_and_closed(stack: Stack) -> None:
    sock = connect(stack)
    try:
        sock.sendall(
            b"POST /projects HTTP/1.1\r\nHost: aethera\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + stack.key.encode() + b"\r\nContent-Length: 4096\r\n\r\n"
            b'{"name": "'
        )
        started = time.monotonic()
        # trickle the body a byte at a time until the server answers
        while not select.select([sock], [], [], 0.2)[0]:
            assert time.monotonic() - started < BOUND_S, "no answer to a body slower than the deadline"
            sock.send(b"a")
        status, headers, body = read_answer(sock)
        took_s = time.monotonic() - started
        assert status == 408, body
        assert headers["content-type"].startswith("application/json")
        answer = json.loads(body)
        assert answer["code"] == "request_timeout" and answer["detail"], answer
        closed_s = wait_closed(sock, trickle=b"a")
    finally:
        sock.close()
    print(f"slow body: 408 after {took_s:.2f} s (body deadline {BODY_TIMEOUT_S:g} s), closed {closed_s:.2f} s later")
    assert took_s >= BODY_TIMEOUT_S * 0.9
    assert_no_error_lines(stack)


def _requests_by_status(stack: Stack) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = stack.request("GET", "/metrics").body.decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "aethera_http_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = f"{sample.labels['method']} {sample.labels['route']} {sample.labels['status']}"
                    out[key] = out.get(key, 0) + sample.value
    return out


def test_a_client_gone_mid_body_is_a_499_not_an_error(stack: Stack) -> None:
    sock = connect(stack)
    try:
        # Expect: 100-continue makes the server say when it is handling the request, so the disconnect
        # surely hits a request whose body is being waited for
        sock.sendall(
            b"POST /projects HTTP/1.1\r\nHost: aethera\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + stack.key.encode() + b"\r\nContent-Length: 100000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 100"), "no 100 Continue"
        sock.sendall(b'{"name": "' + b"a" * 1000)
    finally:
        sock.close()

    def access_line() -> dict[str, Any] | None:
        return next(
            (e for e in api_log_lines(stack) if e.get("logger") == "aethera.access" and e.get("status") == 499), None
        )

    line = stack.wait_until(access_line, BOUND_S, "no 499 access line for the client that left")
    assert line["level"] in ("INFO", "WARNING") and line["route"] == "/projects", line
    assert_no_error_lines(stack)
    counts = _requests_by_status(stack)
    assert counts.get("POST /projects 499", 0) >= 1, counts
    assert not [k for k in counts if k.rsplit(" ", 1)[1].startswith("5")], counts


@pytest.mark.parametrize(
    ("what", "raw", "secret"),
    [
        ("request line", b"G\x01T /health?q=s3cr3t-line HTTP/1.1\r\nHost: aethera\r\n\r\n", b"s3cr3t-line"),
        ("header name", b"GET /health HTTP/1.1\r\nHost: aethera\r\nBad s3cr3t-name: v\r\n\r\n", b"s3cr3t-name"),
        ("header value", b"GET /health HTTP/1.1\r\nHost: aethera\r\nX-A: s3cr3t-value\x01\r\n\r\n", b"s3cr3t-value"),
        (
            "long header",
            b"GET /health HTTP/1.1\r\nHost: aethera\r\nX-Long: s3cr3t-long" + b"z" * 10000 + b"\r\n\r\n",
            b"s3cr3t-long",
        ),
    ],
)
def test_an_unparseable_request_is_answered_400_json_without_echo(
    stack: Stack, what: str, raw: bytes, secret: bytes
) -> None:
    sock = connect(stack)
    try:
        sock.sendall(raw)
        status, headers, body = read_answer(sock)
        wait_closed(sock)  # and the connection is closed: nothing after a broken request can be trusted
    finally:
        sock.close()
    assert status == 400, (what, body)
    assert headers["content-type"].startswith("application/json"), (what, headers)
    answer = json.loads(body)
    assert set(answer) == {"detail", "code"} and answer["code"] == "malformed_request", answer
    assert secret not in body and b"\\x01" not in body, (what, body)
    assert secret.decode() not in stack.log_of(stack.api)  # type: ignore[arg-type]
    assert_no_error_lines(stack)
