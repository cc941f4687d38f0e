"""The one table of transient and permanent failures, a case per class, and what the storage backends
raise for each kind of answer they get (so a refusal is never retried as if it were an outage)."""

from __future__ import annotations

import errno

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aethera import errors as e
from aethera.jobs.failures import KIND_BY_ERROR, Failure, classify
from aethera.storage.local import LocalStorage
from aethera.storage.s3 import S3Storage

T, P = Failure.TRANSIENT, Failure.PERMANENT

CASES: list[tuple[BaseException, Failure]] = [
    (e.BackendUnavailable("redis away"), T),
    (e.StorageUnavailable("S3 away"), T),
    (RedisConnectionError("refused"), T),
    (RedisTimeoutError("slow"), T),
    (ConnectionResetError("reset"), T),
    (TimeoutError("deadline"), T),
    (e.StorageWriteFailed("disk full"), P),
    (e.StorageError("S3 refused the request"), P),
    (e.ObjectNotFound("gone"), P),
    (e.InvalidKey("bad key"), P),
    (e.PreconditionFailed("changed"), P),
    (e.StaleAttempt("superseded"), P),
    (e.InvalidInput("bad"), P),
    (e.InvalidAOI("bad aoi"), P),
    (e.AnalysisError("step failed"), P),
    (e.DatasetError("layer missing"), P),
    (e.DatasetUnavailable("layer server answered 503"), T),
    (e.TimeLimitExceeded("too long"), P),
    (e.ConfigError("bad setting"), P),
    (e.RulePackError("bad pack"), P),
    (e.AetheraError("anything else of ours"), P),
    (ValueError("a bug"), P),  # unknown: never retried blindly
]


@pytest.mark.parametrize(("exc", "kind"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_each_failure_class_has_its_kind(exc: BaseException, kind: Failure) -> None:
    assert classify(exc) is kind


def test_every_class_in_the_table_has_a_case() -> None:
    covered = {type(exc) for exc, _ in CASES}
    assert all(any(issubclass(c, cls) for c in covered) for cls in KIND_BY_ERROR), set(KIND_BY_ERROR) - covered


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"
    )


@pytest.mark.parametrize(
    ("code", "status", "writing", "kind"),
    [
        ("InternalError", 500, True, T),
        ("ServiceUnavailable", 503, False, T),
        ("SlowDown", 503, True, T),
        ("RequestTimeout", 400, True, T),  # S3 sends this one as a 400: worth asking again
        ("TooManyRequests", 429, False, T),
        ("InvalidArgument", 400, True, P),
        ("MalformedXML", 400, True, P),
        ("InvalidRange", 416, False, P),
        ("MethodNotAllowed", 405, False, P),
        ("AccessDenied", 403, True, P),
        ("EntityTooLarge", 400, True, P),
    ],
)
def test_s3_answers_are_transient_or_permanent(code: str, status: int, writing: bool, kind: Failure) -> None:
    storage = S3Storage(bucket="b")
    mapped = storage._map(_client_error(code, status), "PutObject", "runs/x", writing=writing)
    assert classify(mapped) is kind, (code, status, type(mapped).__name__)
    assert "runs/x" not in mapped.detail or code in ("NoSuchKey",)  # no key or endpoint leaks into messages


@pytest.mark.parametrize(
    "exc", [EndpointConnectionError(endpoint_url="http://s3"), ReadTimeoutError(endpoint_url="http://s3")]
)
def test_s3_unreachable_is_transient(exc: Exception) -> None:
    assert classify(S3Storage(bucket="b")._map(exc, "GetObject", "k")) is T


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.ENOSPC, P),
        (errno.EDQUOT, P),
        (errno.EACCES, P),
        (errno.EROFS, P),
        (errno.EFBIG, P),
        (errno.EIO, T),
    ],
)
def test_local_write_errors_are_transient_or_permanent(code: int, kind: Failure) -> None:
    assert classify(LocalStorage._write_error(OSError(code, "x"))) is kind
