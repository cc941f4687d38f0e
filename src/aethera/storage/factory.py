"""Open the storage backend the settings choose; the caller must `await storage.close()`."""

from __future__ import annotations

from aethera.errors import ConfigError, StorageUnavailable
from aethera.settings import Settings
from aethera.storage.base import Storage
from aethera.storage.local import LocalStorage
from aethera.storage.s3 import S3Storage


async def open_storage(settings: Settings) -> Storage:
    """A ready backend: the local root exists and is writable, or the S3 client is open and the
    bucket answers. Misconfiguration raises `ConfigError` naming the variable (and the bucket);
    an unreachable endpoint raises `StorageUnavailable`."""
    if settings.storage_backend == "local":
        local = LocalStorage(settings.storage_base_path)
        try:
            return await local.open()
        except StorageUnavailable as exc:
            await local.close()
            # start-up message for the operator: the variable and the reason, as settings.py does
            raise ConfigError(f"STORAGE_BASE_PATH={settings.storage_base_path!r} is unusable: {exc.detail}") from None
    if settings.storage_backend == "s3":
        s3 = S3Storage.from_settings(settings)
        await s3.open()
        try:
            exists = await s3.bucket_exists()
        except BaseException:
            await s3.close()
            raise
        if not exists:
            await s3.close()
            raise ConfigError(f"S3_BUCKET={settings.s3_bucket!r}: no such bucket at the configured endpoint")
        return s3
    raise ConfigError(f"STORAGE_BACKEND={settings.storage_backend!r} is invalid: use local or s3")
