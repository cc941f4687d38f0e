"""Prometheus metrics of the API process and of the workers, exposed together at `GET /metrics`.

Two kinds of metrics, because the API and the workers are separate processes, usually on separate
machines:

- The API process's own metrics (requests by route and status, latency, requests in flight, export
  bytes sent) live in a `prometheus_client` registry owned by the app (`ApiMetrics`).
- Run metrics (runs by status, run and step durations) and worker heartbeats are produced by workers.
  Each worker adds its observations to plain Redis hashes (`SharedMetrics.inc` / `.observe`), and the
  API reads those hashes at scrape time. All workers, on any machine, already share that one Redis, so
  the totals are exact across machines and survive worker restarts; nothing assumes a shared disk (as
  `prometheus_client`'s multiprocess mode would) and Prometheus needs to scrape only the API, not
  discover every worker. Queue depth is read from the queue itself at scrape time, so it is never stale.
  If Redis is emptied the shared counters restart from zero, which Prometheus handles as a counter reset.

The metric definitions below are the single place both sides read names, labels and buckets from.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from redis.asyncio import Redis
from redis.exceptions import RedisError

from aethera.observability import keys

log = logging.getLogger(__name__)

# Prometheus 2 and 3 both read the 0.0.4 text format; the newer 1.0.0 type is not understood by older
# servers, so the oldest common one is announced.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

Kind = Literal["counter", "histogram"]


@dataclass(frozen=True)
class SharedMetric:
    """A metric written by workers into Redis and exposed by the API."""

    name: str
    help: str
    kind: Kind
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()  # upper bounds, histogram only; +Inf is implied


RUNS_TOTAL = SharedMetric(
    "aethera_runs_total",
    "Runs that reached each status: PENDING when created, PROCESSING each time a worker starts an "
    "attempt, then COMPLETED, FAILED or REVOKED.",
    "counter",
    ("status",),
)
RUN_DURATION = SharedMetric(
    "aethera_run_duration_seconds",
    "Wall time of a run attempt from the worker picking it up to its final status.",
    "histogram",
    ("status",),
    (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
STEP_DURATION = SharedMetric(
    "aethera_run_step_duration_seconds",
    "Wall time of each pipeline step.",
    "histogram",
    ("step",),
    (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
WORKER_HEARTBEATS = SharedMetric(
    "aethera_worker_heartbeats_total",
    "Heartbeats sent by all worker processes.",
    "counter",
)
RUN_REUSE = SharedMetric(
    "aethera_run_reuse_total",
    "Runs created by outcome of the result-reuse lookup: hit (completed at once with the outputs of an "
    "identical COMPLETED run), miss (computed), off (config.reuse false).",
    "counter",
    ("outcome",),
)
SHARED_METRICS: tuple[SharedMetric, ...] = (RUNS_TOTAL, RUN_DURATION, STEP_DURATION, WORKER_HEARTBEATS, RUN_REUSE)

# API-process histogram buckets: from a cached task poll (ms) to a large export (minutes)
_SHARED_READ_TIMEOUT_S = 5.0

REQUEST_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def _label_field(metric: SharedMetric, labels: Mapping[str, str]) -> str:
    if set(labels) != set(metric.labels):
        raise ValueError(f"{metric.name} takes labels {metric.labels}, got {tuple(labels)}")
    return msgspec.json.encode([str(labels[name]) for name in metric.labels]).decode()


class SharedMetrics:
    """Writes worker-side observations into Redis. Cheap: one round trip per call."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def inc(self, metric: SharedMetric, amount: float = 1.0, **labels: str) -> None:
        if metric.kind != "counter":
            raise ValueError(f"{metric.name} is not a counter")
        # redis-py types a command for its sync and asyncio clients at once; the asyncio one always awaits
        incremented = self._redis.hincrbyfloat(
            keys.COUNTER.format(name=metric.name), _label_field(metric, labels), amount
        )
        await cast("Awaitable[float]", incremented)

    async def observe(self, metric: SharedMetric, value: float, **labels: str) -> None:
        await self.observe_many(metric, [(value, labels)])

    async def observe_many(self, metric: SharedMetric, observations: Sequence[tuple[float, Mapping[str, str]]]) -> None:
        """Several observations of one histogram in one round trip."""
        if metric.kind != "histogram":
            raise ValueError(f"{metric.name} is not a histogram")
        key = keys.HISTOGRAM.format(name=metric.name)
        # one transaction, so a scrape never sees a count without its sum
        async with self._redis.pipeline(transaction=True) as pipe:
            for value, labels in observations:
                field = _label_field(metric, labels)
                index = next((i for i, bound in enumerate(metric.buckets) if value <= bound), len(metric.buckets))
                pipe.hincrby(key, f"{field}|b{index}", 1)
                pipe.hincrbyfloat(key, f"{field}|sum", value)
                pipe.hincrby(key, f"{field}|count", 1)
            await pipe.execute()


async def record_run_status(redis: Redis, status: str, *, duration_s: float | None = None) -> None:
    """Count a run reaching `status` (and, when it ran, how long the attempt took).

    Never raises for a Redis outage: a lost observation must not fail the run it describes."""
    metrics = SharedMetrics(redis)
    try:
        await metrics.inc(RUNS_TOTAL, status=status)
        if duration_s is not None:
            await metrics.observe(RUN_DURATION, duration_s, status=status)
    except (RedisError, OSError) as exc:
        log.warning("run metrics not recorded (%s)", type(exc).__name__)


async def record_reuse(redis: Redis, outcome: str) -> None:
    """Count one reuse lookup (`hit`, `miss`, `off`). Never raises for a Redis outage."""
    try:
        await SharedMetrics(redis).inc(RUN_REUSE, outcome=outcome)
    except (RedisError, OSError) as exc:
        log.warning("reuse metrics not recorded (%s)", type(exc).__name__)


