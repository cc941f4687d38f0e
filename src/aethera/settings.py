"""All configuration, read once from the environment and validated with clear errors.

Every setting is declared once in `_SPECS`: its environment variable, type, default and whether it is
a secret. `load_settings()` reads them; a bad value raises `ConfigError` naming the variable (never its
value when the variable is a secret). docs/configuration.md's table of variables mirrors `_SPECS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from aethera.errors import ConfigError

StorageBackend = Literal["local", "s3"]
Environment = Literal["development", "production"]
AuthMode = Literal["auto", "on", "off"]
S3Addressing = Literal["auto", "path", "virtual"]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """The service's configuration. Build it with `load_settings()`."""

    environment: Environment = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    # the frontend's dev server (port 3000) and Vite's default (5173), so `make run` and either work together
    cors_origins: tuple[str, ...] = (
        "http://localhost:3000",
        "http://127.0.0.1:3000",
        "http://localhost:5173",
        "http://127.0.0.1:5173",
    )
    max_body_bytes: int = 5 * 1024 * 1024
    max_upload_bytes: int = 20 * 1024 * 1024
    max_aoi_km2: float = 10_000.0

    storage_backend: StorageBackend = "local"
    storage_base_path: str = "./var/storage"
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str = "us-east-1"

    redis_url: str | None = None
    redis_data_dir: str = "./var/redis"

    datasets: str = "./var/sample-data/catalog.toml"
    solar_mw_per_ha: float = 0.5
    wind_mw_per_ha: float = 0.03
    default_buffer_km: float = 5.0
    basemap_max_features: int = 5000
    # GDAL's reads of s3:// and https:// catalog layers (data/gdal_io.py)
    datasets_s3_addressing: S3Addressing = "auto"
    gdal_http_max_retry: int = 4
    gdal_http_retry_delay_s: float = 1.0
    gdal_http_timeout_s: float = 60.0
    gdal_http_connect_timeout_s: float = 10.0

    worker_concurrency: int = 2
    run_soft_time_limit_s: float = 1800.0
    run_hard_time_limit_s: float = 3600.0
    run_max_attempts: int = 3
    run_lease_s: float = 60.0
    retry_backoff_base_s: float = 2.0
    retry_backoff_max_s: float = 60.0
    shutdown_grace_s: float = 30.0

    backend_deadline_s: float = 5.0
    header_timeout_s: float = 15.0
    body_timeout_s: float = 120.0

    auth: AuthMode = "auto"
    api_keys_file: str | None = None
    rate_limit_per_s: float = 10.0
    rate_limit_burst: int = 60
    # reverse proxies whose X-Forwarded-For is believed (CIDRs); empty: the TCP peer is the client
    trusted_proxies: tuple[str, ...] = ()
    archive_max_members: int = 64
    archive_max_unpacked_bytes: int = 100 * 1024 * 1024
    archive_max_ratio: float = 200.0

    # result reuse (jobs/reuse.py): off across tenants unless the operator allows it
    reuse_cross_tenant: bool = False
    batch_max_sites: int = 10_000

    def __repr__(self) -> str:  # secrets never reach a log line through repr()
        shown = []
        for spec in _SPECS:
            value = getattr(self, spec.field)
            if spec.secret and value is not None:
                value = "***"
            shown.append(f"{spec.field}={value!r}")
        return f"Settings({', '.join(shown)})"

    __str__ = __repr__

    @property
    def storage_root(self) -> Path:
        return Path(self.storage_base_path).resolve()


# The one statement of every default (capacity densities, the zone of influence, zip limits, ...):
# code that runs without settings of its own (the CLI, tests, a Python caller) reads it from here at
# call time, never from a copy of the number.
DEFAULTS = Settings()


@dataclass(frozen=True)
class _Spec:
    field: str
    env: str
    secret: bool = False
    doc: str = ""


