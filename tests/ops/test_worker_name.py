"""A worker's name comes from its systemd instance (`AETHERA_WORKER_INSTANCE`, set by the unit), so a
restarted worker reports under the same name and adds no new metrics series."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import servicekit as kit
from prometheus_client.parser import text_string_to_metric_families

from aethera.observability import keys


async def _names(client: Any) -> set[str]:
    return {(n.decode() if isinstance(n, bytes) else n) for n in await client.zrange(keys.WORKERS, 0, -1)}


async def test_a_restarted_worker_keeps_its_name(make_service: Any, tmp_path: Path) -> None:
    from redis.asyncio import Redis

    svc = await make_service(AETHERA_WORKER_INSTANCE="7")
    expected = f"{socket.gethostname()}-7"
    redis = Redis.from_url(svc.env["REDIS_URL"])
    try:
        for attempt in range(2):
            # SIGKILL: the worker cannot remove its own heartbeat, as after a crash or a lost machine
            worker = kit.WorkerProcess(svc.env, tmp_path / f"worker-{attempt}.log")
            try:
                name = await kit.wait_for(lambda: _beating(redis, worker.proc.pid), timeout_s=90)
            finally:
                worker.kill()
                worker.stop()
            assert name == expected
            assert await _names(redis) == {expected}  # the killed worker's entry was taken over, not added to
        resp = await svc.client.get("/metrics")
        assert resp.status == 200
        families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
        series = {s.labels["worker"] for s in families["aethera_worker_last_heartbeat_age_seconds"].samples}
        assert series == {expected}  # one series across the restart
    finally:
        await redis.aclose()


async def _beating(redis: Any, pid: int) -> str | None:
    """The name under which the worker process `pid` sent its heartbeat, once it has."""
    import msgspec

    for name in await _names(redis):
        info = await redis.get(keys.WORKER_INFO.format(name=name))
        if info and msgspec.json.decode(info).get("pid") == pid:
            return name
    return None
