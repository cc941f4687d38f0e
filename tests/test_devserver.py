"""`make run` runs `aethera dev`: sample data, an embedded Redis, a worker and the API; SIGINT stops all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from aethera.embedded_redis import free_port


def _get_health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_dev_starts_everything_and_sigint_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AETHERA_", "REDIS_", "STORAGE_", "S3_"))}
    env["AETHERA_PORT"] = str(port)
    dev = subprocess.Popen(
        [sys.executable, "-m", "aethera.cli", "dev"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240  # patience: sample data, Redis, a worker and the API on busy cores
        health: tuple[int, dict] | None = None
        while time.monotonic() < deadline:
            assert dev.poll() is None, dev.stderr.read().decode() if dev.stderr else ""
            try:
                health = _get_health(port)
                if health[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert health is not None and health[0] == 200, health
        assert health[1]["redis"]["ok"] and health[1]["storage"]["ok"]
        # the embedded defaults: sample data and storage under ./var of the working directory
        assert (tmp_path / "var" / "sample-data" / "catalog.toml").is_file()
        assert (tmp_path / "var" / "storage").is_dir()
        children = psutil.Process(dev.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "redis-server" in names and "worker" in names and "serve" in names

        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=120) == 0  # patience for busy cores
        _gone, alive = psutil.wait_procs(children, timeout=60)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
        if dev.stderr:
            dev.stderr.close()