_SPECS: tuple[_Spec, ...] = (
    _Spec("environment", "AETHERA_ENV", doc="development or production"),
    _Spec("host", "AETHERA_HOST", doc="address the API listens on"),
    _Spec("port", "AETHERA_PORT", doc="port the API listens on"),
    _Spec("log_level", "AETHERA_LOG_LEVEL", doc="DEBUG, INFO, WARNING, ERROR"),
    _Spec("cors_origins", "AETHERA_CORS_ORIGINS", doc="comma-separated origins allowed by CORS"),
    _Spec("max_body_bytes", "AETHERA_MAX_BODY_BYTES", doc="largest JSON request body"),
    _Spec("max_upload_bytes", "AETHERA_MAX_UPLOAD_BYTES", doc="largest uploaded AOI file"),
    _Spec("max_aoi_km2", "AETHERA_MAX_AOI_KM2", doc="largest AOI accepted, km²"),
    _Spec("storage_backend", "STORAGE_BACKEND", doc="local or s3"),
    _Spec("storage_base_path", "STORAGE_BASE_PATH", doc="root directory of local storage"),
    _Spec("s3_endpoint_url", "S3_ENDPOINT_URL", doc="S3 endpoint (unset: AWS)"),
    _Spec("s3_bucket", "S3_BUCKET", doc="bucket holding all results (required for s3)"),
    _Spec("s3_access_key_id", "S3_ACCESS_KEY_ID", secret=True, doc="S3 access key id"),
    _Spec("s3_secret_access_key", "S3_SECRET_ACCESS_KEY", secret=True, doc="S3 secret key"),
    _Spec("s3_region", "S3_REGION", doc="S3 region"),
    _Spec("redis_url", "REDIS_URL", secret=True, doc="Redis URL (unset: embedded Redis)"),
    _Spec("redis_data_dir", "AETHERA_REDIS_DATA_DIR", doc="data directory of the embedded Redis"),
    _Spec("datasets", "AETHERA_DATASETS", doc="dataset catalog file (TOML)"),
    _Spec("solar_mw_per_ha", "AETHERA_SOLAR_MW_PER_HA", doc="default solar capacity density"),
    _Spec("wind_mw_per_ha", "AETHERA_WIND_MW_PER_HA", doc="default onshore wind capacity density"),
    _Spec("default_buffer_km", "AETHERA_DEFAULT_BUFFER_KM", doc="default zone of influence"),
    _Spec("basemap_max_features", "AETHERA_BASEMAP_MAX_FEATURES", doc="most features of one base map answer"),
    _Spec(
        "datasets_s3_addressing",
        "AETHERA_DATASETS_S3_ADDRESSING",
        doc="auto, path or virtual: S3 addressing of s3:// layers (auto: path with S3_ENDPOINT_URL)",
    ),
    _Spec("gdal_http_max_retry", "AETHERA_GDAL_HTTP_MAX_RETRY", doc="GDAL's retries of a failed layer read"),
    _Spec("gdal_http_retry_delay_s", "AETHERA_GDAL_HTTP_RETRY_DELAY_S", doc="GDAL's first retry delay"),
    _Spec("gdal_http_timeout_s", "AETHERA_GDAL_HTTP_TIMEOUT_S", doc="one HTTP request of a layer read"),
    _Spec("gdal_http_connect_timeout_s", "AETHERA_GDAL_HTTP_CONNECT_TIMEOUT_S", doc="connecting to a layer's server"),
    _Spec("worker_concurrency", "AETHERA_WORKER_CONCURRENCY", doc="runs one worker runs at once"),
    _Spec("run_soft_time_limit_s", "AETHERA_RUN_SOFT_TIME_LIMIT_S", doc="run stops cleanly, FAILED"),
    _Spec("run_hard_time_limit_s", "AETHERA_RUN_HARD_TIME_LIMIT_S", doc="arq job timeout"),
    _Spec("run_max_attempts", "AETHERA_RUN_MAX_ATTEMPTS", doc="attempts before a run FAILS"),
    _Spec("run_lease_s", "AETHERA_RUN_LEASE_S", doc="a run with no heartbeat for this long is lost"),
    _Spec("retry_backoff_base_s", "AETHERA_RETRY_BACKOFF_BASE_S", doc="first retry delay"),
    _Spec("retry_backoff_max_s", "AETHERA_RETRY_BACKOFF_MAX_S", doc="cap on retry delay"),
    _Spec("shutdown_grace_s", "AETHERA_SHUTDOWN_GRACE_S", doc="SIGTERM: time left to in-flight work"),
    _Spec("backend_deadline_s", "AETHERA_BACKEND_DEADLINE_S", doc="an API call to storage or Redis: 503 past it"),
    _Spec("header_timeout_s", "AETHERA_HEADER_TIMEOUT_S", doc="request line and headers; idle keep-alive"),
    _Spec("body_timeout_s", "AETHERA_BODY_TIMEOUT_S", doc="a whole request body: 408 past it"),
    _Spec("auth", "AETHERA_AUTH", doc="auto, on or off (auto: on in production or with a keys file)"),
    _Spec("api_keys_file", "AETHERA_API_KEYS_FILE", doc="API keys file (salted hashes)"),
    _Spec("rate_limit_per_s", "AETHERA_RATE_LIMIT_PER_S", doc="requests per second per key (0: off)"),
    _Spec("rate_limit_burst", "AETHERA_RATE_LIMIT_BURST", doc="requests a key may send at once"),
    _Spec("trusted_proxies", "AETHERA_TRUSTED_PROXIES", doc="comma-separated CIDRs of reverse proxies"),
    _Spec("archive_max_members", "AETHERA_ARCHIVE_MAX_MEMBERS", doc="most files in an uploaded zip"),
    _Spec("archive_max_unpacked_bytes", "AETHERA_ARCHIVE_MAX_UNPACKED_BYTES", doc="largest unpacked zip"),
    _Spec("archive_max_ratio", "AETHERA_ARCHIVE_MAX_RATIO", doc="largest compression ratio of a member"),
    _Spec(
        "reuse_cross_tenant",
        "AETHERA_REUSE_CROSS_TENANT",
        doc="reuse a COMPLETED run of another tenant with the same content key (default false)",
    ),
    _Spec("batch_max_sites", "AETHERA_BATCH_MAX_SITES", doc="most sites one batch may hold"),
)

