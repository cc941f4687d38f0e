"""The analysis pipeline of one run attempt, in a child process of its own.

Why a process and not a thread: a thread cannot be killed (a hard time limit or an abort would leave it
running to its next step boundary), and some GDAL reads hold the GIL, which would stall the worker's
event loop (lease heartbeat included) for as long as the read lasts.

The children come from a "forkserver" (never a plain fork of the worker, which has an event loop and
threads): a small single-threaded server process that has imported the analysis stack once and forks
one child per attempt, so an attempt does not pay the imports again. The child:
- reports progress, outputs (waiting for the worker to store each one, so a storage error surfaces in
  the pipeline's own step), log records, and finally the result or the error, over a duplex Pipe;
- answers `is_cancelled` from a multiprocessing Event the worker sets (cancel, soft limit, lease loss)
  and from the soft deadline, so the pipeline raises RunCancelled at its next step boundary;
- dies with the worker (a thread watches the worker's end of its launch pipe), so a SIGKILLed worker
  leaves nothing running; the forkserver then exits too, as it does when its last client is gone.
On a hard time limit or any cancellation of the awaiting coroutine the child is terminated (SIGTERM,
then SIGKILL after a short grace) and reaped before the coroutine goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from aethera import keyspace as keys
from aethera.errors import AetheraError, RunCancelled
from aethera.jobs.phases import PhaseClock

if TYPE_CHECKING:  # the child imports the analysis stack itself, when it runs
    from aethera.analysis.results import Results
    from aethera.legal.engine import LegalResult

log = logging.getLogger(__name__)

# Imported once by the forkserver, so every forked child starts with the analysis stack loaded. Each
# child also imports the worker's main script (as multiprocessing does): worker.py and the `aethera`
# command import these, so that import costs nothing once they are preloaded.
PRELOAD = ("aethera.jobs.pipeline_preload", "aethera.jobs.worker", "aethera.cli")

JSON, GEOJSON, HTML = "application/json", "application/geo+json", "text/html; charset=utf-8"

TERMINATE_GRACE_S = 3.0  # SIGTERM, then SIGKILL after this long
KILL_WAIT_S = 10.0  # after SIGKILL the status comes within this; else it is given up on
EXIT_WAIT_S = 10.0  # a child that sent its result exits on its own within this; else it is terminated

_context: Any = None
_context_lock = threading.Lock()
_active: dict[int, str] = {}  # pid -> run id, of the children running now


class PipelineCrashed(Exception):
    """The child failed in a way the service did not foresee; the message (a traceback) is for the log."""


@dataclass(frozen=True)
class PipelineJob:
    """What a child needs to run one attempt (pickled to it)."""

    run_id: str
    aoi_bytes: bytes
    params: dict[str, Any]
    datasets: str
    max_aoi_km2: float
    soft_deadline_mono: float  # time.monotonic() is system-wide on Linux: the same clock in the child
    run: dict[str, Any] = field(default_factory=dict)  # the run record as plain data (results and report)
    gdal_options: dict[str, str] = field(default_factory=dict)  # `gdal_io.gdal_options` of the worker's settings


@dataclass(frozen=True)
class PipelineSummary:
    """What the child returns once every output has been stored: only small figures (the outputs went
    through `on_output` one by one, and the worker stored each before the child went on)."""

    step_durations_s: dict[str, float]
    has_legal: bool
    # the child's own clock: the analysis (less its waits for stored outputs), the report, those waits
    pipeline_s: float = 0.0
    render_s: float = 0.0
    output_wait_s: float = 0.0


ProgressFn = Callable[[str, float, str], None]
OutputFn = Callable[[str, bytes, str], Awaitable[None]]


def _mp() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(list(PRELOAD))
            _context = ctx
        return _context


class StopFlag:
    """The stop request a run attempt's child polls at each step boundary: one byte of shared memory.

    Not a `multiprocessing.Event`: its `is_set()` takes a lock shared with the child, and a child killed
    while holding it (a hard time limit, a cancellation) would leave the worker's event loop blocked on
    that lock forever. A single byte is written and read whole, so it needs no lock."""

    def __init__(self, ctx: Any) -> None:
        self._flag = ctx.RawValue(ctypes.c_bool, False)

    def set(self) -> None:
        self._flag.value = True

    def is_set(self) -> bool:
        return bool(self._flag.value)


def new_stop_event() -> StopFlag:
    """A fresh stop flag for one run attempt's child."""
    return StopFlag(_mp())


def warm_up() -> None:
    """Start the forkserver now (blocking: it imports the analysis stack) rather than on the first run."""
    from multiprocessing import forkserver

    _mp()
    forkserver.ensure_running()


