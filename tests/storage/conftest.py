"""Fixtures of the storage tests: each backend on a fresh root (a tmp dir, or a new bucket on the
session's moto S3 server), and a raw S3 client to look behind the adapter's back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aioboto3
import pytest
from botocore.config import Config

from aethera.storage.base import Storage
from aethera.storage.local import LocalStorage
from aethera.storage.s3 import MIN_PART_BYTES, S3Storage

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@pytest.fixture
async def s3_admin(s3_endpoint: str) -> AsyncIterator[Any]:
    """A plain aioboto3 client on the test endpoint, for set-up and for checking what S3 holds."""
    session = aioboto3.Session(**CREDENTIALS)
    config = Config(s3={"addressing_style": "path"})
    async with session.client("s3", endpoint_url=s3_endpoint, config=config) as client:
        yield client


async def empty_and_drop_bucket(client: Any, bucket: str) -> None:
    uploads = await client.list_multipart_uploads(Bucket=bucket)
    for upload in uploads.get("Uploads", []):
        await client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            await client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    await client.delete_bucket(Bucket=bucket)


@pytest.fixture
async def bucket(s3_admin: Any) -> AsyncIterator[str]:
    """A new, empty bucket for one test, emptied and removed afterwards."""
    name = f"t-{uuid.uuid4().hex[:20]}"
    await s3_admin.create_bucket(Bucket=name)
    yield name
    await empty_and_drop_bucket(s3_admin, name)


def make_s3(endpoint: str, bucket: str, **options: Any) -> S3Storage:
    # parts at S3's 5 MiB minimum so the 12 MiB test object goes up as three parts
    options.setdefault("part_size", MIN_PART_BYTES)
    return S3Storage(
        bucket=bucket,
        endpoint_url=endpoint,
        access_key_id="testing",
        secret_access_key="testing",
        region="us-east-1",
        **options,
    )


@pytest.fixture
def s3_factory(s3_endpoint: str) -> Callable[..., S3Storage]:
    """`make_s3` bound to the session's endpoint, for tests that need their own options."""
    return lambda bucket, **options: make_s3(s3_endpoint, bucket, **options)


@pytest.fixture
async def local_storage(tmp_path: Path) -> AsyncIterator[LocalStorage]:
    storage = await LocalStorage(tmp_path / "root").open()
    yield storage
    await storage.close()


@pytest.fixture
async def s3_storage(s3_endpoint: str, bucket: str) -> AsyncIterator[S3Storage]:
    storage = await make_s3(s3_endpoint, bucket).open()
    yield storage
    await storage.close()


@pytest.fixture(params=["local", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path, s3_endpoint: str) -> AsyncIterator[Storage]:
    """Each backend in turn, on a fresh, empty root (a tmp dir, or a new bucket)."""
    if request.param == "local":
        local = await LocalStorage(tmp_path / "root").open()
        yield local
        await local.close()
        return
    name = f"t-{uuid.uuid4().hex[:20]}"
    session = aioboto3.Session(**CREDENTIALS)
    config = Config(s3={"addressing_style": "path"})
    async with session.client("s3", endpoint_url=s3_endpoint, config=config) as admin:
        await admin.create_bucket(Bucket=name)
        s3 = await make_s3(s3_endpoint, name).open()
        yield s3
        await s3.close()
        await empty_and_drop_bucket(admin, name)


@pytest.fixture
def backend(storage: Storage) -> str:
    return "local" if isinstance(storage, LocalStorage) else "s3"
