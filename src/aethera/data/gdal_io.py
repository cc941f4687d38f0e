"""GDAL's network reads of catalog layers: configured from the settings, and their failures classified.

Catalog layers may live on S3 (`s3://` paths, read through GDAL's /vsis3/) or on a web server
(`https://`, /vsicurl/). rasterio and pyogrio each ship a GDAL of their own, so both get the same
process-wide configuration options (`configure_gdal`): the service's S3 endpoint, region and
credentials, path-style or virtual-hosted addressing, and GDAL's own HTTP retries and timeouts.

Why config options and not `rasterio.session.AWSSession`: the catalog's paths are /vsis3/ paths, for
which rasterio opens no session; an AWSSession would freeze the credentials it resolves (an instance
role's expire); and pyogrio's GDAL needs the same options as plain values anyway. Settings that are
unset leave GDAL's own defaults (its AWS_* environment variables, ~/.aws, an instance role).

A read that fails after GDAL's retries is classified like a storage error (`read_error`): transient
(a 5xx or throttling answer, a reset connection, a timeout) is `DatasetUnavailable`, which the worker
answers by trying the run again; permanent (404, 403, a corrupt or unreadable file) is `DatasetError`.
GDAL's text never reaches a message (it can carry a server path or an endpoint's address): only the
class of the failure does.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from aethera.errors import DatasetError, DatasetUnavailable
from aethera.settings import Settings

# GDAL's error classes (CPLE_*) of a failed S3 request that are final: the object, the bucket or the
# permission is not there, and asking again gives the same answer
_PERMANENT_CLASSES = {
    "CPLE_AWSObjectNotFoundError",
    "CPLE_AWSBucketNotFoundError",
    "CPLE_AWSAccessDeniedError",
    "CPLE_AWSInvalidCredentialsError",
    "CPLE_AWSSignatureDoesNotMatchError",
}
# S3 errors GDAL does not name (5xx, SlowDown, RequestTimeout): GDAL reports them as CPLE_AWSError with
# S3's message only, so the status is unknown; they are taken as transient (the run's attempts bound
# the retries of a rare permanent one)
_AWS_OTHER = "CPLE_AWSError"
# /vsicurl/ and /vsis3/ transport failures: "HTTP response code: 503" or "CURL error: ..."
_HTTP_CLASS = "CPLE_HttpResponseError"
_HTTP_CODE = re.compile(r"HTTP response code:\s*(\d{3})")
_TRANSIENT_STATUS = {408, 425, 429}


def gdal_options(settings: Settings) -> dict[str, str]:
    """The GDAL configuration options for reading catalog layers, from the service's settings."""
    options = {
        # GDAL retries a 429, a 5xx, a reset connection or a timeout itself, with a growing delay
        "GDAL_HTTP_MAX_RETRY": str(settings.gdal_http_max_retry),
        "GDAL_HTTP_RETRY_DELAY": f"{settings.gdal_http_retry_delay_s:g}",
        "GDAL_HTTP_TIMEOUT": str(max(1, round(settings.gdal_http_timeout_s))),
        "GDAL_HTTP_CONNECTTIMEOUT": str(max(1, round(settings.gdal_http_connect_timeout_s))),
        # opening a file must not list its whole S3 "directory" (a bucket of many objects)
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "AWS_REGION": settings.s3_region,
    }
    if settings.s3_endpoint_url:
        endpoint = urlsplit(settings.s3_endpoint_url)
        options["AWS_S3_ENDPOINT"] = endpoint.netloc + endpoint.path.rstrip("/")
        options["AWS_HTTPS"] = "NO" if endpoint.scheme == "http" else "YES"
    addressing = settings.datasets_s3_addressing
    if addressing == "auto":
        # like the storage's client: path-style on a custom endpoint (no wildcard DNS needed), GDAL's
        # default (virtual-hosted) on AWS
        addressing = "path" if settings.s3_endpoint_url else "virtual"
    options["AWS_VIRTUAL_HOSTING"] = "FALSE" if addressing == "path" else "TRUE"
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        options["AWS_ACCESS_KEY_ID"] = settings.s3_access_key_id
        options["AWS_SECRET_ACCESS_KEY"] = settings.s3_secret_access_key
    return options


# every option `gdal_options` may set: those it leaves out are cleared, so a process configured twice
# (tests, an API created again) keeps nothing of the first settings
_MANAGED = (
    "GDAL_HTTP_MAX_RETRY",
    "GDAL_HTTP_RETRY_DELAY",
    "GDAL_HTTP_TIMEOUT",
    "GDAL_HTTP_CONNECTTIMEOUT",
    "GDAL_DISABLE_READDIR_ON_OPEN",
    "AWS_REGION",
    "AWS_S3_ENDPOINT",
    "AWS_HTTPS",
    "AWS_VIRTUAL_HOSTING",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)


def configure_gdal(options: dict[str, str]) -> None:
    """Set `options` process-wide in rasterio's and pyogrio's GDAL (every thread sees them)."""
    import pyogrio
    from rasterio._env import del_gdal_config  # rasterio.env exports only get and set
    from rasterio.env import set_gdal_config

    for key in _MANAGED:
        if key in options:
            set_gdal_config(key, options[key])
        else:
            del_gdal_config(key)
    pyogrio.set_gdal_config_options({key: options.get(key) for key in _MANAGED})


def transient_reason(exc: BaseException) -> str | None:
    """Why a failed GDAL read may succeed when tried again ("HTTP 503", "connection failed or timed
    out", ...); None when the failure is permanent or not a network one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        text = str(current)
        if name in _PERMANENT_CLASSES:
            return None
        if name == _AWS_OTHER:
            return "the S3 endpoint answered with an error (server error or throttling)"
        if name == _HTTP_CLASS or "CURL error" in text or "HTTP response code" in text:
            match = _HTTP_CODE.search(text)
            if match:
                status = int(match.group(1))
                return f"HTTP {status}" if status >= 500 or status in _TRANSIENT_STATUS else None
            if "CURL error" in text:
                return "the connection failed or timed out"
            if name == _HTTP_CLASS:
                return "the HTTP request failed"
        current = current.__cause__ or current.__context__
    return None


def read_error(exc: BaseException, layer: str, permanent_detail: str, display: str) -> DatasetError:
    """The service's error for a failed read of a layer's file: `DatasetUnavailable` when the failure is
    transient, else `DatasetError(permanent_detail)`. Raise it `from None` (GDAL's text stays out)."""
    reason = transient_reason(exc)
    if reason is not None:
        return DatasetUnavailable(
            f"layer {layer!r}: {display} could not be read for now ({reason})",
            layer=layer,
        )
    return DatasetError(permanent_detail, layer=layer)
