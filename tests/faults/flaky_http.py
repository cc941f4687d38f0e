"""An HTTP/1.1 proxy on loopback that answers the next N requests with a fault, then passes requests through.

Faults are per request, not per connection: the proxy reads each request head on a client connection
(kept-alive ones included) and either relays it to the target or answers it itself and closes the
connection. What a fault looks like (`how`):
- an HTTP status ("503", "500", "403", "404", ...): an S3-style XML error answer with that status;
- "reset": the connection is closed with a TCP RST (a connection reset by peer);
- "hang": the request is read and never answered (a timeout on the client's side).

Control: `fail_next(count, how)` in this process, or over HTTP on the proxy's own port (what a test
uses when the proxy runs in a process of its own): `POST /__flaky__/fail?count=3&how=503` and
`GET /__flaky__/stats` -> {"faulted": n, "forwarded": n, "pending": n}.

Run as a script (`python flaky_http.py HOST PORT`) it prints its port on the first line of stdout and
serves until stdin closes. A GDAL read must not meet this proxy in the process that reads: pyogrio holds
the GIL in some GDAL calls, and a proxy thread of the same interpreter would wait on it for ever.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

_REASONS = {
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_S3_CODES = {403: "AccessDenied", 404: "NoSuchKey", 429: "SlowDown", 500: "InternalError", 503: "SlowDown"}


class FlakyHttpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))  # port 0: the kernel picks a free one
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pending: list[str] = []  # the faults still to answer, in order
        self.faulted = 0  # requests answered with a fault
        self.forwarded = 0  # requests relayed to the target
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="flaky-accept").start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, count: int, how: str = "503") -> None:
        """The next `count` requests get the fault `how` (replacing faults not yet answered)."""
        with self._lock:
            self._pending = [how] * count

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"faulted": self.faulted, "forwarded": self.forwarded, "pending": len(self._pending)}

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    # --- connections ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        buffer = b""
        try:
            while True:
                head, buffer = _read_head(client, buffer)
                if head is None:
                    return
                body_len = _content_length(head)
                while len(buffer) < body_len:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                body, buffer = buffer[:body_len], buffer[body_len:]
                target = head.split(b" ", 2)[1].decode("latin-1")
                if target.startswith("/__flaky__/"):
                    _answer(client, 200, json.dumps(self._control(target)).encode(), "application/json")
                    continue
                with self._lock:
                    fault = self._pending.pop(0) if self._pending else None
                    if fault is None:
                        self.forwarded += 1
                    else:
                        self.faulted += 1
                if fault is not None:
                    self._fault(client, fault)
                    return
                if upstream is None:
                    upstream = socket.create_connection(self._target, timeout=10)
                    upstream.settimeout(None)
                    with self._lock:
                        self._sockets.append(upstream)
                    threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
                upstream.sendall(head + body)
        except OSError:
            return
        finally:
            if upstream is not None:
                with contextlib.suppress(OSError):
                    upstream.close()
            with contextlib.suppress(OSError):
                client.close()

    def _fault(self, client: socket.socket, how: str) -> None:
        if how == "reset":
            # SO_LINGER with a zero timeout: close() sends an RST instead of a FIN
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if how == "hang":
            with contextlib.suppress(OSError):
                while client.recv(65536):  # read and never answer, until the client gives up
                    pass
            return
        status = int(how)
        code = _S3_CODES.get(status, "InternalError")
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>injected fault</Message></Error>'
        ).encode()
        _answer(client, status, body, "application/xml", close=True)

    def _control(self, target: str) -> dict[str, int]:
        parts = urlsplit(target)
        if parts.path == "/__flaky__/fail":
            query = parse_qs(parts.query)
            self.fail_next(int(query["count"][0]), query.get("how", ["503"])[0])
        return self.stats()


def _read_head(sock: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None, buffer
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    return buffer[:end], buffer[end:]


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _answer(sock: socket.socket, status: int, body: bytes, media_type: str, *, close: bool = False) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\nContent-Type: {media_type}\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    sock.sendall(head.encode() + body)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


class FlakyProxyProcess:
    """A `FlakyHttpProxy` in a process of its own, controlled over HTTP."""

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), target.hostname or "127.0.0.1", str(target.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())  # printed once it listens

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, count: int, how: str = "503") -> dict[str, int]:
        return self._call(f"/__flaky__/fail?count={count}&how={how}", "POST")

    def stats(self) -> dict[str, int]:
        return self._call("/__flaky__/stats", "GET")

    def _call(self, path: str, method: str) -> dict[str, int]:
        with urllib.request.urlopen(urllib.request.Request(self.url() + path, method=method), timeout=10) as resp:
            return dict(json.loads(resp.read()))

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()  # the proxy exits when its stdin closes
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def main() -> None:
    proxy = FlakyHttpProxy(sys.argv[1], int(sys.argv[2]))
    print(proxy.port, flush=True)
    sys.stdin.read()  # until the test closes our stdin (or dies)
    proxy.close()


if __name__ == "__main__":
    main()
