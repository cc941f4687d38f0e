"""The run task: one attempt of one analysis run, executed by a worker.

The pipeline is synchronous (geopandas, rasterio) and runs in a child process of its own
(`pipeline_process`); the event loop keeps the lease alive, watches for cancellation and writes progress
and outputs as the child reports them.

How an attempt ends:
- COMPLETED: every output stored (layers as they were produced, then results, legal, run.log).
- REVOKED: the user cancelled; the pipeline stops at its next step boundary.
- FAILED: a permanent error (bad data, missing layer, soft time limit) with a message the user can act
  on, or a transient one (storage or Redis unreachable) after the last attempt.
- PENDING again: a transient error with attempts left (re-queued after an exponential backoff), or the
  worker is shutting down (the queue runs the same attempt again).

On a hard time limit, an abort or a shutdown past its grace period (the queue cancels this coroutine)
the child is terminated and reaped before the record is finished.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from aethera.errors import (
    AetheraError,
    BackendUnavailable,
    NotFound,
    ObjectNotFound,
    RunCancelled,
    TimeLimitExceeded,
)
from aethera.jobs import keys, pipeline_process, records
from aethera.jobs.queue import JobQueue, attempt_of, job_id_for
from aethera.models import Progress, RunRecord, RunStatus, utc_now_iso
from aethera.observability.logs import log_context, task_id_var
from aethera.observability.metrics import record_run_status, record_step_durations
from aethera.settings import Settings
from aethera.storage.artifacts import artifact_key, save_artifact
from aethera.storage.base import Storage

log = logging.getLogger(__name__)

# Failures worth another attempt: the backends were unreachable, not the input wrong.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (BackendUnavailable, RedisError, ConnectionError, TimeoutError)

_JSON = "application/json"
_GEOJSON = "application/geo+json"


@dataclass
class WorkerDeps:
    """What every run of one worker process shares (built in the worker's startup hook)."""

    settings: Settings
    storage: Storage
    redis: Redis
    queue: JobQueue
    name: str  # this worker's id, held in the leases it takes


def backoff_s(settings: Settings, attempt: int) -> float:
    """Delay before attempt `attempt + 1`: base * 2^(attempt-1), capped."""
    return float(min(settings.retry_backoff_max_s, settings.retry_backoff_base_s * 2 ** max(0, attempt - 1)))


async def run_analysis(ctx: dict[str, Any], run_id: str, attempt: int) -> str:
    """The queue's entry point: run one attempt of a run; returns a word on how it ended (for logs)."""
    deps: WorkerDeps = ctx["aethera"]
    # every log line of the attempt, in this task and from the pipeline process, carries the run id
    with log_context(run_id=run_id):
        outcome = await _Attempt(deps, run_id, attempt).execute()
        log.info("run %s attempt %d: %s", run_id, attempt, outcome)  # the run's own line, with both ids
        return outcome


@dataclass
class _Attempt:
    deps: WorkerDeps
    run_id: str
    attempt: int
    run: RunRecord | None = None
    progress: Progress | None = None
    stop: Any = None  # a multiprocessing Event, shared with the pipeline process (set in execute)
    stop_reason: str | None = None  # "cancel", "time", "lease", "shutdown", "hard_time"
    saved: set[str] = field(default_factory=set)
    log_lines: list[str] = field(default_factory=list)
    started_mono: float = 0.0
    soft_deadline: float = 0.0
    _progress_dirty: asyncio.Event = field(default_factory=asyncio.Event)
    _writer: asyncio.Task[None] | None = None

    # --- the attempt --------------------------------------------------------------------------

    async def execute(self) -> str:
        s = self.deps.settings
        try:
            run = await records.load_run(self.deps.storage, self.run_id)
        except NotFound:
            log.warning("run %s: no run record; job dropped", self.run_id)
            return "missing"
        self.run = run
        task_id_var.set(run.task_id)  # this job's own task context: nothing else sees it
        if run.status.is_final:
            return "already-final"
        if attempt_of(run.job_id) > self.attempt:
            return "superseded"  # recovery or a retry issued a newer attempt
        if await records.cancel_requested(self.deps.redis, self.run_id):
            await self._finish(RunStatus.REVOKED, None, None, "cancelled before it started")
            return "revoked"
        if not await records.acquire_lease(self.deps.redis, self.run_id, self._owner, records.lease_ttl_s(s)):
            log.info("run %s: lease held by another worker; not started twice", self.run_id)
            return "held-elsewhere"

        self.stop = await asyncio.to_thread(pipeline_process.new_stop_event)  # the first one starts a process
        self.started_mono = time.monotonic()
        self.soft_deadline = self.started_mono + s.run_soft_time_limit_s
        await self._load_earlier_log()
        run.status = RunStatus.PROCESSING
        run.attempts = max(run.attempts, self.attempt)
        run.started_at = run.started_at or utc_now_iso()
        run.job_id = job_id_for(self.run_id, self.attempt)
        run.error = run.error_code = None
        self._log(f"attempt {self.attempt} of {s.run_max_attempts} started on worker {self.deps.name}")
        await self._publish()
        await record_run_status(self.deps.redis, RunStatus.PROCESSING.value)

        heartbeat = asyncio.create_task(self._heartbeat())
        self._writer = asyncio.create_task(self._progress_writer())
        try:
            outcome = await self._run_pipeline_and_store()
        except asyncio.CancelledError:
            await asyncio.shield(self._on_cancelled())
            raise
        finally:
            heartbeat.cancel()
            if self._writer is not None:
                self._writer.cancel()
        return outcome

    async def _run_pipeline_and_store(self) -> str:
        assert self.run is not None
        s = self.deps.settings
        try:
            aoi_bytes = await self.deps.storage.read(keys.run_aoi_key(self.run_id))
            output = await self._pipeline(aoi_bytes)
            if self.stop.is_set() and self.stop_reason == "cancel" or await self._cancel_flag():
                await self._finish(RunStatus.REVOKED, None, None, "cancelled")
                return "revoked"
            await self._store_outputs(output, aoi_bytes)
        except RunCancelled:
            self._is_cancelled()  # the child stopped on the soft deadline: name that reason here
            reason = self.stop_reason or "cancel"
            if reason == "time":
                err = TimeLimitExceeded(
                    f"time limit exceeded: the run was stopped after {s.run_soft_time_limit_s:g} s"
                )
                await self._finish(RunStatus.FAILED, err.detail, err.code, err.detail)
                return "time-limit"
            if reason == "lease":
                self._log("lease lost to another worker; this attempt stops")
                return "lease-lost"
            await self._finish(RunStatus.REVOKED, None, None, "cancelled at a step boundary")
            return "revoked"
        except TRANSIENT_ERRORS as exc:
            return await self._transient_failure(exc)
        except AetheraError as exc:
            # permanent: bad data, a missing layer, an AOI the analysis cannot screen
            await self._finish(RunStatus.FAILED, exc.detail, exc.code, f"failed: {exc.detail}")
            return "failed"
        except Exception:
            log.exception("run %s: unexpected error", self.run_id)
            step = self.progress.step if self.progress else "start"
            detail = f"internal error during step '{step}'; the operators have the details in the worker log"
            await self._finish(RunStatus.FAILED, detail, "internal_error", detail)
            return "failed"
        await self._finish(RunStatus.COMPLETED, None, None, "completed")
        return "completed"

    # --- the pipeline, in its own process ------------------------------------------------------

    async def _pipeline(self, aoi_bytes: bytes) -> Any:
        assert self.run is not None
        s = self.deps.settings
        job = pipeline_process.PipelineJob(run_id=self.run_id, aoi_bytes=aoi_bytes, params=dict(self.run.params),
                                           datasets=s.datasets, max_aoi_km2=s.max_aoi_km2,
                                           soft_deadline_mono=self.soft_deadline)
        return await pipeline_process.run_pipeline(job, self.stop, self._on_progress, self._save)

    def _is_cancelled(self) -> bool:
        if not self.stop.is_set() and time.monotonic() > self.soft_deadline:
            self.stop_reason = self.stop_reason or "time"
            self.stop.set()
        return self.stop.is_set()

    def _on_progress(self, step: str, percent: float, message: str) -> None:
        self._set_progress(Progress(step=step, percent=round(float(percent), 1), message=message,
                                    updated_at=utc_now_iso()))

    # --- loop-side helpers ---------------------------------------------------------------------

    def _set_progress(self, p: Progress) -> None:
        self.progress = p
        self._log(f"{p.step} {p.percent:.0f}% {p.message}")
        self._progress_dirty.set()

    async def _progress_writer(self) -> None:
        # latest value wins: a slow Redis sees fewer writes, never out-of-order ones
        while True:
            await self._progress_dirty.wait()
            self._progress_dirty.clear()
            assert self.run is not None
            try:
                await records.save_task(self.deps.redis, self._task())
            except (RedisError, OSError) as exc:
                log.warning("run %s: progress not written (%s)", self.run_id, type(exc).__name__)

    async def _heartbeat(self) -> None:
        s = self.deps.settings
        interval = records.heartbeat_interval_s(s)
        while True:
            await asyncio.sleep(interval)
            try:
                if not await records.renew_lease(self.deps.redis, self.run_id, self._owner, records.lease_ttl_s(s)):
                    self._request_stop("lease")
                if await self._cancel_flag():
                    self._request_stop("cancel")
            except (RedisError, OSError) as exc:
                log.warning("run %s: heartbeat failed (%s)", self.run_id, type(exc).__name__)
            self._is_cancelled()  # arms the soft limit even between progress reports

    def _request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()

    async def _cancel_flag(self) -> bool:
        try:
            return await records.cancel_requested(self.deps.redis, self.run_id)
        except (RedisError, OSError):
            return False

    async def _save(self, name: str, data: bytes, media_type: str) -> None:
        await save_artifact(self.deps.storage, self.run_id, name, data, media_type)
        self.saved.add(name)

    async def _store_outputs(self, output: Any, aoi_bytes: bytes) -> None:
        assert self.run is not None
        run = self.run
        await record_step_durations(self.deps.redis, getattr(output.results, "step_durations_s", None) or {})
        layers: dict[str, bytes] = dict(getattr(output, "layers", None) or {})
        for name, data in layers.items():
            artifact = name if "/" in name else keys.layer_name(name)
            if artifact not in self.saved:
                await self._save(artifact, data, _GEOJSON)
        results = msgspec.to_builtins(output.results)
        document = {
            "run_id": run.run_id,
            "project_id": run.project_id,
            "project_type": run.project_type,
            "created_at": run.created_at,
            "country": run.params.get("country"),
            **results,
        }
        await self._save(keys.RESULTS_NAME, msgspec.json.encode(document), _JSON)
        legal = getattr(output, "legal", None)
        if legal is not None:
            await self._save(keys.LEGAL_NAME, msgspec.json.encode(msgspec.to_builtins(legal)), _JSON)
        else:
            self._log("no legal screening was produced for this run")
        legal_dict = msgspec.to_builtins(legal) if legal is not None else None
        report = await asyncio.to_thread(_render_report, document, legal_dict, msgspec.to_builtins(run), aoi_bytes)
        await self._save(keys.REPORT_NAME, report, "text/html; charset=utf-8")

    async def _transient_failure(self, exc: BaseException) -> str:
        assert self.run is not None
        s = self.deps.settings
        reason = exc.detail if isinstance(exc, AetheraError) else f"{type(exc).__name__} talking to a backend"
        if self.attempt >= s.run_max_attempts:
            detail = f"gave up after {self.attempt} attempts; last error: {reason}"
            await self._finish(RunStatus.FAILED, detail, "backend_unavailable", detail)
            return "failed"
        delay = backoff_s(s, self.attempt)
        run = self.run
        run.status = RunStatus.PENDING
        run.error = f"attempt {self.attempt} failed ({reason}); retrying in {delay:g} s"
        run.error_code = "retrying"
        run.job_id = job_id_for(self.run_id, self.attempt + 1)
        self._log(run.error)
        try:
            await self._save_log()
            await self._publish()
        except TRANSIENT_ERRORS as again:
            # storage is still away: the next attempt is queued all the same and will write the record
            log.warning("run %s: retry not recorded (%s)", self.run_id, type(again).__name__)
        await self.deps.queue.enqueue_run(self.run_id, self.attempt + 1, defer_s=delay)
        await self._release()
        return "retrying"

    async def _on_cancelled(self) -> None:
        """The queue cancelled this coroutine: user abort, hard time limit, or the worker is stopping."""
        s = self.deps.settings
        elapsed = time.monotonic() - self.started_mono
        if await self._cancel_flag():
            self._request_stop("cancel")
            await self._finish(RunStatus.REVOKED, None, None, "cancelled")
        elif elapsed >= s.run_hard_time_limit_s - min(1.0, 0.1 * s.run_hard_time_limit_s):
            self._request_stop("hard_time")
            detail = f"time limit exceeded: the run was stopped after the hard limit of {s.run_hard_time_limit_s:g} s"
            await self._finish(RunStatus.FAILED, detail, TimeLimitExceeded.code, detail)
        else:
            self._request_stop("shutdown")
            assert self.run is not None
            self.run.status = RunStatus.PENDING
            self.run.error = "the worker stopped; the run will be resumed by another worker"
            self.run.error_code = "worker_stopped"
            await self._publish()
            await self._release()

    async def _finish(self, status: RunStatus, error: str | None, code: str | None, note: str) -> None:
        assert self.run is not None
        run = self.run
        run.status = status
        run.error, run.error_code = error, code
        run.finished_at = utc_now_iso()
        if status is RunStatus.REVOKED:
            run.cancel_requested = True
        self._log(f"{status.value}: {note}")
        if status is not RunStatus.REVOKED:
            try:
                await self._save_log()
            except TRANSIENT_ERRORS as exc:
                log.warning("run %s: run.log not stored (%s)", self.run_id, type(exc).__name__)
        await self._publish()
        await self._release()
        ran_s = time.monotonic() - self.started_mono if self.started_mono else None
        await record_run_status(self.deps.redis, status.value, duration_s=ran_s)

    async def _save_log(self) -> None:
        await self._save(keys.RUN_LOG_NAME, ("\n".join(self.log_lines) + "\n").encode(), "text/plain; charset=utf-8")

    async def _load_earlier_log(self) -> None:
        """run.log tells the whole story of a run: lines of earlier attempts come first."""
        try:
            earlier = await self.deps.storage.read(artifact_key(self.run_id, keys.RUN_LOG_NAME))
        except (ObjectNotFound, *TRANSIENT_ERRORS):
            return
        self.log_lines[:0] = earlier.decode("utf-8", "replace").splitlines()

    async def _publish(self) -> None:
        assert self.run is not None
        if self.run.status is not RunStatus.PROCESSING and self._writer is not None:
            # no progress write may land after (and so overwrite) the new state
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        await records.publish(self.deps.storage, self.deps.redis, self.run, progress=self.progress,
                              max_attempts=self.deps.settings.run_max_attempts)

    async def _release(self) -> None:
        try:
            await records.release_lease(self.deps.redis, self.run_id, self._owner)
        except (RedisError, OSError):
            pass  # the lease expires on its own

    def _task(self) -> Any:
        assert self.run is not None
        return records.task_record(self.run, self.progress, max_attempts=self.deps.settings.run_max_attempts)

    def _log(self, line: str) -> None:
        self.log_lines.append(f"{utc_now_iso()} {line}")

    @property
    def _owner(self) -> str:
        return f"{self.deps.name}/{self.attempt}"


def _render_report(results: dict[str, Any], legal: dict[str, Any] | None, run: dict[str, Any], aoi_bytes: bytes) -> bytes:
    from datetime import datetime, timezone

    from aethera.report import render_report

    try:
        aoi = msgspec.json.decode(aoi_bytes)
    except msgspec.DecodeError:
        aoi = None  # the outline is optional; the stored AOI was validated when the run was created
    return render_report(results, legal, run, aoi_geojson=aoi, generated_at=datetime.now(timezone.utc))
