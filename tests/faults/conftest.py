"""Fixtures of the fault tests: sample data once per session, and stacks of real processes per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faultstack import Stack


@pytest.fixture(scope="session")
def sample_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aethera.data.sample import generate_sample_data

    return Path(generate_sample_data(tmp_path_factory.mktemp("sample-data")))


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
