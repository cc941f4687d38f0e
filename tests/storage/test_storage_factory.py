"""open_storage: the backend the settings name, ready to use, or a clear start-up error."""

from __future__ import annotations

from pathlib import Path

import pytest

from aethera.embedded_redis import free_port
from aethera.errors import ConfigError, StorageUnavailable
from aethera.settings import load_settings
from aethera.storage.factory import open_storage
from aethera.storage.local import LocalStorage
from aethera.storage.s3 import S3Storage

SECRET = "factory-secret-DO-NOT-LEAK"


async def test_local_creates_its_root(tmp_path: Path) -> None:
    root = tmp_path / "var" / "storage"
    storage = await open_storage(load_settings({"STORAGE_BACKEND": "local", "STORAGE_BASE_PATH": str(root)}))
    try:
        assert isinstance(storage, LocalStorage)
        await storage.save("projects/p.json", b"{}")
        assert (root / "projects" / "p.json").read_bytes() == b"{}"
    finally:
        await storage.close()


async def test_local_root_that_is_a_file_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConfigError, match="STORAGE_BASE_PATH"):
        await open_storage(load_settings({"STORAGE_BASE_PATH": str(tmp_path / "file")}))


def _s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    return {
        "STORAGE_BACKEND": "s3",
        "S3_ENDPOINT_URL": endpoint,
        "S3_BUCKET": bucket,
        "S3_ACCESS_KEY_ID": "testing",
        "S3_SECRET_ACCESS_KEY": SECRET,
    }


async def test_s3_opens_a_working_client(s3_endpoint: str, bucket: str) -> None:
    storage = await open_storage(load_settings(_s3_env(s3_endpoint, bucket)))
    try:
        assert isinstance(storage, S3Storage)
        await storage.save("k", b"1")
        assert await storage.read("k") == b"1"
    finally:
        await storage.close()


async def test_s3_missing_bucket_is_a_config_error_naming_it(s3_endpoint: str) -> None:
    with pytest.raises(ConfigError, match="not-created-bucket") as info:
        await open_storage(load_settings(_s3_env(s3_endpoint, "not-created-bucket")))
    assert SECRET not in info.value.detail


async def test_s3_unreachable_endpoint_is_unavailable() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StorageUnavailable) as info:
        await open_storage(load_settings(_s3_env(endpoint, "b")))
    assert SECRET not in info.value.detail and endpoint not in info.value.detail
