"""A batch of COMPLETED sites written straight into a local storage directory, as the worker and the
API would have left it (run record, AOI, each output under `attempts/1/` with its artifact index, the
batch record), so the batch export can be measured and tested at 10,000 sites without computing one.

Plain file writes, no fsync: this is test and bench data, written once. Used by
tests/api/test_batch_export.py and bench/export.py (`--batch`).
"""

from __future__ import annotations

import hashlib
import random
import uuid
import zlib
from pathlib import Path
from typing import Any

import msgspec

CREATED_AT = "2026-12-01T10:00:00.000+00:00"
FINISHED_AT = "2026-12-01T10:05:00.000+00:00"


def _square(lon: float, lat: float, side_deg: float = 0.004) -> dict[str, Any]:
    ring = [[lon, lat], [lon + side_deg, lat], [lon + side_deg, lat + side_deg], [lon, lat + side_deg], [lon, lat]]
    return {"type": "Polygon", "coordinates": [[[round(x, 6), round(y, 6)] for x, y in ring]]}


def _write(base: Path, key: str, data: bytes) -> None:
    path = base / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _layer(rng: random.Random, target_bytes: int) -> bytes:
    """An empty FeatureCollection padded with a random-named member to about `target_bytes`."""
    doc = b'{"type":"FeatureCollection","features":[]'
    if target_bytes > len(doc) + 16:
        doc += b',"padding":"' + rng.randbytes((target_bytes - len(doc) - 14) // 2).hex().encode() + b'"'
    return doc + b"}"


def _outputs(rng: random.Random, run_id: str, layer_bytes: int) -> list[tuple[str, bytes, str]]:
    """A few small outputs with varied figures, so the summary's ranking has something to order."""
    score = lambda: round(rng.random() * 100, 1)  # noqa: E731
    category = lambda s: "low" if s < 33 else "moderate" if s < 66 else "high"  # noqa: E731
    resm, ahsm, cim, sens = score(), score(), score(), score()
    overlap_pct = rng.choice([0.0, 0.0, round(rng.random() * 40, 2)])
    results = {
        "run_id": run_id,
        "aoi": {"aoi_area_ha": round(10 + rng.random() * 20, 4)},
        "resm": {"score": resm, "category": category(resm)},
        "ahsm": {"score": ahsm, "category": category(ahsm)},
        "cim": {"score": cim, "category": category(cim)},
        "biodiversity": {
            "available": True,
            "protected_overlap_ha": round(overlap_pct * 0.2, 4),
            "protected_overlap_pct": overlap_pct,
            "natura2000_overlap_pct": overlap_pct,
            "sensitivity": {"score": sens, "category": category(sens)},
            "natura2000_sites": [
                {
                    "site_code": f"DE{rng.randrange(10**6):07d}",
                    "site_name": "Heath",
                    "distance_m": round(rng.random() * 9000),
                }
            ],
        },
        "datasets": {"natura2000": "2025-01"},
        "step_durations_s": {"load": 0.1, "analyse": 0.4},
        "warnings": [],
    }
    critical = [{"rule": "natura2000_overlap"}] if overlap_pct > 20 else []
    legal = {"overall_compliant": not critical, "critical_violations": critical}
    return [
        ("layers/natura.geojson", _layer(rng, layer_bytes), "application/geo+json"),
        ("results.json", msgspec.json.encode(results), "application/json"),
        ("legal.json", msgspec.json.encode(legal), "application/json"),
        ("run.log", b"".join(f"2026-12-01T10:0{i}:00Z step {i} done\n".encode() for i in range(5)), "text/plain"),
        ("report.html", b"<!doctype html><title>report</title><p>" + run_id.encode() + b"</p>", "text/html"),
    ]


def write_stored_batch(
    base: Path, sites: int, *, seed: int = 1, failed_every: int = 0, layer_bytes: int = 0, tenant: str = "default"
) -> str:
    """Write a batch of `sites` sites under the storage directory `base`; returns its id. Every site is
    a COMPLETED run except every `failed_every`-th one (FAILED, no outputs) when that is not 0; each
    completed site has a layer of about `layer_bytes` (else a small one)."""
    rng = random.Random(seed)
    batch_id, project_id = uuid.uuid4().hex, uuid.uuid4().hex
    batch_sites = []
    for i in range(sites):
        run_id = uuid.uuid4().hex
        failed = bool(failed_every) and i % failed_every == failed_every - 1
        aoi = {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": {},
                    "geometry": _square(14.0 + 0.01 * (i % 100), 51.0 + 0.01 * (i // 100)),
                }
            ],
        }
        _write(base, f"runs/{run_id}/aoi.geojson", msgspec.json.encode(aoi))
        artifacts = []
        if not failed:
            for name, data, media_type in _outputs(rng, run_id, layer_bytes):
                _write(base, f"runs/{run_id}/attempts/1/{name}", data)
                artifacts.append(
                    {
                        "name": name,
                        "size": len(data),
                        "crc32": zlib.crc32(data) & 0xFFFFFFFF,
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "media_type": media_type,
                    }
                )
            _write(
                base,
                f"runs/{run_id}/attempts/1/artifacts.json",
                msgspec.json.encode({"run_id": run_id, "artifacts": artifacts}),
            )
        record = {
            "run_id": run_id,
            "task_id": uuid.uuid4().hex,
            "project_id": project_id,
            "project_type": "solar",
            "params": {"project_type": "solar", "country": "DEU", "capacity_mw": 10.0},
            "config": {"capacity_mw": 10},
            "aoi_source": "geojson",
            "created_at": CREATED_AT,
            "updated_at": FINISHED_AT,
            "status": "FAILED" if failed else "COMPLETED",
            "attempts": 1,
            "output_generation": None if failed else 1,
            "started_at": CREATED_AT,
            "finished_at": FINISHED_AT,
            "error": "the analysis failed" if failed else None,
            "error_code": "analysis_failed" if failed else None,
            "batch_id": batch_id,
            "tenant": tenant,
        }
        _write(base, f"runs/{run_id}/run.json", msgspec.json.encode(record))
        batch_sites.append(
            {"index": i, "name": f"site {i}", "run_id": run_id, "area_ha": 16.0, "content_key": "0" * 64}
        )
    batch = {
        "batch_id": batch_id,
        "project_id": project_id,
        "tenant": tenant,
        "project_type": "solar",
        "config": {"capacity_mw": 10},
        "params": {"project_type": "solar", "country": "DEU", "capacity_mw": 10.0},
        "created_at": CREATED_AT,
        "sites": batch_sites,
    }
    _write(base, f"batches/{batch_id}/batch.json", msgspec.json.encode(batch))
    return batch_id