def active_pids() -> dict[int, str]:
    """pid -> run id of the pipeline processes this worker runs now."""
    return dict(_active)


async def run_pipeline(
    job: PipelineJob,
    stop: Any,
    on_progress: ProgressFn,
    on_output: OutputFn,
    *,
    phases: PhaseClock | None = None,
    reap_later: Callable[[Awaitable[None]], None] | None = None,
) -> Any:
    """Run the pipeline for `job` in a child process; returns its PipelineOutput or raises its error.

    `on_progress` and `on_output` are called on the event loop, in the order the pipeline reported.
    `phases` gets "spawn" (the forkserver hand-off), "pipeline" and "render" (the child's figures),
    "handoff" (the rest of the child's life: its start after the fork, encoding, messages) and "reap".
    `reap_later`: a child that reported its result (or its error) has nothing left to say and exits on
    its own; waiting for its exit is handed to this callable (which must await it before the attempt
    lets go of its lease) instead of delaying the caller's commit. A child stopped early (cancellation,
    hard limit) is always terminated and reaped before this returns."""
    phases = phases or PhaseClock()
    loop = asyncio.get_running_loop()
    ctx = _mp()
    conn, child_conn = ctx.Pipe(duplex=True)
    proc = ctx.Process(
        target=_child_main,
        args=(child_conn, stop, job, logging.getLogger().getEffectiveLevel()),
        name=f"aethera-run-{job.run_id[:8]}",
        daemon=True,
    )
    # starting may have to start the forkserver, which imports the analysis stack: off the loop
    started = loop.run_in_executor(None, proc.start)
    messages: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    reader: threading.Thread | None = None
    finished = False
    try:
        with phases.measure("spawn"):
            await asyncio.shield(started)
        exchange_t0 = time.perf_counter()
        child_conn.close()  # the child has its own copy; ours would hide its end-of-file
        pid = proc.pid
        _active[pid] = job.run_id
        log.info("pipeline process %d started", pid)
        reader = threading.Thread(
            target=_read_messages, args=(conn, loop, messages), name=f"run-{job.run_id[:8]}-pipe", daemon=True
        )
        reader.start()
        try:
            result = await _exchange(conn, messages, on_progress, on_output)
        except asyncio.CancelledError:
            raise  # a hard limit or the worker stopping: the child is terminated below
        except BaseException:
            finished = True  # the child reported its error and is exiting on its own
            raise
        finished = True
        if isinstance(result, PipelineSummary):
            phases.add("pipeline", result.pipeline_s)
            phases.add("render", result.render_s)
            phases.add(
                "handoff",
                time.perf_counter() - exchange_t0 - result.pipeline_s - result.render_s - result.output_wait_s,
            )
        return result
    finally:
        reap = _timed(phases, "reap", _reap(started, proc, conn, child_conn, reader, finished))
        if finished and reap_later is not None:
            reap_later(reap)
        else:
            await asyncio.shield(reap)


async def _timed(phases: PhaseClock, phase: str, work: Awaitable[None]) -> None:
    with phases.measure(phase):
        await work


async def _exchange(
    conn: Connection, messages: asyncio.Queue[tuple[Any, ...]], on_progress: ProgressFn, on_output: OutputFn
) -> Any:
    output_error: BaseException | None = None
    while True:
        kind, *body = await messages.get()
        if kind == "progress":
            on_progress(*body)
        elif kind == "log":
            level, name, text = body
            logger = logging.getLogger(name)
            if logger.isEnabledFor(level):
                logger.log(level, "%s", text)
        elif kind == "output":
            name, data, media_type = body
            try:
                await on_output(name, data, media_type)
            except AetheraError as exc:
                output_error = exc
                reply: tuple[Any, ...] = ("failed", *_describe(exc))
            except Exception as exc:
                log.warning("output %s not stored", name, exc_info=True)
                reply = ("failed", None, None, f"{type(exc).__name__} storing {name}", {})
            else:
                reply = ("ok",)
            with contextlib.suppress(OSError):  # a child gone meanwhile: its end-of-file is next
                conn.send(reply)  # a few bytes the child is waiting for: never blocks
        elif kind == "result":
            return body[0]
        elif kind == "error":
            rebuilt = _rebuild(*body)
            if (
                output_error is not None
                and type(output_error) is type(rebuilt)
                and getattr(output_error, "detail", None) == rebuilt.detail
            ):
                raise output_error  # the storage error itself, as the worker saw it
            raise rebuilt
        elif kind == "crash":
            raise PipelineCrashed(body[0])
        else:  # "eof": the child ended without a word
            raise PipelineCrashed("the pipeline process ended without a result")


