"""Fixtures of the fault tests: sample data once per session, and stacks of real processes per test."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faultstack import Stack

from aethera.embedded_redis import free_port


@pytest.fixture(scope="session")
def sample_catalog(sample_data: Path) -> Path:
    return sample_data


@pytest.fixture
def make_stack(tmp_path: Path, sample_catalog: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(**settings: str) -> Stack:
        stack = Stack(tmp_path / f"stack{len(stacks)}", sample_catalog, **settings)
        stacks.append(stack)
        stack.start_redis()
        return stack

    yield make
    for stack in stacks:
        stack.close()


@pytest.fixture
def s3_server() -> Iterator[dict[str, object]]:
    """A moto S3 server of this test's own, which the test stops and starts again on the same port."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    state: dict[str, object] = {"port": port, "url": f"http://127.0.0.1:{port}"}

    def start() -> None:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        state["server"] = server

    def stop() -> None:
        server = state.pop("server", None)
        if server is not None:
            server.stop()  # type: ignore[attr-defined]

    state["start"], state["stop"] = start, stop
    start()
    yield state
    stop()
