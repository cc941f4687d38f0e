"""Catalog layers on S3 whose server fails: GDAL retries what it can, the rest is classified.

The layers live on a moto S3 server in a process of its own, behind `FlakyHttpProxy` (also a process of
its own: GDAL reads in this process, see flaky_http.py), which answers the next N requests with a
fault. Transient faults (5xx, reset connections, timeouts) are either absorbed by GDAL's retries or
become `DatasetUnavailable`, which the worker answers with another attempt; permanent ones (403, 404,
a corrupt file) stay `DatasetError`, and an optional layer they hit is reported unavailable.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from faultstack import Stack
from flaky_http import FlakyHttpProxy, FlakyProxyProcess
from shapely.geometry import box

from aethera.analysis import pipeline
from aethera.analysis.aoi import load_aoi
from aethera.analysis.params import RunParams
from aethera.data.catalog import check_catalog, load_catalog
from aethera.data.gdal_io import transient_reason
from aethera.data.sample import sample_region
from aethera.errors import DatasetError, DatasetUnavailable
from aethera.jobs.failures import is_transient

LAYER_FILES = ("land_cover.tif", "elevation.tif", "protected_areas.gpkg", "settlements.gpkg", "water.gpkg")


def _upload(endpoint: str, sample_catalog: Path) -> str:
    bucket = f"layers-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    client.create_bucket(Bucket=bucket)
    for name in LAYER_FILES:
        client.upload_file(str(sample_catalog.parent / name), bucket, f"sample/{name}")
    client.put_object(Bucket=bucket, Key="sample/corrupt.tif", Body=b"II*\x00" + b"not a raster" * 100)
    return bucket


def _catalog(
    sample_catalog: Path,
    directory: Path,
    bucket: str,
    on_s3: tuple[str, ...] = LAYER_FILES,
    rename: dict[str, str] | None = None,
) -> Path:
    """The sample catalog with the files in `on_s3` read from the bucket (the others stay local)."""
    text = sample_catalog.read_text()
    for name in LAYER_FILES:
        target = (
            f"s3://{bucket}/sample/{(rename or {}).get(name, name)}"
            if name in on_s3
            else str(sample_catalog.parent / name)
        )
        text = text.replace(f'path = "{name}"', f'path = "{target}"')
    path = directory / f"catalog-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def flaky_s3(s3_endpoint_process: str) -> Iterator[FlakyProxyProcess]:
    proxy = FlakyProxyProcess(s3_endpoint_process)
    yield proxy
    proxy.close()


@pytest.fixture
def layers_on_s3(
    s3_endpoint_process: str, sample_catalog: Path, flaky_s3: FlakyProxyProcess, gdal_settings: Callable[..., None]
) -> Callable[..., str]:
    """`configure(max_retry, timeout_s)`: GDAL pointed at the proxy; returns a new bucket of the layers.

    A new bucket each time: GDAL remembers a failed read of a file for the life of the process."""
    flaky_s3.fail_next(0)

    def configure(max_retry: int = 0, timeout_s: float = 30.0) -> str:
        bucket = _upload(s3_endpoint_process, sample_catalog)
        gdal_settings(
            s3_endpoint_url=flaky_s3.url(),
            s3_access_key_id="testing",
            s3_secret_access_key="testing",
            gdal_http_max_retry=max_retry,
            gdal_http_retry_delay_s=0.05,
            gdal_http_timeout_s=timeout_s,
        )
        return bucket

    return configure


def _screen(catalog_path: Path) -> Any:
    x, y = sample_region().xy(-8.0, -9.8)
    aoi = load_aoi(box(x, y, x + 2000, y + 1500).wkt, crs="EPSG:3035")
    return pipeline.run(
        aoi,
        RunParams.from_request("solar", "DEU", None, None),
        load_catalog(catalog_path),
        lambda *a: None,
        lambda: False,
    ).results


@pytest.mark.parametrize("how", ["503", "500", "reset"])
def test_a_few_failed_requests_are_retried_by_gdal_and_the_run_completes(
    how: str, layers_on_s3: Callable[..., str], flaky_s3: FlakyProxyProcess, sample_catalog: Path, tmp_path: Path
) -> None:
    bucket = layers_on_s3(max_retry=3)
    flaky_s3.fail_next(3, how)  # the run's first requests fail; GDAL asks again (up to 3 times each)
    results = _screen(_catalog(sample_catalog, tmp_path, bucket))
    assert flaky_s3.stats()["faulted"] >= 3 and flaky_s3.stats()["pending"] == 0
    assert all(d.available for d in results.datasets), [(d.layer, d.reason) for d in results.datasets]
    assert results.land_cover.aoi.classified_ha == pytest.approx(300.0, rel=0.005)


@pytest.mark.parametrize("how", ["503", "reset", "hang"])
def test_an_optional_layer_whose_server_keeps_failing_is_transient_not_dropped(
    how: str, layers_on_s3: Callable[..., str], flaky_s3: FlakyProxyProcess, sample_catalog: Path, tmp_path: Path
) -> None:
    bucket = layers_on_s3(max_retry=1, timeout_s=1.0)
    catalog = _catalog(sample_catalog, tmp_path, bucket, on_s3=("elevation.tif",))  # the rest is local
    flaky_s3.fail_next(1000, how)
    with pytest.raises(DatasetUnavailable) as caught:
        _screen(catalog)
    assert caught.value.extra["layer"] == "elevation" and is_transient(caught.value)
    assert caught.value.code == "dataset_unavailable"
    # the message names the file and the kind of failure, never the endpoint or GDAL's text
    assert "elevation.tif" in caught.value.detail and "127.0.0.1" not in caught.value.detail
    # `aethera datasets check` (a process of its own) reports it as a problem of that file, not stopping
    catalog = _catalog(sample_catalog, tmp_path, layers_on_s3(max_retry=1, timeout_s=1.0), on_s3=("elevation.tif",))
    report = next(r for r in check_catalog(load_catalog(catalog)) if r.layer == "elevation")
    assert not report.ok and "could not be read for now" in report.problems[0]


def test_a_required_layer_whose_server_keeps_failing_is_transient(
    layers_on_s3: Callable[..., str], flaky_s3: FlakyProxyProcess, sample_catalog: Path, tmp_path: Path
) -> None:
    bucket = layers_on_s3(max_retry=1)
    flaky_s3.fail_next(1000, "503")
    with pytest.raises(DatasetUnavailable) as caught:
        _screen(_catalog(sample_catalog, tmp_path, bucket, on_s3=("land_cover.tif",)))
    assert caught.value.extra["layer"] == "land_cover" and is_transient(caught.value)


@pytest.mark.parametrize("how", ["403", "404"])
def test_a_refused_or_missing_optional_layer_is_permanent_and_reported(
    how: str, layers_on_s3: Callable[..., str], flaky_s3: FlakyProxyProcess, sample_catalog: Path, tmp_path: Path
) -> None:
    bucket = layers_on_s3(max_retry=3)
    catalog = _catalog(sample_catalog, tmp_path, bucket, on_s3=("elevation.tif",))
    flaky_s3.fail_next(1000, how)
    results = _screen(catalog)  # permanent: no retry of the run; the layer is named unavailable
    elevation = next(d for d in results.datasets if d.layer == "elevation")
    assert not elevation.available and "elevation.tif" in (elevation.reason or "")
    assert results.terrain.available is False
    assert flaky_s3.stats()["faulted"] >= 1  # the fault was met, and did not fail the run


def test_a_missing_or_corrupt_required_layer_is_permanent(
    layers_on_s3: Callable[..., str], sample_catalog: Path, tmp_path: Path
) -> None:
    bucket = layers_on_s3(max_retry=3)
    for name in ("corrupt.tif", "nothing-here.tif"):
        catalog = _catalog(sample_catalog, tmp_path, bucket, on_s3=("land_cover.tif",), rename={"land_cover.tif": name})
        with pytest.raises(DatasetError) as caught:
            _screen(catalog)
        assert not isinstance(caught.value, DatasetUnavailable) and not is_transient(caught.value)
        assert caught.value.extra["layer"] == "land_cover" and name in caught.value.detail


def test_read_errors_are_classified_by_gdal_error_class_and_http_status() -> None:
    class CPLE_HttpResponseError(Exception):
        pass

    class CPLE_AWSObjectNotFoundError(Exception):
        pass

    class CPLE_AWSError(Exception):
        pass

    class CPLE_OpenFailedError(Exception):
        pass

    def wrapped(cause: Exception) -> Exception:
        try:
            raise RuntimeError("library wrapper") from cause
        except RuntimeError as exc:
            return exc

    assert transient_reason(wrapped(CPLE_HttpResponseError("HTTP response code: 503"))) == "HTTP 503"
    assert transient_reason(wrapped(CPLE_HttpResponseError("HTTP response code: 429"))) == "HTTP 429"
    assert transient_reason(wrapped(CPLE_HttpResponseError("HTTP response code: 404"))) is None
    assert transient_reason(wrapped(CPLE_HttpResponseError("HTTP response code: 403"))) is None
    assert transient_reason(wrapped(CPLE_HttpResponseError("CURL error: Connection reset by peer"))) is not None
    assert transient_reason(wrapped(CPLE_AWSError("Please reduce your request rate."))) is not None
    assert transient_reason(wrapped(CPLE_AWSObjectNotFoundError("The specified key does not exist."))) is None
    assert transient_reason(wrapped(CPLE_OpenFailedError("not recognized as a supported file format"))) is None
    assert transient_reason(ValueError("no GDAL in sight")) is None


@pytest.mark.slow
def test_a_worker_tries_the_run_again_when_a_layer_read_fails_and_it_completes(
    make_stack: Callable[..., Stack], s3_server: dict[str, Any], sample_catalog: Path, tmp_path: Path
) -> None:
    """A fault that outlasts GDAL's retries in the first attempt, and only there, by construction.

    A failed open of a /vsis3/ raster costs GDAL `max_retry + 2` requests (the first one retried
    max_retry times, then one more); a new attempt's process then survives up to max_retry failed
    requests in a row. With max_retry 2, any count of faults from 4 to 6 fails the first attempt and
    lets the second through; 5 is in the middle. The worker alone reads through the proxy (the API's
    AOI check reads the bucket directly), so no other reader takes a fault.
    """
    endpoint = str(s3_server["url"])
    bucket = _upload(endpoint, sample_catalog)
    catalog = _catalog(sample_catalog, tmp_path, bucket)
    proxy = FlakyHttpProxy("127.0.0.1", int(str(s3_server["port"])))  # no GDAL in this process
    try:
        stack = make_stack(
            AETHERA_DATASETS=str(catalog),
            S3_ENDPOINT_URL=endpoint,
            S3_ACCESS_KEY_ID="testing",
            S3_SECRET_ACCESS_KEY="testing",
            AETHERA_GDAL_HTTP_MAX_RETRY="2",
            AETHERA_GDAL_HTTP_RETRY_DELAY_S="0.05",
        )
        stack.start_api()
        worker = stack.start_worker(extra_env={"S3_ENDPOINT_URL": proxy.url()})
        stack.wait_worker_ready(worker)
        proxy.fail_next(5, "503")
        run_id = stack.create_run(stack.create_project())
        task = stack.wait_for_status(run_id, {"COMPLETED", "FAILED", "REVOKED"}, timeout_s=120)
        assert task["status"] == "COMPLETED", (task, stack.logs())
        assert proxy.stats()["faulted"] == 5
        record = stack.run_record(run_id)
        assert record["attempts"] == 2, record
    finally:
        proxy.close()
