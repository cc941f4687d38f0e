"""SIGTERM to a real `python server.py`: it stops accepting, lets in-flight requests and downloads finish
within AETHERA_SHUTDOWN_GRACE_S, cuts what is still running past it, and exits cleanly."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from aethera.embedded_redis import free_port
from aethera.settings import load_settings

from .conftest import write_completed_run

ROOT = Path(__file__).resolve().parents[2]
EXPORT_PAYLOAD_BYTES = 16 * 1024 * 1024  # far more than socket buffers hold: the download takes a while


class ServerProcess:
    """`python server.py` with its own port, storage and log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.port = int(env["AETHERA_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full = {k: v for k, v in os.environ.items() if not k.startswith(("AETHERA_", "S3_", "STORAGE_", "REDIS_"))}
        full.update(env, PYTHONUNBUFFERED="1")
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "server.py")],
            env=full,
            cwd=str(ROOT),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_healthy(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
                try:
                    async with session.get(self.url + "/health") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("server did not become healthy:\n" + self.log_path.read_text()[-3000:])

    def accepts_connections(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    async def wait_exit(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        code = self.proc.poll()
        assert code is not None, f"server still running {timeout_s} s after SIGTERM"
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def _env(tmp_path: Path, redis_url: str, grace_s: float) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "STORAGE_BACKEND": "local",
        "STORAGE_BASE_PATH": str(tmp_path / "storage"),
        "AETHERA_DATASETS": str(tmp_path / "no-catalog.toml"),
        "AETHERA_AUTH": "off",
        "AETHERA_HOST": "127.0.0.1",
        "AETHERA_PORT": str(free_port()),
        "AETHERA_SHUTDOWN_GRACE_S": str(grace_s),
        "AETHERA_LOG_LEVEL": "INFO",
    }


@pytest.fixture
def start_server(tmp_path: Path, ops_redis_url: str) -> Iterator[object]:
    started: list[ServerProcess] = []

    def start(grace_s: float) -> ServerProcess:
        env = _env(tmp_path, ops_redis_url, grace_s)
        server = ServerProcess(env, tmp_path / f"server-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


async def test_sigterm_lets_an_inflight_upload_finish(start_server: object) -> None:
    server: ServerProcess = start_server(grace_s=20)  # type: ignore[operator]
    await server.wait_healthy()
    sent_first = asyncio.Event()
    may_finish = asyncio.Event()
    chunks = [b'{"type": "Point", "coordinates": [14.0, 51.5]}'] + [b" " * 16384] * 24

    async def slow_body() -> AsyncIterator[bytes]:
        for i, chunk in enumerate(chunks):
            yield chunk
            if i == 1:
                # the rest of the body is held until the test has seen the shutdown begin: the upload is in
                # flight across the signal by construction, however slowly either process runs
                sent_first.set()
                await may_finish.wait()
            await asyncio.sleep(0.01)

    async with aiohttp.ClientSession() as session:
        async with session.post(server.url + "/projects", json={"name": "shutdown test"}) as resp:
            assert resp.status == 201, await resp.text()
            project_id = (await resp.json())["id"]
        upload = asyncio.create_task(
            session.put(
                f"{server.url}/projects/{project_id}/uploads/site.geojson",
                data=slow_body(),
                headers={"X-Request-ID": "inflight-upload"},
            )
        )
        await asyncio.wait_for(sent_first.wait(), 60)
        server.proc.send_signal(signal.SIGTERM)
        # stops accepting: the listening socket closes while the upload is still in flight
        deadline = time.monotonic() + 60  # patience for busy cores; the event is what is waited for
        while server.accepts_connections() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not server.accepts_connections()
        assert not upload.done()
        may_finish.set()
        resp = await asyncio.wait_for(upload, 60)
        async with resp:
            assert resp.status == 201, await resp.text()
            assert (await resp.json())["size"] == sum(len(c) for c in chunks)
            assert resp.headers["X-Request-ID"] == "inflight-upload"
    assert await server.wait_exit(30) == 0

    # the process logged JSON lines, the upload's with its request id
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    assert lines and all("request_id" in line for line in lines)
    access = [
        line
        for line in lines
        if line.get("logger") == "aethera.access"
        and line.get("status") == 201
        and line.get("route") == "/projects/{project_id}/uploads/{name}"
    ]
    assert [line["request_id"] for line in access] == ["inflight-upload"]


async def test_sigterm_lets_an_export_download_finish(start_server: object) -> None:
    server: ServerProcess = start_server(grace_s=30)  # type: ignore[operator]
    run_id = await write_completed_run(load_settings(server.env), EXPORT_PAYLOAD_BYTES)
    await server.wait_healthy()
    received = io.BytesIO()
    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/runs/{run_id}/export") as resp:
        assert resp.status == 200, await resp.text()
        length = int(resp.headers["Content-Length"])
        assert length > EXPORT_PAYLOAD_BYTES
        signalled = False
        while True:
            chunk = await resp.content.read(256 * 1024)
            if not chunk:
                break
            received.write(chunk)
            if not signalled and received.tell() >= 1024 * 1024:
                server.proc.send_signal(signal.SIGTERM)
                signalled = True
            await asyncio.sleep(0.01)  # a slow client: the download spans the shutdown
    assert signalled
    assert received.tell() == length
    with zipfile.ZipFile(received) as archive:
        assert archive.testzip() is None
        assert any(name.endswith("run.log") for name in archive.namelist())
    assert await server.wait_exit(30) == 0


async def test_grace_period_bounds_the_wait(start_server: object) -> None:
    # a client that stops reading mid-download must not hold the shutdown past the grace period
    server: ServerProcess = start_server(grace_s=1)  # type: ignore[operator]
    run_id = await write_completed_run(load_settings(server.env), EXPORT_PAYLOAD_BYTES)
    await server.wait_healthy()
    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/runs/{run_id}/export") as resp:
        assert resp.status == 200
        await resp.content.read(64 * 1024)
        server.proc.send_signal(signal.SIGTERM)
        # the default grace is 60 s; exiting well before that shows the setting is the one applied
        assert await server.wait_exit(45) == 0  # under the 60 s default, with room for busy cores
        with pytest.raises(aiohttp.ClientError):
            while await resp.content.read(1024 * 1024):
                pass