def _read_messages(conn: Connection, loop: asyncio.AbstractEventLoop, messages: asyncio.Queue[tuple[Any, ...]]) -> None:
    """Thread: the blocking reads (and unpickling of large layers) stay off the event loop."""

    def put(msg: tuple[Any, ...]) -> None:
        try:
            loop.call_soon_threadsafe(messages.put_nowait, msg)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            put(("eof",))
            return
        except Exception:  # a message that does not unpickle
            put(("crash", traceback.format_exc()))
            return
        put(msg)
        if msg[0] in ("result", "error", "crash"):
            return


async def _reap(
    started: asyncio.Future[None],
    proc: Any,
    conn: Connection,
    child_conn: Connection,
    reader: threading.Thread | None,
    finished: bool,
) -> None:
    try:
        await started  # closing the child's end while start() pickles it would break the start
    except BaseException:  # never started: nothing to reap
        conn.close()
        child_conn.close()
        return
    child_conn.close()
    pid = proc.pid
    code = await asyncio.to_thread(_stop_and_reap, proc, EXIT_WAIT_S if finished else 0.0)
    if reader is not None:
        await asyncio.to_thread(reader.join, 5.0)  # the child's end is closed: the reader has its EOF
    conn.close()
    _active.pop(pid, None)
    log.info("pipeline process %d ended (exit code %s)", pid, code)


def _stop_and_reap(proc: BaseProcess, wait_s: float) -> int | None:
    proc.join(wait_s)
    if proc.exitcode is None:
        proc.terminate()
        proc.join(TERMINATE_GRACE_S)
    if proc.exitcode is None:
        proc.kill()
        proc.join(KILL_WAIT_S)
    code = proc.exitcode
    if code is None:
        # killed, yet its exit status never came back (the forkserver reports it): the attempt must not
        # wait for it forever while its heartbeat keeps the lease alive
        log.error("pipeline process %s: no exit status %.0f s after SIGKILL; not waiting longer", proc.pid, KILL_WAIT_S)
        return None
    proc.close()
    return code


# --- errors across the process boundary ---------------------------------------------------------


def _describe(exc: AetheraError) -> tuple[str, str, str, dict[str, Any]]:
    return type(exc).__module__, type(exc).__qualname__, exc.detail, dict(exc.extra)


def _rebuild(module: str | None, qualname: str | None, detail: str, extra: dict[str, Any]) -> AetheraError:
    found: object = None
    if module and qualname and module.startswith("aethera."):
        try:
            found = getattr(importlib.import_module(module), qualname)
        except (ImportError, AttributeError):
            found = None
    cls = found if isinstance(found, type) and issubclass(found, AetheraError) else AetheraError
    try:
        return cls(detail, **extra)
    except TypeError:
        return cls(detail)


# --- the child ----------------------------------------------------------------------------------


class _PipeLogHandler(logging.Handler):
    """The child's log records go to the worker, which logs them with the run's ids."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a log line is never worth the run
            self._send(("log", record.levelno, record.name, self.format(record)))


def _die_with_parent() -> None:
    """A thread that kills this process as soon as the worker that asked for it is gone.

    `parent_process()` is the worker (not the forkserver): its sentinel reaches end-of-file when the
    worker's end closes, even on SIGKILL. A signal tied to the forkserver's death would not do: the
    forkserver lives as long as any of its children holds its "alive" pipe, which each child does."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGKILL)  # nobody is left to report to, or to store what we make

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _child_main(conn: Connection, stop: Any, job: PipelineJob, log_level: int) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the worker, which decides
    lock = threading.Lock()  # the pipeline's libraries may log from threads of their own

    def send(msg: tuple[Any, ...]) -> None:
        with lock:
            conn.send(msg)

    root = logging.getLogger()
    root.handlers[:] = [_PipeLogHandler(send)]
    root.setLevel(log_level)
    try:
        try:
            result: tuple[Any, ...] = ("result", _run(conn, send, lock, stop, job))
        except AetheraError as exc:
            if exc.__cause__ is not None:  # an unexpected failure inside a step: its trace is for the log
                logging.getLogger(__name__).error("pipeline failed: %s", exc.detail, exc_info=exc)
            result = ("error", *_describe(exc))
        try:
            send(result)
        except Exception:  # e.g. an `extra` that does not pickle
            if result[0] != "error":
                raise
            send(("error", *result[1:4], {}))
    except BaseException:  # reported to the worker, which logs it
        with contextlib.suppress(Exception):  # the worker is gone
            send(("crash", traceback.format_exc()))
    finally:
        conn.close()


