"""GDAL's configuration options for catalog layers, from the service's settings."""

from __future__ import annotations

import pytest

from aethera.data.gdal_io import gdal_options
from aethera.errors import ConfigError
from aethera.settings import Settings, load_settings


def test_a_custom_endpoint_gives_its_host_scheme_path_style_and_the_service_credentials() -> None:
    options = gdal_options(
        Settings(
            s3_endpoint_url="http://minio.internal:9000",
            s3_region="eu-central-1",
            s3_access_key_id="key",
            s3_secret_access_key="secret",
            gdal_http_max_retry=6,
            gdal_http_retry_delay_s=0.5,
            gdal_http_timeout_s=20,
        )
    )
    assert options["AWS_S3_ENDPOINT"] == "minio.internal:9000" and options["AWS_HTTPS"] == "NO"
    assert options["AWS_VIRTUAL_HOSTING"] == "FALSE" and options["AWS_REGION"] == "eu-central-1"
    assert options["AWS_ACCESS_KEY_ID"] == "key" and options["AWS_SECRET_ACCESS_KEY"] == "secret"
    assert options["GDAL_HTTP_MAX_RETRY"] == "6" and options["GDAL_HTTP_RETRY_DELAY"] == "0.5"
    assert options["GDAL_HTTP_TIMEOUT"] == "20" and options["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert gdal_options(Settings(s3_endpoint_url="https://s3.example.org"))["AWS_HTTPS"] == "YES"


def test_on_aws_gdal_keeps_virtual_hosting_and_its_own_credential_chain() -> None:
    options = gdal_options(Settings())
    assert "AWS_S3_ENDPOINT" not in options and options["AWS_VIRTUAL_HOSTING"] == "TRUE"
    assert "AWS_ACCESS_KEY_ID" not in options and "AWS_SECRET_ACCESS_KEY" not in options
    forced = gdal_options(Settings(s3_endpoint_url="http://127.0.0.1:9000", datasets_s3_addressing="virtual"))
    assert forced["AWS_VIRTUAL_HOSTING"] == "TRUE"


def test_gdal_settings_are_validated() -> None:
    assert load_settings({"AETHERA_GDAL_HTTP_MAX_RETRY": "0"}).gdal_http_max_retry == 0
    for env in (
        {"AETHERA_GDAL_HTTP_MAX_RETRY": "-1"},
        {"AETHERA_GDAL_HTTP_TIMEOUT_S": "0"},
        {"AETHERA_DATASETS_S3_ADDRESSING": "sideways"},
    ):
        with pytest.raises(ConfigError):
            load_settings(env)
