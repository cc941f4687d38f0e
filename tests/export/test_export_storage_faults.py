"""A member read that fails part-way: resumed where it stopped when the failure is transient, a clean
error when it persists. Real local storage underneath, with a failure injected into its stream."""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from exportkit import write_run

from aethera import export
from aethera.errors import StorageUnavailable
from aethera.export import iter_archive, plan_export
from aethera.storage.local import LocalStorage

LAYER = "layers/natura.geojson"


class FlakyStorage:
    """Delegates to a real storage; the stream of `key` fails on its first `failures` openings (like an
    S3 connection reset mid-body): after `after_chunks` chunks the first time, after `again_after` later."""

    def __init__(self, inner: Any, key_suffix: str, after_chunks: int, failures: int, again_after: int = 0) -> None:
        self.inner, self.key_suffix, self.after, self.failures = inner, key_suffix, after_chunks, failures
        self.again_after = again_after
        self.opens: Counter[str] = Counter()
        self.closed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def stream(self, key: str, **kw: Any) -> AsyncIterator[bytes]:
        self.opens[key] += 1
        return self._stream(key, self.opens[key], **kw)

    async def _stream(self, key: str, opening: int, **kw: Any) -> AsyncIterator[bytes]:
        inner = self.inner.stream(key, **kw)
        try:
            n = 0
            async for chunk in inner:
                limit = self.after if opening == 1 else self.again_after
                if key.endswith(self.key_suffix) and opening <= self.failures and n == limit:
                    raise StorageUnavailable("connection reset (injected)")
                n += 1
                yield chunk
        finally:
            await inner.aclose()
            self.closed += 1


@pytest.fixture
async def storage(tmp_path) -> AsyncIterator[LocalStorage]:
    s = await LocalStorage(tmp_path / "storage").open()
    yield s
    await s.close()


async def collect(plan: Any, storage: Any) -> bytes:
    return b"".join([c async for c in iter_archive(plan, storage, chunk_size=64 * 1024)])


async def test_transient_failure_mid_member_is_resumed(storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "RESUME_BACKOFF_S", 0.0)
    run = await write_run(storage, layer_bytes=600_000)
    plan = await plan_export(storage, run.run_id)
    reference = await collect(plan, storage)
    # fails part-way, then once more at once on re-opening, then works: within RESUME_ATTEMPTS
    flaky = FlakyStorage(storage, LAYER, after_chunks=3, failures=2)
    body = await collect(plan, flaky)
    assert body == reference
    assert zipfile.ZipFile(io.BytesIO(body)).read(LAYER) == run.members[LAYER]
    assert flaky.opens[f"runs/{run.run_id}/{LAYER}"] == 3
    assert flaky.closed == sum(flaky.opens.values())  # every stream opened was closed


async def test_failures_with_progress_in_between_keep_resuming(storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long download over a connection that drops every few chunks still completes."""
    monkeypatch.setattr(export, "RESUME_BACKOFF_S", 0.0)
    run = await write_run(storage, layer_bytes=600_000)
    plan = await plan_export(storage, run.run_id)
    flaky = FlakyStorage(storage, LAYER, after_chunks=2, failures=100, again_after=2)
    body = await collect(plan, flaky)
    assert zipfile.ZipFile(io.BytesIO(body)).read(LAYER) == run.members[LAYER]
    assert flaky.opens[f"runs/{run.run_id}/{LAYER}"] > export.RESUME_ATTEMPTS + 1


async def test_persistent_failure_ends_with_the_storage_error(storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "RESUME_BACKOFF_S", 0.0)
    run = await write_run(storage, layer_bytes=600_000)
    plan = await plan_export(storage, run.run_id)
    flaky = FlakyStorage(storage, LAYER, after_chunks=3, failures=100, again_after=0)
    with pytest.raises(StorageUnavailable):
        await collect(plan, flaky)
    assert flaky.opens[f"runs/{run.run_id}/{LAYER}"] == export.RESUME_ATTEMPTS + 1
    assert flaky.closed == sum(flaky.opens.values())


async def test_closing_the_archive_early_closes_the_member_stream_at_once(storage) -> None:
    """A client that goes away mid-member: closing the archive iterator closes the storage stream it was
    reading before `aclose()` returns, not later through the garbage collector's finaliser."""
    run = await write_run(storage, layer_bytes=600_000)
    plan = await plan_export(storage, run.run_id)
    tracked = FlakyStorage(storage, LAYER, after_chunks=0, failures=0)
    chunks = iter_archive(plan, tracked, chunk_size=64 * 1024)
    async for _ in chunks:
        if sum(tracked.opens.values()) and tracked.closed < sum(tracked.opens.values()):
            break  # inside a stored member, its stream open
    assert tracked.closed < sum(tracked.opens.values())
    await chunks.aclose()
    assert tracked.closed == sum(tracked.opens.values())
