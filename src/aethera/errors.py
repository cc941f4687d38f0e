"""The one exception hierarchy of the service.

Every failure the service knows about is a subclass of `AetheraError` with a stable, machine-readable
`code`. `api/errors.py` holds the single table that maps these classes to HTTP statuses. Messages
(`detail`) are written for the user: they never contain a stack trace, a server path or a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class AetheraError(Exception):
    """Base of every error the service raises on purpose.

    `extra` goes into the answer's JSON body; `headers` into its HTTP headers (a 401's challenge, a
    429's `Retry-After`, a 416's `Content-Range`), both applied by `api/errors.py`."""

    code: str = "internal_error"

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = dict(headers or {})

    def to_dict(self) -> dict[str, Any]:
        return {"detail": self.detail, "code": self.code, **self.extra}


# --- configuration -----------------------------------------------------------------------------


class ConfigError(AetheraError):
    """A setting or configuration file is missing or invalid; start-up stops."""

    code = "config_error"


# --- request input -----------------------------------------------------------------------------


class MalformedRequest(AetheraError):
    """The request body is not parseable (bad JSON, wrong content type)."""

    code = "malformed_request"


class InvalidInput(AetheraError):
    """The request parsed but a field has a wrong value."""

    code = "invalid_input"


class InvalidAOI(InvalidInput):
    """The area of interest cannot be screened (wrong geometry type, empty, too large, out of range)."""

    code = "invalid_aoi"


class UnsafeArchive(InvalidInput):
    """An uploaded archive was refused before extraction (traversal, links, bomb, too many members)."""

    code = "unsafe_archive"


class PayloadTooLarge(AetheraError):
    """The request body exceeds the configured limit."""

    code = "payload_too_large"


class NotFound(AetheraError):
    """The addressed project, run, task or object does not exist (or is not visible to the caller)."""

    code = "not_found"


class Conflict(AetheraError):
    """The request conflicts with the current state (run not completed, task already finished)."""

    code = "conflict"


class Unauthorized(AetheraError):
    """No valid credentials were presented; the answer says how to present them (RFC 6750)."""

    code = "unauthorized"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="aethera"'}, **extra)


class Forbidden(AetheraError):
    """The credentials do not allow this operation."""

    code = "forbidden"


class RateLimited(AetheraError):
    """Too many requests for this key; retry in `retry_after_s` (body and `Retry-After` header)."""

    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after_s: int, **extra: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)}, retry_after_s=retry_after_s, **extra)


class RangeNotSatisfiable(AetheraError):
    """The request's `Range` selects no byte of the resource; `Content-Range` says its size."""

    code = "range_not_satisfiable"


class RequestTimeout(AetheraError):
    """The client did not send its whole request body within `AETHERA_BODY_TIMEOUT_S`."""

    code = "request_timeout"


class ClientClosedRequest(AetheraError):
    """The client went away before its request was read; nobody is left to answer (logged as 499)."""

    code = "client_closed_request"


class BackendUnavailable(AetheraError):
    """A dependency (Redis, storage) cannot be reached right now; the request may be retried."""

    code = "backend_unavailable"


# --- storage -----------------------------------------------------------------------------------


class StorageError(AetheraError):
    """Base of the storage adapters' errors (the same set for every backend)."""

    code = "storage_error"


class ObjectNotFound(StorageError, NotFound):
    """No object is stored under that key."""

    code = "not_found"


class InvalidKey(StorageError, InvalidInput):
    """The key is not a safe relative key inside the storage root."""

    code = "invalid_key"


class StorageUnavailable(StorageError, BackendUnavailable):
    """The storage backend cannot be reached or refused the operation for a transient reason."""

    code = "backend_unavailable"


class StorageWriteFailed(StorageError):
    """The backend refused a write for a permanent reason (disk full, permission denied)."""

    code = "storage_write_failed"


class PreconditionFailed(StorageError):
    """A conditional write found the object changed (or present) since the caller read it."""

    code = "precondition_failed"


# --- runs --------------------------------------------------------------------------------------


class StaleAttempt(AetheraError):
    """A run attempt that is no longer the run's current one (its lease or generation moved on) tried
    to write; the write is refused so that only the current attempt's outputs can ever be committed."""

    code = "stale_attempt"


# --- analysis ----------------------------------------------------------------------------------


class AnalysisError(AetheraError):
    """The screening could not be computed."""

    code = "analysis_error"


class DatasetError(AnalysisError):
    """A dataset layer is missing, unreadable or misconfigured; the message names the layer."""

    code = "dataset_error"


class DatasetUnavailable(DatasetError, BackendUnavailable):
    """A layer's file could not be read for a transient reason (its server answered 5xx or throttled,
    the connection was reset or timed out, after GDAL's own retries); the run is tried again."""

    code = "dataset_unavailable"


class RunCancelled(AnalysisError):
    """The run was cancelled by the user."""

    code = "cancelled"


class TimeLimitExceeded(AnalysisError):
    """The run exceeded its time limit."""

    code = "time_limit_exceeded"


# --- legal -------------------------------------------------------------------------------------


class RulePackError(AetheraError):
    """A legal rule pack is malformed (unknown metric, operator or field); raised when it loads."""

    code = "rule_pack_error"


class UnknownCountry(InvalidInput):
    """The country code is malformed or not an ISO 3166-1 alpha-3 code the service knows."""

    code = "unknown_country"