def _run(
    conn: Connection, send: Callable[[tuple[Any, ...]], None], lock: threading.Lock, stop: Any, job: PipelineJob
) -> Any:
    import msgspec

    from aethera.analysis import pipeline
    from aethera.analysis.aoi import load_aoi
    from aethera.analysis.params import RunParams
    from aethera.analysis.results import document as results_document
    from aethera.data.catalog import load_catalog
    from aethera.data.gdal_io import configure_gdal

    def is_cancelled() -> bool:
        return stop.is_set() or time.monotonic() > job.soft_deadline_mono

    def progress(step: str, percent: float, message: str) -> None:
        send(("progress", step, percent, message))

    waited_s = [0.0]

    def on_output(name: str, data: bytes, media_type: str) -> None:
        if stop.is_set():
            raise RunCancelled("run stopped")
        t0 = time.perf_counter()
        with lock:  # the reply is ours: no log line may be sent in between
            conn.send(("output", name, data, media_type))
            reply = conn.recv()
        waited_s[0] += time.perf_counter() - t0
        if reply[0] != "ok":
            _, module, qualname, detail, extra = reply
            if module is None:
                raise RuntimeError(detail)  # the step fails as it would on any unexpected error
            raise _rebuild(module, qualname, detail, extra)

    sent: set[str] = set()

    def store(name: str, data: bytes, media_type: str) -> None:
        on_output(name, data, media_type)
        sent.add(name)

    configure_gdal(job.gdal_options)  # before any layer is opened: S3 endpoint, credentials, retries
    catalog = load_catalog(job.datasets)
    # the stored AOI is the service's own (validated, its repairs noted by the API): trusted as written
    aoi = load_aoi(job.aoi_bytes, filename="aoi.geojson", max_area_km2=job.max_aoi_km2, client_input=False)
    params = msgspec.convert(job.params, RunParams)
    t0 = time.perf_counter()
    output = pipeline.run(aoi, params, catalog, progress, is_cancelled, on_output=store)
    pipeline_s = time.perf_counter() - t0 - waited_s[0]
    # every output the run commits is made here, in the child, under the same time limits and
    # cancellation as the analysis itself (the report included: it is CPU work on client-sized input)
    for name, data in output.layers.items():
        artifact = name if "/" in name else keys.layer_name(name)
        if artifact not in sent:
            store(artifact, data, GEOJSON)
    results = results_document(output.results)
    document = {
        "run_id": job.run_id,
        "project_id": job.run.get("project_id"),
        "project_type": job.run.get("project_type"),
        "created_at": job.run.get("created_at"),
        "country": job.params.get("country"),
        **results,
    }
    store(keys.RESULTS_NAME, msgspec.json.encode(document), JSON)
    legal = msgspec.to_builtins(output.legal) if output.legal is not None else None
    if legal is not None:
        store(keys.LEGAL_NAME, msgspec.json.encode(legal), JSON)
    if is_cancelled():
        raise RunCancelled("the run was cancelled before its report")
    t0 = time.perf_counter()
    report = _render_report(
        output.results,
        output.legal,
        job.run,
        job.aoi_bytes,
        catalog=catalog,
        protected_geojson=output.layers.get("natura"),
        eligible_geojson=output.layers.get("eligible"),
    )
    render_s = time.perf_counter() - t0
    store(keys.REPORT_NAME, report, HTML)
    return PipelineSummary(
        step_durations_s=dict(getattr(output.results, "step_durations_s", None) or {}),
        has_legal=legal is not None,
        pipeline_s=pipeline_s,
        render_s=render_s,
        output_wait_s=waited_s[0],
    )


def _render_report(
    results: Results,
    legal: LegalResult | None,
    run: dict[str, Any],
    aoi_bytes: bytes,
    *,
    catalog: Any = None,
    protected_geojson: bytes | None = None,
    eligible_geojson: bytes | None = None,
) -> bytes:
    from datetime import datetime

    import msgspec

    from aethera.errors import AetheraError
    from aethera.report import render_report
    from aethera.report_map import site_map_svg

    try:
        aoi = msgspec.json.decode(aoi_bytes)
    except msgspec.DecodeError:
        aoi = None  # the outline is optional; the stored AOI was validated when the run was created
    try:
        site_map = site_map_svg(
            aoi,
            results.parameters.buffer_km,
            protected_geojson=protected_geojson,
            eligible_geojson=eligible_geojson,
            catalog=catalog,
        )
    except (AetheraError, ValueError, OSError) as exc:
        # the map illustrates; a layer that cannot be drawn leaves the outline and the tables
        log.warning("site map of run %s not drawn: %s", run.get("run_id"), getattr(exc, "detail", type(exc).__name__))
        site_map = ""
    return render_report(results, legal, run, aoi_geojson=aoi, generated_at=datetime.now(UTC), site_map=site_map)
