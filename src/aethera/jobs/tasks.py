"""The run task: one attempt of one analysis run, executed by a worker.

An attempt belongs to one *generation* of its run (the job carries it; see docs/architecture.md, "Run
lifecycle"). It:
1. takes the run's lease for its generation in Redis (before anything else, so recovery can tell a job
   the queue handed out to a worker that died from one a worker is starting);
2. starts the run with a conditional write of the record, PENDING(g) -> PROCESSING(g); any other state
   means another attempt owns the run, and this one does nothing;
3. runs the pipeline in a child process (`pipeline_process`), storing each output under its own
   prefix `runs/{id}/attempts/{g}/` as the child produces it (report included); a transient storage
   error retries that save, not the pipeline;
4. commits: one fenced write PROCESSING(g) -> COMPLETED naming generation g as the outputs to serve
   (or REVOKED, when a cancellation was recorded meanwhile). Readers read only committed outputs.

Every write of the record after step 2 is fenced by the generation (`records.fenced`): once recovery
or a retry moved the run on, this attempt's writes are refused. A worker that cannot renew its lease
for a whole lease TTL stops its attempt (the child is killed) and writes nothing more.

How an attempt ends:
- COMPLETED: every output stored, then committed.
- REVOKED: a cancellation was recorded (durably in the record, and as a flag in Redis).
- FAILED: a permanent error (bad data, missing layer, soft time limit, storage refusing writes for good)
  with a message the user can act on, or a transient one after the last attempt.
- PENDING in generation g+1: a transient error with attempts left (re-queued after a backoff), or the
  worker is shutting down (handed back, not counted as an attempt).
When storage refuses even the final write, the final state is stashed in Redis (shown at once by the
API) and recovery writes it to storage when it can.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from aethera import keyspace as keys
from aethera.data.gdal_io import gdal_options
from aethera.errors import (
    AetheraError,
    NotFound,
    ObjectNotFound,
    RunCancelled,
    StaleAttempt,
    StorageError,
    TimeLimitExceeded,
)
from aethera.jobs import failures, pipeline_process, records, reuse
from aethera.jobs.latest_writer import LatestWriter
from aethera.jobs.phases import PhaseClock, queue_wait_s
from aethera.jobs.queue import JobQueue, job_id_for
from aethera.models import Progress, RunRecord, RunStatus, utc_now_iso
from aethera.observability.logs import log_context, task_id_var
from aethera.observability.metrics import record_run_status, record_step_durations
from aethera.settings import Settings
from aethera.storage.artifacts import Artifact, artifact_key, attempt_prefix, save_index, store_output
from aethera.storage.base import Storage

log = logging.getLogger(__name__)
T = TypeVar("T")

# A transient storage error while storing an output or a state: tries of that one operation (with
# backoff) before the attempt gives up and, while attempts are left, is re-queued.
OPERATION_TRIES = 4
OPERATION_BACKOFF_MAX_S = 5.0


@dataclass
class WorkerDeps:
    """What every run of one worker process shares (built in the worker's startup hook)."""

    settings: Settings
    storage: Storage
    redis: Redis
    queue: JobQueue
    name: str  # this worker's stable name (host-instance): heartbeats, metrics labels, logs
    owner: str  # unique to this process, held in the leases it takes (a restart never inherits one)


def backoff_s(settings: Settings, attempt: int) -> float:
    """Delay before attempt `attempt + 1`: base * 2^(attempt-1), capped."""
    return float(min(settings.retry_backoff_max_s, settings.retry_backoff_base_s * 2 ** max(0, attempt - 1)))


async def with_retries(settings: Settings, what: str, operation: Callable[[], Awaitable[T]]) -> T:
    """Run `operation`, again after a backoff on a transient failure, up to OPERATION_TRIES times."""
    for attempt in range(1, OPERATION_TRIES + 1):
        try:
            return await operation()
        except Exception as exc:
            if attempt == OPERATION_TRIES or not failures.is_transient(exc):
                raise
            delay = min(OPERATION_BACKOFF_MAX_S, backoff_s(settings, attempt))
            log.warning("%s failed (%s); trying again in %.1f s", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def run_analysis(ctx: dict[str, Any], run_id: str, generation: int) -> str:
    """The queue's entry point: run one attempt of a run; returns a word on how it ended (for logs)."""
    deps: WorkerDeps = ctx["aethera"]
    # every log line of the attempt, in this task and from the pipeline process, carries the run id
    with log_context(run_id=run_id):
        attempt = _Attempt(deps, run_id, generation)
        pickup_s = queue_wait_s(ctx, time.time())
        if pickup_s is not None:
            attempt.phases.add("pickup", pickup_s)
        outcome = await attempt.execute()
        log.info("run %s generation %d: %s", run_id, generation, outcome)  # the run's own line, with both ids
        # the attempt's fixed cost beside the pipeline, phase by phase (bench/e2e.py reads it)
        log.info("run %s phases: %s", run_id, attempt.phases.line())
        return outcome


@dataclass
class _Attempt:
    deps: WorkerDeps
    run_id: str
    generation: int
    run: RunRecord | None = None
    progress: Progress | None = None
    stop: Any = None  # a multiprocessing Event, shared with the pipeline process (set in execute)
    stop_reason: str | None = None  # "cancel", "time", "lease", "shutdown", "hard_time"
    log_lines: list[str] = field(default_factory=list)
    # when the queue called the job: its hard limit (arq's job timeout) counts from here, not from the
    # attempt's own start after the lease and record reads, which on a busy machine can come much later
    called_mono: float = field(default_factory=time.monotonic)
    started_mono: float = 0.0
    soft_deadline: float = 0.0
    lease_ok_mono: float = 0.0  # when the lease was last known to be ours
    _writer: LatestWriter | None = None
    _beating: bool = False  # the heartbeat loop runs while this holds: certain even if a cancellation is lost
    phases: PhaseClock = field(default_factory=PhaseClock)
    # this attempt's stored outputs, by name; the index is written once, before the final state
    # (readers read it only for the committed attempt), instead of read and rewritten after every output
    outputs: dict[str, Artifact] = field(default_factory=dict)
    _reaps: list[asyncio.Task[None]] = field(default_factory=list)  # pipeline children exiting
    _index_dirty: bool = False  # an output was stored since the index was last written

    # --- the attempt --------------------------------------------------------------------------

    async def execute(self) -> str:
        s = self.deps.settings
        try:
            with self.phases.measure("lease"):
                taken = await records.acquire_lease(
                    self.deps.redis, self.run_id, self.generation, self._owner, records.lease_ttl_s(s)
                )
        except (RedisError, OSError) as exc:
            # the job is gone once this returns; recovery queues the generation again
            log.warning("run %s: lease not taken (%s); left to recovery", self.run_id, type(exc).__name__)
            return "redis-unavailable"
        if not taken:
            log.info("run %s: lease held by another attempt; not started twice", self.run_id)
            return "held-elsewhere"
        self.lease_ok_mono = time.monotonic()
        try:
            return await self._start()
        finally:
            if self._reaps:  # the child exits while the run commits; it is gone before the lease is
                await asyncio.shield(asyncio.gather(*self._reaps, return_exceptions=True))
            await self._release()

    async def _start(self) -> str:
        t0 = time.perf_counter()
        s = self.deps.settings
        try:
            run = await records.load_run(self.deps.storage, self.run_id)
        except NotFound:
            log.warning("run %s: no run record; job dropped", self.run_id)
            return "missing"
        except AetheraError as exc:
            log.warning("run %s: record unreadable (%s); left to recovery", self.run_id, exc.code)
            return "storage-unavailable"
        self.run = run
        task_id_var.set(run.task_id)  # this job's own task context: nothing else sees it
        if run.status.is_final:
            return "already-final"
        if run.generation != self.generation:
            return "superseded"  # recovery or a retry moved the run to another generation
        if run.status is RunStatus.PROCESSING:
            # this generation was started once already, by a worker that is gone (its lease is free):
            # recovery moves the run on; starting it again here would write over its outputs
            return "left-to-recovery"
        if run.cancel_requested or await self._cancel_flag():
            return await self._revoke_unstarted()

        def start(r: RunRecord) -> bool:
            if r.generation != self.generation or r.status is not RunStatus.PENDING:
                raise StaleAttempt(f"run {r.run_id} is {r.status.value} in generation {r.generation}")
            r.status = RunStatus.PROCESSING
            r.attempts += 1
            r.started_at = r.started_at or utc_now_iso()
            r.job_id = job_id_for(self.run_id, self.generation)
            r.error = r.error_code = None
            return True

        try:
            self.run = await with_retries(
                s, "starting the run", lambda: records.update_run(self.deps.storage, self.run_id, start)
            )
        except StaleAttempt:
            return "superseded"
        except AetheraError as exc:
            if failures.is_transient(exc):
                log.warning("run %s: not started (%s); left to recovery", self.run_id, exc.code)
                return "storage-unavailable"
            # storage refuses the write for good (disk full): the run cannot even be marked as running,
            # so it ends here, with the reason kept in Redis until storage takes it (recovery)
            _set_final(run, RunStatus.FAILED, f"the run could not be started: {exc.detail}", exc.code, None)
            run.updated_at = utc_now_iso()
            await records.stash_final(self.deps.redis, run)
            log.warning("run %s: not started (%s); FAILED kept in Redis", self.run_id, exc.code)
            return "unrecorded"

        self.stop = pipeline_process.new_stop_event()
        self.started_mono = time.monotonic()
        self.soft_deadline = self.started_mono + s.run_soft_time_limit_s
        await self._load_earlier_log()
        self._log(
            f"attempt {self.run.attempts} of {s.run_max_attempts} (generation {self.generation}) "
            f"started on worker {self.deps.name}"
        )
        await self._publish_copy()
        await record_run_status(self.deps.redis, RunStatus.PROCESSING.value)
        self.phases.add("start", time.perf_counter() - t0)

        self._beating = True
        heartbeat = asyncio.create_task(self._heartbeat())
        self._writer = LatestWriter(self._publish_copy, name=f"run {self.run_id} progress writer")
        self._writer.start()
        try:
            outcome = await self._run_pipeline_and_commit()
        except asyncio.CancelledError:
            await asyncio.shield(self._on_cancelled())
            raise
        finally:
            self._beating = False
            heartbeat.cancel()
            await self._stop_writer()
        return outcome

    async def _run_pipeline_and_commit(self) -> str:
        assert self.run is not None
        s = self.deps.settings
        try:
            aoi_bytes = await with_retries(
                s, "reading the AOI", lambda: self.deps.storage.read(keys.run_aoi_key(self.run_id))
            )
            summary = await self._pipeline(aoi_bytes)
            await record_step_durations(self.deps.redis, summary.step_durations_s)
            if not summary.has_legal:
                self._log("no legal screening was produced for this run")
            if self._lease_lost():
                return "lease-lost"
            if self.stop_reason == "cancel" or await self._cancel_flag():
                return await self._finish(RunStatus.REVOKED, None, None, "cancelled")
        except StaleAttempt:
            return "lease-lost"
        except RunCancelled:
            self._is_cancelled()  # the child stopped on the soft deadline: name that reason here
            reason = self.stop_reason or "cancel"
            if reason == "time":
                err = TimeLimitExceeded(f"time limit exceeded: the run was stopped after {s.run_soft_time_limit_s:g} s")
                return await self._finish(RunStatus.FAILED, err.detail, err.code, err.detail)
            if reason == "lease":
                self._log("lease lost; this attempt stops and writes nothing more")
                return "lease-lost"
            return await self._finish(RunStatus.REVOKED, None, None, "cancelled at a step boundary")
        except AetheraError as exc:
            if failures.is_transient(exc):
                return await self._transient_failure(exc)
            # permanent: bad data, a missing layer, an AOI the analysis cannot screen, a refused write
            return await self._finish(RunStatus.FAILED, exc.detail, exc.code, f"failed: {exc.detail}")
        except Exception as exc:
            if failures.is_transient(exc):
                return await self._transient_failure(exc)
            log.exception("run %s: unexpected error", self.run_id)
            step = self.progress.step if self.progress else "start"
            detail = f"internal error during step '{step}'; the operators have the details in the worker log"
            return await self._finish(RunStatus.FAILED, detail, "internal_error", detail)
        return await self._finish(RunStatus.COMPLETED, None, None, "completed")

    # --- the pipeline, in its own process ------------------------------------------------------

    async def _pipeline(self, aoi_bytes: bytes) -> pipeline_process.PipelineSummary:
        assert self.run is not None
        import msgspec

        s = self.deps.settings
        job = pipeline_process.PipelineJob(
            run_id=self.run_id,
            aoi_bytes=aoi_bytes,
            params=dict(self.run.params),
            datasets=s.datasets,
            max_aoi_km2=s.max_aoi_km2,
            soft_deadline_mono=self.soft_deadline,
            run=msgspec.to_builtins(self.run),
            gdal_options=gdal_options(s),
        )
        result = await pipeline_process.run_pipeline(
            job, self.stop, self._on_progress, self._save_output, phases=self.phases, reap_later=self._reap_later
        )
        assert isinstance(result, pipeline_process.PipelineSummary)
        return result

    def _reap_later(self, reap: Awaitable[None]) -> None:
        self._reaps.append(asyncio.ensure_future(reap))

    async def _save_output(self, name: str, data: bytes, media_type: str) -> None:
        with self.phases.measure("writes"):
            await self._save(name, data, media_type)

    def _is_cancelled(self) -> bool:
        if not self.stop.is_set() and time.monotonic() > self.soft_deadline:
            self.stop_reason = self.stop_reason or "time"
            self.stop.set()
        return bool(self.stop.is_set())

    def _on_progress(self, step: str, percent: float, message: str) -> None:
        self.progress = Progress(step=step, percent=round(float(percent), 1), message=message, updated_at=utc_now_iso())
        self._log(f"{step} {self.progress.percent:.0f}% {message}")
        if self._writer is not None:
            self._writer.mark()

    # --- loop-side helpers ---------------------------------------------------------------------

    async def _stop_writer(self) -> None:
        """No progress write may land after (and so overwrite) a new state."""
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    def _still_beating(self) -> bool:
        return self._beating

    async def _heartbeat(self) -> None:
        s = self.deps.settings
        interval = records.heartbeat_interval_s(s)
        ttl = records.lease_ttl_s(s)
        beats = 0
        while self._still_beating():
            await asyncio.sleep(interval)
            if not self._still_beating():
                return  # the attempt is over: a lost cancellation must not keep its lease alive
            beats += 1
            try:
                # bounded: a Redis that hangs (a partition) must count as a lost lease, not stall the check
                async with asyncio.timeout(interval):
                    state = await records.renew_lease(self.deps.redis, self.run_id, self.generation, self._owner, ttl)
                    if state is records.LeaseState.VANISHED:
                        state = await self._retake_lease()
                if state is records.LeaseState.TAKEN:
                    self._request_stop("lease")
                elif state is records.LeaseState.HELD:
                    self.lease_ok_mono = time.monotonic()
                async with asyncio.timeout(interval):
                    if await records.cancel_requested(self.deps.redis, self.run_id):
                        self._request_stop("cancel")
                if self._writer is not None:
                    self._writer.mark()  # renews the task copy's TTL with the lease
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("run %s: heartbeat failed (%s)", self.run_id, type(exc).__name__)
            if time.monotonic() - self.lease_ok_mono > ttl:
                # the lease may have expired: another worker may take the run over from now on
                self._request_stop("lease")
            if beats % 3 == 0 and not self.stop.is_set():
                await self._check_durable_cancel()
            self._is_cancelled()  # arms the soft limit even between progress reports

    async def _retake_lease(self) -> records.LeaseState:
        """The lease vanished (Redis restarted empty): ours again only if the record says we still run."""
        try:
            run = await records.load_run(self.deps.storage, self.run_id)
        except AetheraError:
            return records.LeaseState.VANISHED  # cannot tell: the lease TTL check decides
        if run.status is not RunStatus.PROCESSING or run.generation != self.generation:
            return records.LeaseState.TAKEN
        taken = await records.acquire_lease(
            self.deps.redis, self.run_id, self.generation, self._owner, records.lease_ttl_s(self.deps.settings)
        )
        return records.LeaseState.HELD if taken else records.LeaseState.TAKEN

    async def _check_durable_cancel(self) -> None:
        # a cancellation recorded while Redis was away reaches the worker through the record
        try:
            run = await records.load_run(self.deps.storage, self.run_id)
        except AetheraError:
            return
        if run.cancel_requested:
            self._request_stop("cancel")
        elif run.generation != self.generation or run.status is not RunStatus.PROCESSING:
            self._request_stop("lease")

    def _request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()

    def _lease_lost(self) -> bool:
        return self.stop_reason == "lease"

    async def _cancel_flag(self) -> bool:
        try:
            return await records.cancel_requested(self.deps.redis, self.run_id)
        except (RedisError, OSError):
            return False

    async def _save(self, name: str, data: bytes, media_type: str) -> None:
        if self._lease_lost():
            raise StaleAttempt("this attempt lost its lease; it stores nothing more")
        entry = await with_retries(
            self.deps.settings,
            f"storing {name}",
            lambda: store_output(self.deps.storage, self.run_id, name, data, media_type, generation=self.generation),
        )
        self.outputs.pop(name, None)  # a name stored again moves to the end, as the index always had it
        self.outputs[name] = entry
        self._index_dirty = True

    async def _write_index(self) -> None:
        """Store the index of this attempt's outputs (retried like an output), if it changed."""
        if not self._index_dirty or self._lease_lost():
            return
        entries = list(self.outputs.values())
        await with_retries(
            self.deps.settings,
            "storing the artifact index",
            lambda: save_index(self.deps.storage, self.run_id, entries, self.generation),
        )
        self._index_dirty = False

    async def _write_index_quietly(self) -> None:
        try:
            await self._write_index()
        except AetheraError as exc:
            log.warning("run %s: artifact index not stored (%s)", self.run_id, exc.code)

    # --- endings -------------------------------------------------------------------------------

    async def _transient_failure(self, exc: BaseException) -> str:
        assert self.run is not None
        s = self.deps.settings
        reason = exc.detail if isinstance(exc, AetheraError) else f"{type(exc).__name__} talking to a backend"
        if self.run.attempts >= s.run_max_attempts:
            detail = f"gave up after {self.run.attempts} attempts; last error: {reason}"
            return await self._finish(RunStatus.FAILED, detail, "backend_unavailable", detail)
        delay = backoff_s(s, self.run.attempts)
        note = f"attempt {self.run.attempts} failed ({reason}); retrying in {delay:g} s"
        self._log(note)
        return await self._requeue(note, "retrying", delay, counted=True, outcome="retrying")

    async def _requeue(self, note: str, code: str, delay_s: float, *, counted: bool, outcome: str) -> str:
        """Hand the run to its next generation (PENDING) and queue that generation's job."""
        nxt = self.generation + 1
        await self._stop_writer()

        def hand_over(r: RunRecord) -> bool:
            r.status = RunStatus.PENDING
            r.generation = nxt
            r.job_id = job_id_for(self.run_id, nxt)
            r.error, r.error_code = note, code
            if not counted:
                r.attempts = max(0, r.attempts - 1)  # a worker stopping is not the run's failure
            return True

        await self._save_log_quietly()
        await self._write_index_quietly()
        try:
            self.run = await self._write(hand_over)
        except StaleAttempt:
            return "lease-lost"
        except AetheraError as exc:
            # storage is away: nothing recorded, so nothing queued; the lease lapses and recovery moves
            # the run on when storage is back
            log.warning("run %s: hand-over not recorded (%s)", self.run_id, exc.code)
            return "unrecorded"
        await self._publish_copy()
        try:
            await self.deps.queue.enqueue_run(self.run_id, nxt, defer_s=delay_s)
        except (RedisError, OSError):
            pass  # recovery queues a PENDING run whose job is missing
        return outcome

    async def _revoke_unstarted(self) -> str:
        def revoke(r: RunRecord) -> bool:
            if r.status.is_final:
                return False
            if r.generation != self.generation or r.status is not RunStatus.PENDING:
                raise StaleAttempt("the run moved on")
            _set_final(r, RunStatus.REVOKED, None, None, None)
            return True

        try:
            self.run = await records.update_run(self.deps.storage, self.run_id, revoke)
        except AetheraError:
            return "superseded"
        await self._publish_copy()
        await record_run_status(self.deps.redis, RunStatus.REVOKED.value)
        return "revoked"

    async def _on_cancelled(self) -> None:
        """The queue cancelled this coroutine: user abort, hard time limit, or the worker is stopping."""
        s = self.deps.settings
        elapsed = time.monotonic() - self.called_mono
        if self._lease_lost():
            return
        if await self._cancel_flag():
            self._request_stop("cancel")
            await self._finish(RunStatus.REVOKED, None, None, "cancelled")
        elif elapsed >= s.run_hard_time_limit_s - min(1.0, 0.1 * s.run_hard_time_limit_s):
            self._request_stop("hard_time")
            detail = f"time limit exceeded: the run was stopped after the hard limit of {s.run_hard_time_limit_s:g} s"
            await self._finish(RunStatus.FAILED, detail, TimeLimitExceeded.code, detail)
        else:
            self._request_stop("shutdown")
            self._log("the worker is stopping; the run goes back to the queue")
            await self._requeue(
                "the worker stopped; the run will be resumed by another worker",
                "worker_stopped",
                0.0,
                counted=False,
                outcome="handed-back",
            )

    async def _finish(self, status: RunStatus, error: str | None, code: str | None, note: str) -> str:
        """Commit a final state, fenced by this attempt's generation; COMPLETED names its outputs."""
        with self.phases.measure("commit"):
            return await self._commit(status, error, code, note)

    async def _commit(self, status: RunStatus, error: str | None, code: str | None, note: str) -> str:
        assert self.run is not None
        self._log(f"{status.value}: {note}")
        if status is not RunStatus.REVOKED:
            await self._save_log_quietly()
        if status is RunStatus.COMPLETED:
            # the committed outputs must be listed: a COMPLETED without its index cannot be served
            try:
                await self._write_index()
            except StaleAttempt:
                return "lease-lost"
            except AetheraError as exc:
                if failures.is_transient(exc):
                    return await self._transient_failure(exc)
                return await self._finish(RunStatus.FAILED, exc.detail, exc.code, f"failed: {exc.detail}")
        else:
            await self._write_index_quietly()

        def commit(r: RunRecord) -> bool:
            if status is RunStatus.COMPLETED and r.cancel_requested:
                _set_final(r, RunStatus.REVOKED, None, None, self.generation)  # the cancellation came first
            else:
                _set_final(r, status, error, code, self.generation)
            return True

        await self._stop_writer()
        try:
            self.run = await self._write(commit)
        except StaleAttempt:
            self._log("another attempt owns the run now; nothing of this one is kept")
            await self._collect_garbage(keep=None, only=self.generation)
            return "superseded"
        except AetheraError as exc:
            # storage will not take the final state: keep it in Redis, where the API shows it and recovery
            # picks it up to write it to storage as soon as it can
            intended = self.run
            commit(intended)
            intended.updated_at = utc_now_iso()
            stashed = await records.stash_final(self.deps.redis, intended)
            # no final copy is written: a copy outliving a lost stash would contradict the record; GET /tasks
            # reads the stash beside the record instead
            log.warning(
                "run %s: final state %s not stored (%s); %s",
                self.run_id,
                intended.status.value,
                exc.code,
                "kept in Redis for recovery" if stashed else "not kept anywhere",
            )
            return "unrecorded"
        await self._publish_copy()
        ran_s = time.monotonic() - self.started_mono if self.started_mono else None
        await record_run_status(self.deps.redis, self.run.status.value, duration_s=ran_s)
        if self.run.status is RunStatus.COMPLETED:
            await self._collect_garbage(keep=self.generation)
            await reuse.record_completed(self.deps.storage, self.run)  # after the commit, never before
        return status.value.lower() if self.run.status is status else self.run.status.value.lower()

    async def _write(self, change: records.RunChange) -> RunRecord:
        """A fenced write of the record, retried on transient storage errors."""
        return await with_retries(
            self.deps.settings,
            "writing the run record",
            lambda: records.update_run(self.deps.storage, self.run_id, records.fenced(self.generation, change)),
        )

    async def _collect_garbage(self, *, keep: int | None, only: int | None = None) -> None:
        """Delete the outputs of attempts that were not committed (best effort: a sweep never serves them)."""
        prefix = attempt_prefix(self.run_id, None) + "attempts/"
        try:
            doomed = [
                stat.key
                async for stat in self.deps.storage.list(prefix)
                if _generation_of(stat.key, prefix) not in (keep, None)
                and (only is None or _generation_of(stat.key, prefix) == only)
            ]
            for key in doomed:
                await self.deps.storage.delete(key)
        except AetheraError as exc:
            log.info("run %s: outputs of other attempts not collected (%s)", self.run_id, exc.code)

    async def _save_log_quietly(self) -> None:
        if self._lease_lost():
            return
        try:
            await self._save(
                keys.RUN_LOG_NAME, ("\n".join(self.log_lines) + "\n").encode(), "text/plain; charset=utf-8"
            )
        except AetheraError as exc:
            log.warning("run %s: run.log not stored (%s)", self.run_id, exc.code)

    async def _load_earlier_log(self) -> None:
        """run.log tells the whole story of a run: lines of the generation before come first."""
        if self.generation <= 1:
            return
        try:
            earlier = await self.deps.storage.read(artifact_key(self.run_id, keys.RUN_LOG_NAME, self.generation - 1))
        except (ObjectNotFound, StorageError):
            return
        except AetheraError:
            return
        self.log_lines[:0] = earlier.decode("utf-8", "replace").splitlines()

    async def _publish_copy(self) -> None:
        assert self.run is not None
        await records.publish_task(
            self.deps.redis, self.run, self.progress, max_attempts=self.deps.settings.run_max_attempts
        )

    async def _release(self) -> None:
        try:
            await records.release_lease(self.deps.redis, self.run_id, self.generation, self._owner)
        except (RedisError, OSError):
            pass  # the lease expires on its own

    def _log(self, line: str) -> None:
        self.log_lines.append(f"{utc_now_iso()} {line}")

    @property
    def _owner(self) -> str:
        return self.deps.owner


def _set_final(
    run: RunRecord, status: RunStatus, error: str | None, code: str | None, output_generation: int | None
) -> None:
    run.status = status
    run.error, run.error_code = error, code
    run.finished_at = utc_now_iso()
    run.output_generation = output_generation
    if status is RunStatus.REVOKED:
        run.cancel_requested = True


def _generation_of(key: str, prefix: str) -> int | None:
    head = key[len(prefix) :].split("/", 1)[0]
    return int(head) if head.isdigit() else None
