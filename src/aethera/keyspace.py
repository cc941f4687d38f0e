"""Every key name the service uses: Redis keys, the storage keys of records and indexes, and the one
pattern of an id.

One module, so a reader sees the whole key space at a glance and two modules never disagree on a name.
It imports nothing of the service, so every layer (api, security, jobs, storage, export) can use it.
The queue's own keys (arq's) stay inside `jobs/queue.py`; the observability counters' keys in
`observability/keys.py`.
"""

from __future__ import annotations

import re

# --- Redis -----------------------------------------------------------------------------------------

PREFIX = "aethera:"
QUEUE_NAME = PREFIX + "queue"  # the job queue (a sorted set of the queue implementation)
RECOVERY_LOCK = PREFIX + "recovery:lock"  # one recovery sweep at a time across all workers

TASK_RECORD_TTL_S = 7 * 24 * 3600  # a finished task's Redis copy; storage keeps the truth forever
# a queued or running task's copy: renewed by the running attempt's heartbeat, so a copy that a lost
# write left behind cannot outlive its run's progress by long (and GET /tasks checks the record anyway)
LIVE_TASK_TTL_S = 120
CANCEL_FLAG_TTL_S = 7 * 24 * 3600


def task_key(task_id: str) -> str:
    """The task record (JSON): status, progress, attempts, timestamps."""
    return f"{PREFIX}task:{task_id}"


def cancel_key(run_id: str) -> str:
    """Present while a cancellation of the run has been asked for."""
    return f"{PREFIX}cancel:{run_id}"


def lease_key(run_id: str) -> str:
    """ "<generation> <worker>": held (TTL `run_lease_s / 2`) by the attempt that runs the run; renewed by
    its heartbeat."""
    return f"{PREFIX}lease:{run_id}"


def stashed_final_key(run_id: str) -> str:
    """A final run record that storage refused to take (disk full, S3 down); recovery writes it later."""
    return f"{PREFIX}final:{run_id}"


def pickup_suspect_key(run_id: str, generation: int) -> str:
    """Set by recovery when it first sees a run taken by the queue but with nobody holding its lease."""
    return f"{PREFIX}suspect:{run_id}:{generation}"


RATE_LIMIT_PREFIX = PREFIX + "ratelimit:"  # + bucket: a token bucket (hash), expires once full again


def idempotency_lock_key(digest: str) -> str:
    """Short lock so two concurrent requests with one Idempotency-Key create one run."""
    return f"{PREFIX}idem:{digest}"


# --- storage ---------------------------------------------------------------------------------------

# 32 lowercase hex characters (uuid4().hex): the only form an id of a project, run, task or upload takes.
# `(?!\n)`: in Python `$` also matches before a final newline ("<id>\n" would pass); the lookahead
# refuses that and reads the same in every JSON Schema (ECMA-262) regex engine, so the request
# Structs (models.Id) and the OpenAPI document use this very pattern
ID_PATTERN = r"^[0-9a-f]{32}(?!\n)$"
ID_RE = re.compile(ID_PATTERN)
_INV_BASE_MS = 10**13 - 1  # run index names sort newest first: (this - created ms) zero-padded to 13


def project_key(project_id: str) -> str:
    return f"projects/{project_id}.json"


PROJECTS_PREFIX = "projects/"


def upload_key(project_id: str, name: str) -> str:
    """An AOI file uploaded to a project; `name` is already checked against `UPLOAD_NAME_RE`."""
    return f"projects/{project_id}/uploads/{name}"


def upload_record_key(upload_id: str) -> str:
    """The record of a tenant's upload (`POST /uploads`): its owner, format, size, digest."""
    return f"uploads/{upload_id}/upload.json"


def upload_file_key(upload_id: str, stored_name: str) -> str:
    """The uploaded file itself, stored as `aoi.<ext>` (never under the client's file name)."""
    return f"uploads/{upload_id}/{stored_name}"


UPLOAD_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}\.(geojson|json|zip|gpkg|kml|wkt)\Z")
AOI_PATH_RE = re.compile(r"^uploads/([A-Za-z0-9][A-Za-z0-9_-]{0,99}\.(?:geojson|json|zip|gpkg|kml|wkt))\Z")


def run_record_key(run_id: str) -> str:
    return f"runs/{run_id}/run.json"


def run_aoi_key(run_id: str) -> str:
    return f"runs/{run_id}/aoi.geojson"


# Outputs of a run, relative to `runs/{run_id}/` (written through storage.artifacts.save_artifact).
RESULTS_NAME = "results.json"
LEGAL_NAME = "legal.json"
RUN_LOG_NAME = "run.log"
REPORT_NAME = "report.html"
LAYER_NAMES = ("natura", "overlap", "sensitivity", "eligible")


def layer_name(layer: str) -> str:
    return f"layers/{layer}.geojson"


def run_index_name(created_ms: int, run_id: str) -> str:
    """Name of a run (or a project) in a listing index; key order is newest first, ties broken by id."""
    return f"{_INV_BASE_MS - created_ms:013d}-{run_id}"


RUN_INDEX_NAME_RE = re.compile(r"^[0-9]{13}-[0-9a-f]{32}\Z")


def index_name_ms(name: str) -> int:
    """The creation time (ms since the epoch) a listing index name encodes."""
    return _INV_BASE_MS - int(name[:13])


ALL_RUNS_INDEX = "index/runs/"
ACTIVE_RUNS_INDEX = "index/active-runs/"  # one marker per run not yet final: what recovery sweeps
ACTIVE_BATCHES_INDEX = "index/active-batches/"  # one marker per batch whose runs are not all created yet


def batch_key(batch_id: str) -> str:
    return f"batches/{batch_id}/batch.json"


def batch_aois_key(batch_id: str) -> str:
    """Every site's AOI (a JSON array of GeoJSON Features, in site order), read by the batch feeder."""
    return f"batches/{batch_id}/aois.json"


def batch_feed_key(batch_id: str) -> str:
    return f"batches/{batch_id}/feed.json"


def active_batch_key(batch_id: str) -> str:
    return ACTIVE_BATCHES_INDEX + batch_id


def tenant_runs_index(tenant: str) -> str:
    """A tenant's runs (`GET /runs` lists only the caller's); `tenant` matches security.validation.TENANT_RE."""
    return f"index/tenant-runs/{tenant}/"


def tenant_projects_index(tenant: str) -> str:
    """A tenant's projects (`GET /projects` lists only the caller's); names as `run_index_name` gives."""
    return f"index/tenant-projects/{tenant}/"


# written once every record stored before the listing indexes has its markers (jobs/listings.py)
LISTINGS_MIGRATED = "index/migrations/listings-v1.json"


def project_runs_index(project_id: str) -> str:
    return f"index/project-runs/{project_id}/"


def active_run_key(run_id: str) -> str:
    return ACTIVE_RUNS_INDEX + run_id


def idempotency_key(project_id: str, digest: str) -> str:
    return f"index/idempotency/{project_id}/{digest}.json"
