"""The export reads `run.json` as the typed RunRecord: what the manifest shows of the run is the
record's own fields, and a record whose fields have the wrong types is refused, not copied into the
archive."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from exportkit import write_run

from aethera.errors import AetheraError
from aethera.export import plan_export
from aethera.storage.artifacts import artifact_key
from aethera.storage.local import LocalStorage


@pytest.fixture
async def storage(tmp_path) -> AsyncIterator[LocalStorage]:
    s = await LocalStorage(tmp_path / "storage").open()
    yield s
    await s.close()


async def test_manifest_shows_the_typed_record(storage: LocalStorage) -> None:
    run = await write_run(storage, layer_bytes=2_000)
    plan = await plan_export(storage, run.run_id)
    manifest = msgspec.json.decode(plan.members[0].data)
    assert manifest["run"]["status"] == "COMPLETED" and manifest["run"]["attempts"] == 1
    assert manifest["run"]["params"] == run.record["params"]
    assert "job_id" not in manifest["run"] and "idempotency_key_sha256" not in manifest["run"]
    assert manifest["timings"]["run"]["finished_at"] == run.record["finished_at"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("attempts", "three"), ("params", ["not", "a", "mapping"]), ("output_generation", "1"), ("tenant", 5)],
)
async def test_a_record_with_a_mistyped_field_is_refused(storage: LocalStorage, field: str, value: object) -> None:
    run = await write_run(storage, layer_bytes=2_000)
    await storage.save(artifact_key(run.run_id, "run.json"), msgspec.json.encode({**run.record, field: value}))
    with pytest.raises(AetheraError) as info:
        await plan_export(storage, run.run_id)
    assert info.value.detail == "the run record is unreadable"
