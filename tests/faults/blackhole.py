"""A TCP proxy on loopback that can turn into a black hole: it accepts connections and never answers.

`forwarding` relays bytes both ways to the target (the service starts and works normally); `hang()`
makes it swallow every byte from then on, on connections already open (a client's pooled keep-alive
connection) as well as new ones, which it still accepts. That is a hung dependency as the red team saw
it: a connect succeeds, and the answer never comes. `resume()` relays again on new connections.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class BlackHoleProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        # port 0: the kernel picks a free port, so nothing can race for it
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.forwarding = True
        self.accepted = 0  # connections accepted, forwarding or not
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="blackhole-accept").start()

    def url(self, scheme: str, path: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def hang(self) -> None:
        self.forwarding = False

    def resume(self) -> None:
        """Relay again; connections that hung stay hung (their streams are broken), new ones work."""
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self.forwarding = True

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._track(client)
            upstream: socket.socket | None = None
            if self.forwarding:
                try:
                    upstream = socket.create_connection(self._target, timeout=5)
                    upstream.settimeout(None)
                    self._track(upstream)
                except OSError:
                    client.close()
                    continue
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            if upstream is not None:
                threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket | None) -> None:
        """Relay src -> dst while forwarding; swallow everything once hung (or with no upstream)."""
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if dst is not None and self.forwarding:
                    dst.sendall(data)
        if dst is not None and self.forwarding:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
