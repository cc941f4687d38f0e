"""`aethera dev` (what `make run` starts): sample data, an embedded Redis, one worker and the API.

Each service is a child process, so Ctrl-C (or SIGTERM) stops all of them the same way, and the
processes are the ones production runs under systemd (`aethera serve`, `aethera worker`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aethera.embedded_redis import EmbeddedRedis
from aethera.settings import Settings

_CHILD_STOP_S = 15.0


def _ensure_sample_data(settings: Settings, env: dict[str, str]) -> None:
    catalog = Path(settings.datasets)
    if catalog.exists():
        return
    if "AETHERA_DATASETS" in os.environ:
        # an operator's catalog that is missing is an error, not a reason to invent data
        print(f"aethera dev: AETHERA_DATASETS names a catalog that does not exist: {catalog}", file=sys.stderr)
        raise SystemExit(2)
    print(f"aethera dev: writing the synthetic sample region to {catalog.parent} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "aethera.cli", "sample-data", str(catalog.parent)], env=env, check=True)


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _CHILD_STOP_S
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_dev(settings: Settings) -> int:
    from aethera.security.auth import startup_warning

    env = dict(os.environ)
    warning = startup_warning(settings)
    if warning:  # the API logs it too; here it is the first thing the developer sees
        print(f"aethera dev: WARNING: {warning}", file=sys.stderr)
    _ensure_sample_data(settings, env)

    redis: EmbeddedRedis | None = None
    if settings.redis_url is None:
        redis = EmbeddedRedis(settings.redis_data_dir)
        env["REDIS_URL"] = redis.start()
        print(f"aethera dev: embedded Redis on 127.0.0.1:{redis.port}", file=sys.stderr)

    children: list[subprocess.Popen[bytes]] = []

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT explicitly too: a shell that starts us in the background leaves it ignored otherwise
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        children.append(subprocess.Popen([sys.executable, "-m", "aethera.cli", "worker"], env=env))
        children.append(subprocess.Popen([sys.executable, "-m", "aethera.cli", "serve"], env=env))
        print(
            f"aethera dev: API on http://{settings.host}:{settings.port} and one worker; Ctrl-C stops everything",
            file=sys.stderr,
        )
        while True:
            for child in children:
                code = child.poll()
                if code is not None:
                    print(f"aethera dev: a child process exited with status {code}; stopping", file=sys.stderr)
                    return code or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("aethera dev: stopping", file=sys.stderr)
        return 0
    finally:
        _stop(children)
        if redis is not None:
            redis.stop()
