"""Which failures of a run are worth trying again: the one table.

Transient: a backend did not answer or answered "not now" (storage or Redis unreachable, S3 throttling
or a 5xx, a timeout; the same for a dataset layer GDAL reads over HTTP). Doing the same thing again later can succeed, so the worker retries the failed
operation (a save, the commit) with backoff, and a run whose attempt ran out of those retries is
re-queued as a new attempt while attempts are left.

Permanent: the input or the deployment is wrong (a bad AOI, a missing layer, a write refused for good:
disk full, permission denied, an S3 4xx). Doing it again gives the same answer, so the run ends FAILED
with the reason at once.

Looked up along the exception's MRO like the HTTP status table, so the most specific class wins.
"""

from __future__ import annotations

import enum

from redis.exceptions import RedisError

from aethera import errors as e


class Failure(str, enum.Enum):
    TRANSIENT = "transient"  # try again (the operation, then the attempt)
    PERMANENT = "permanent"  # end the run FAILED with the reason


KIND_BY_ERROR: dict[type[BaseException], Failure] = {
    e.BackendUnavailable: Failure.TRANSIENT,
    e.StorageUnavailable: Failure.TRANSIENT,
    RedisError: Failure.TRANSIENT,
    ConnectionError: Failure.TRANSIENT,
    TimeoutError: Failure.TRANSIENT,
    e.StorageWriteFailed: Failure.PERMANENT,
    e.StorageError: Failure.PERMANENT,  # e.g. S3 refused the request with a 4xx
    e.InvalidKey: Failure.PERMANENT,
    e.PreconditionFailed: Failure.PERMANENT,  # never retried blindly: the caller re-reads and decides
    e.StaleAttempt: Failure.PERMANENT,
    e.InvalidInput: Failure.PERMANENT,
    e.AnalysisError: Failure.PERMANENT,
    e.DatasetError: Failure.PERMANENT,
    e.DatasetUnavailable: Failure.TRANSIENT,  # a layer's server failed or throttled, a read timed out
    e.ConfigError: Failure.PERMANENT,
    e.RulePackError: Failure.PERMANENT,
    e.AetheraError: Failure.PERMANENT,
}


def classify(exc: BaseException) -> Failure:
    """TRANSIENT or PERMANENT; an exception the table does not know is PERMANENT (never retried blindly)."""
    for cls in type(exc).__mro__:
        kind = KIND_BY_ERROR.get(cls)
        if kind is not None:
            return kind
    return Failure.PERMANENT


def is_transient(exc: BaseException) -> bool:
    return classify(exc) is Failure.TRANSIENT