async def record_step_durations(redis: Redis, durations_s: Mapping[str, float | None]) -> None:
    """Observe each pipeline step's duration (steps that did not run, None, are skipped). Never raises
    for a Redis outage."""
    metrics = SharedMetrics(redis)
    observations = [
        (float(seconds), {"step": str(step)}) for step, seconds in durations_s.items() if seconds is not None
    ]
    try:
        if observations:  # one round trip for every step (it sits between the pipeline and the commit)
            await metrics.observe_many(STEP_DURATION, observations)
    except (RedisError, OSError) as exc:
        log.warning("step metrics not recorded (%s)", type(exc).__name__)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))


async def read_shared(redis: Redis) -> list[Metric]:
    """The shared metrics as Prometheus families, read from Redis in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for metric in SHARED_METRICS:
            template = keys.COUNTER if metric.kind == "counter" else keys.HISTOGRAM
            pipe.hgetall(template.format(name=metric.name))
        hashes = await pipe.execute()
    families: list[Metric] = []
    for metric, raw in zip(SHARED_METRICS, hashes, strict=True):
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if metric.kind == "counter":
            # the family name drops `_total`; prometheus_client adds it back on exposition
            family = CounterMetricFamily(metric.name.removesuffix("_total"), metric.help, labels=metric.labels)
            if not metric.labels and not fields:
                family.add_metric([], 0.0)
            for field, value in sorted(fields.items()):
                family.add_metric(msgspec.json.decode(field), float(value))
            families.append(family)
            continue
        hist = HistogramMetricFamily(metric.name, metric.help, labels=metric.labels)
        by_labels: dict[str, dict[str, str]] = {}
        for field, value in fields.items():
            label_part, _, suffix = field.rpartition("|")
            by_labels.setdefault(label_part, {})[suffix] = value
        for label_part, parts in sorted(by_labels.items()):
            bounds = [*metric.buckets, math.inf]
            running = 0
            buckets: list[tuple[str, float]] = []
            for i, bound in enumerate(bounds):
                running += int(parts.get(f"b{i}", 0))
                buckets.append((_bound(bound), float(running)))
            hist.add_metric(msgspec.json.decode(label_part), buckets, float(parts.get("sum", 0.0)))
        families.append(hist)
    return families


async def read_queue_depth(redis: Redis, queue_key: str) -> list[Metric]:
    """Jobs waiting in (or deferred on) the queue, read from the queue's sorted set at scrape time."""
    depth = await redis.zcard(queue_key)
    family = GaugeMetricFamily("aethera_queue_depth", "Jobs queued and not yet picked up by a worker.")
    family.add_metric([], float(depth))
    return [family]


async def read_workers(redis: Redis, seen_within_s: float) -> list[Metric]:
    """Workers alive (heartbeat within `seen_within_s`) and the age of each recent worker's last heartbeat."""
    from aethera.observability.heartbeat import worker_ages

    ages = await worker_ages(redis, max_age_s=max(seen_within_s, 3600.0))
    alive = GaugeMetricFamily(
        "aethera_workers_alive", f"Worker processes that sent a heartbeat in the last {seen_within_s:g} s."
    )
    alive.add_metric([], float(sum(1 for age in ages.values() if age <= seen_within_s)))
    last = GaugeMetricFamily(
        "aethera_worker_last_heartbeat_age_seconds",
        "Seconds since each worker seen in the last hour sent its last heartbeat.",
        labels=("worker",),
    )
    for name, age in sorted(ages.items()):
        last.add_metric([name], age)
    return [alive, last]


class _Families:
    """A collector over families already read (prometheus_client collectors are synchronous; Redis is
    read asynchronously before exposition)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


class ApiMetrics:
    """The API process's own metrics, in a registry of its own (one per app, so tests can build many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "aethera_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "aethera_http_request_duration_seconds",
            "Time from receiving a request to the end of its response, by route template and method.",
            ("route", "method"),
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "aethera_http_requests_in_flight", "Requests being handled right now.", registry=self.registry
        )
        self.export_bytes = Counter(
            "aethera_export_bytes_sent", "Bytes of run exports (ZIP) written to clients.", registry=self.registry
        )
        self.scrape_errors = Counter(
            "aethera_metrics_scrape_errors",
            "Scrapes whose shared (Redis) part could not be read; the API's own part was still served.",
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        # `labels()` validates and locks on every call; the label sets are few (route templates x methods
        # x statuses), so each one's pair of children is looked up once and kept
        children = self._request_children.get((route, method, status))
        if children is None:
            children = (self.requests.labels(route, method, str(status)), self.request_duration.labels(route, method))
            self._request_children[(route, method, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    async def exposition(self, redis: Redis | None, *, queue_key: str | None, workers_seen_within_s: float) -> bytes:
        """The whole text exposition: the API's registry, then what workers recorded in Redis.

        When Redis cannot be read, the API's own metrics are still served (and the failure is counted),
        so a Redis outage shows up in the metrics instead of blanking them.
        """
        extra: list[Metric] = []
        if redis is not None:
            try:
                # a scrape must answer even while Redis hangs; TimeoutError is an OSError
                async with asyncio.timeout(_SHARED_READ_TIMEOUT_S):
                    extra += await read_shared(redis)
                    if queue_key is not None:
                        extra += await read_queue_depth(redis, queue_key)
                    extra += await read_workers(redis, workers_seen_within_s)
            except (RedisError, OSError):
                self.scrape_errors.inc()
                extra = []
        return generate_latest(self.registry) + generate_latest(_Families(extra))
