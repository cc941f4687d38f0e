"""Fuzzing the running API from its own OpenAPI document (schemathesis), with a fixed seed.

The service runs as `python server.py` (authentication on, a real Redis, local storage, the sample
catalog); schemathesis generates requests for every operation of `/openapi.json`, valid and invalid
ones, and each answer must not be a 5xx and must match the document: a documented status, the declared
content type, headers and a body that validates against the response schema; invalid input must be
refused and a request without its key must be refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as fixed_seed
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import positive_data_acceptance

from aethera.embedded_redis import free_port
from aethera.security.apikeys import create_key

ROOT = Path(__file__).resolve().parents[2]
SEED = 20240611  # fixed: a failure reproduces with the same requests
# 50 per operation and mode: the suite's slowest test at 100 (17 min on a loaded machine), for checks that
# find what they find in the first few dozen examples of each operation
EXAMPLES_PER_OPERATION = 50
# The operations are fuzzed in this many tests, each taking every SHARDS-th operation of the document, so
# pytest-xdist runs them side by side (one test fuzzing all of them was the suite's longest, serial, test)
SHARDS = 4
# Every check schemathesis has (no 5xx, documented status, content type, headers and body schema,
# invalid data refused, required header and auth enforced, ...), except one where a schema cannot say
# enough: bodies whose meaning is checked beyond their shape ("any file" that must load as an AOI; a run
# whose AOI must be one valid polygon over the datasets; a batch whose sites must be such polygons) are
# schema-valid yet rightly refused (422).
SEMANTIC_BODIES = frozenset(
    {
        ("POST", "/uploads"),
        ("PUT", "/projects/{project_id}/uploads/{name}"),
        ("POST", "/projects/{project_id}/runs"),
        ("POST", "/projects/{project_id}/batches"),
    }
)


class RunningApi:
    def __init__(self, url: str, key: str, log: Path) -> None:
        self.url = url
        self.key = key
        self.log = log
        self.real_ids: dict[str, str] = {}  # path parameter -> an id that exists (a completed run's)

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json") -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=body,
            method=method,
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": content_type},
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            return json.loads(resp.read())

    def make_real_ids(self) -> None:
        """A project, a COMPLETED run and an upload, so generated requests also reach existing records."""
        from servicekit import aoi_feature

        project = self.call("POST", "/projects", json.dumps({"name": "fuzz", "country": "DEU"}).encode())
        run = self.call(
            "POST",
            f"/projects/{project['id']}/runs",
            json.dumps({"project_type": "solar", "aoi_geojson": aoi_feature()}).encode(),
        )
        deadline = time.monotonic() + 120
        while self.call("GET", f"/tasks/{run['task_id']}")["status"] != "COMPLETED":
            if time.monotonic() > deadline:
                raise AssertionError(f"the fuzz fixture's run did not complete:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.3)
        boundary = "f0zzb0undary"
        form = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="site.geojson"\r\n\r\n'
            + json.dumps(aoi_feature())
            + f"\r\n--{boundary}--\r\n"
        ).encode()
        upload = self.call("POST", "/uploads", form, f"multipart/form-data; boundary={boundary}")
        self.real_ids = {
            "project_id": project["id"],
            "run_id": run["run_id"],
            "task_id": run["task_id"],
            "upload_id": upload["upload_id"],
        }


@pytest.fixture(scope="module")
def running_api(tmp_path_factory: pytest.TempPathFactory, redis_url: str, sample_catalog: Path) -> Iterator[RunningApi]:
    root = tmp_path_factory.mktemp("fuzz")
    keys_file = root / "keys.json"
    key, _ = create_key(keys_file, "fuzz")
    import redis as redis_sync

    service_redis = redis_url.rsplit("/", 1)[0] + "/11"  # a database of its own on the session Redis
    redis_sync.Redis.from_url(service_redis).flushdb()  # no throttle or queue left by an earlier run
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AETHERA_", "S3_", "STORAGE_"))}
    env.update(
        {
            "AETHERA_HOST": "127.0.0.1",
            "AETHERA_PORT": str(port),
            "AETHERA_LOG_LEVEL": "WARNING",
            "AETHERA_API_KEYS_FILE": str(keys_file),
            "AETHERA_RATE_LIMIT_PER_S": "0",  # limiting is tested elsewhere; here it would only add 429s
            "AETHERA_WORKER_CONCURRENCY": "1",
            "REDIS_URL": service_redis,
            "STORAGE_BACKEND": "local",
            "STORAGE_BASE_PATH": str(root / "storage"),
            "AETHERA_DATASETS": str(sample_catalog),
        }
    )
    log = root / "service.log"
    processes = []
    with open(log, "wb") as out:
        # a worker too: the service is up once /health sees its first heartbeat
        for entry_point in ("worker.py", "server.py"):
            processes.append(
                subprocess.Popen([sys.executable, entry_point], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                return bool(json.loads(resp.read())["workers"]["alive"])
        except OSError:  # not listening yet
            return False

    deadline = time.monotonic() + 90
    while not ready():
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            for p in processes:
                p.kill()
            pytest.fail(f"the service did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.3)
    api = RunningApi(url, key, log)
    api.make_real_ids()
    yield api
    for p in processes:
        p.terminate()
    for p in processes:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def api_schema(running_api: RunningApi) -> Any:
    # no made-up query parameters: the service ignores unknown ones on purpose (a browser's cache-buster
    # such as `?_=123` must not break a request), so refusing them is not asked of it
    config = schemathesis.Config.from_dict({"generation": {"allow-extra-parameters": False}})
    return schemathesis.openapi.from_url(f"{running_api.url}/openapi.json", config=config)


def fuzz_operation(operation: Any, mode: GenerationMode, api: RunningApi) -> Counter[int]:
    """Every generated request of one operation in one mode; raises on the first bad answer (shrunk).
    Returns how many answers of each status it saw."""
    statuses: Counter[int] = Counter()
    excluded = [positive_data_acceptance] if (operation.method.upper(), operation.path) in SEMANTIC_BODIES else []

    @fixed_seed(SEED)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @given(case=operation.as_strategy(generation_mode=mode), existing=st.booleans())
    def run(case: Any, existing: bool) -> None:
        if existing and mode is GenerationMode.POSITIVE:
            # half the valid requests name records that exist, so real answers are checked too
            for name in list(case.path_parameters or {}):
                if name in api.real_ids:
                    case.path_parameters[name] = api.real_ids[name]
        response = case.call(base_url=api.url, headers={"Authorization": f"Bearer {api.key}"}, timeout=60)
        statuses[response.status_code] += 1
        case.validate_response(response, excluded_checks=excluded)

    run()
    return statuses


def document_operations(api_schema: Any) -> list[Any]:
    """The document's operations in its order; an operation schemathesis cannot read is a failure."""
    operations = []
    for result in api_schema.get_all_operations():
        if isinstance(result, Err):
            pytest.fail(f"the document has an operation schemathesis cannot read: {result.err()}")
        operations.append(result.ok())
    return operations


def test_the_document_names_every_operation(api_schema: Any) -> None:
    operations = document_operations(api_schema)
    assert len(operations) >= 15, f"only {len(operations)} operations in the document"


@pytest.mark.slow
@pytest.mark.timeout(1500)  # a quarter of the API's operations in two modes against a real server
@pytest.mark.parametrize("shard", range(SHARDS))
def test_api_answers_every_generated_request_within_its_document(
    shard: int, api_schema: Any, running_api: RunningApi
) -> None:
    failures: list[str] = []
    operations = document_operations(api_schema)[shard::SHARDS]
    seen: Counter[int] = Counter()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                seen += fuzz_operation(operation, mode, running_api)
            except Unsatisfiable:
                continue  # nothing to make invalid (no parameters, no body): no negative requests exist
            except (Exception, BaseExceptionGroup) as exc:  # every operation's failure, reported together
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    print(
        f"{len(operations)} operations, {sum(seen.values())} requests, answers by status: {dict(sorted(seen.items()))}"
    )
    assert operations, "this shard has no operation"
    assert sum(seen.values()) >= len(operations) * 10, seen
    assert not failures, "\n\n".join(failures)