ENV_VARIABLES: dict[str, str] = {spec.env: spec.field for spec in _SPECS}


def _parse(spec: _Spec, raw: str) -> Any:
    field_type = Settings.__annotations__[spec.field]
    if spec.field in ("cors_origins", "trusted_proxies"):
        return tuple(o.strip() for o in raw.split(",") if o.strip())
    if raw == "" and "None" in str(field_type):
        return None
    return raw


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from `env` (default: the process environment) and validate it."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for spec in _SPECS:
        if spec.env in env:
            values[spec.field] = _parse(spec, env[spec.env])
    for spec in _SPECS:
        if spec.field not in values:
            continue
        try:
            msgspec.convert({spec.field: values[spec.field]}, Settings, strict=False)
        except msgspec.ValidationError as exc:
            shown = "(hidden)" if spec.secret else repr(env[spec.env])
            reason = str(exc).split(" - at ")[0]
            raise ConfigError(f"{spec.env}={shown} is invalid: {reason}") from None
    settings = msgspec.convert(values, Settings, strict=False)
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    positive = {
        "AETHERA_PORT": s.port,
        "AETHERA_MAX_BODY_BYTES": s.max_body_bytes,
        "AETHERA_MAX_UPLOAD_BYTES": s.max_upload_bytes,
        "AETHERA_MAX_AOI_KM2": s.max_aoi_km2,
        "AETHERA_SOLAR_MW_PER_HA": s.solar_mw_per_ha,
        "AETHERA_WIND_MW_PER_HA": s.wind_mw_per_ha,
        "AETHERA_DEFAULT_BUFFER_KM": s.default_buffer_km,
        "AETHERA_BASEMAP_MAX_FEATURES": s.basemap_max_features,
        "AETHERA_GDAL_HTTP_TIMEOUT_S": s.gdal_http_timeout_s,
        "AETHERA_GDAL_HTTP_CONNECT_TIMEOUT_S": s.gdal_http_connect_timeout_s,
        "AETHERA_WORKER_CONCURRENCY": s.worker_concurrency,
        "AETHERA_RUN_SOFT_TIME_LIMIT_S": s.run_soft_time_limit_s,
        "AETHERA_RUN_HARD_TIME_LIMIT_S": s.run_hard_time_limit_s,
        "AETHERA_RUN_MAX_ATTEMPTS": s.run_max_attempts,
        "AETHERA_RUN_LEASE_S": s.run_lease_s,
        "AETHERA_SHUTDOWN_GRACE_S": s.shutdown_grace_s,
        "AETHERA_BACKEND_DEADLINE_S": s.backend_deadline_s,
        "AETHERA_HEADER_TIMEOUT_S": s.header_timeout_s,
        "AETHERA_BODY_TIMEOUT_S": s.body_timeout_s,
        "AETHERA_RATE_LIMIT_BURST": s.rate_limit_burst,
        "AETHERA_ARCHIVE_MAX_MEMBERS": s.archive_max_members,
        "AETHERA_ARCHIVE_MAX_UNPACKED_BYTES": s.archive_max_unpacked_bytes,
        "AETHERA_ARCHIVE_MAX_RATIO": s.archive_max_ratio,
        "AETHERA_BATCH_MAX_SITES": s.batch_max_sites,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{name}={value!r} is invalid: must be greater than 0")
    if s.port > 65535:
        raise ConfigError(f"AETHERA_PORT={s.port!r} is invalid: must be at most 65535")
    if s.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"AETHERA_LOG_LEVEL={s.log_level!r} is invalid: use DEBUG, INFO, WARNING or ERROR")
    if s.run_hard_time_limit_s < s.run_soft_time_limit_s:
        raise ConfigError("AETHERA_RUN_HARD_TIME_LIMIT_S must not be below AETHERA_RUN_SOFT_TIME_LIMIT_S")
    if s.storage_backend == "s3" and not s.s3_bucket:
        raise ConfigError("S3_BUCKET is required when STORAGE_BACKEND=s3")
    if s.gdal_http_max_retry < 0 or s.gdal_http_retry_delay_s < 0:
        raise ConfigError("AETHERA_GDAL_HTTP_MAX_RETRY and AETHERA_GDAL_HTTP_RETRY_DELAY_S must be 0 or greater")
    if s.rate_limit_per_s < 0:
        raise ConfigError("AETHERA_RATE_LIMIT_PER_S is invalid: must be 0 (off) or greater")
    # production never runs open by accident: auth is on unless the operator says off in so many words
    if s.environment == "production" and s.auth != "off" and not s.api_keys_file:
        raise ConfigError(
            "AETHERA_API_KEYS_FILE is required when AETHERA_ENV=production "
            "(create keys with `aethera keys create --tenant NAME --file FILE`)"
        )
    if s.auth == "on" and not s.api_keys_file:
        raise ConfigError("AETHERA_API_KEYS_FILE is required when AETHERA_AUTH=on")
    from aethera.security.client_address import parse_trusted_proxies  # the one parser of the setting

    parse_trusted_proxies(s.trusted_proxies)
    if s.redis_url is not None and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL is invalid: it must start with redis://, rediss:// or unix://")
