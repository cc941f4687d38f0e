"""The key rule shared by both backends, checked on its own (no I/O)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aethera.errors import InvalidKey
from aethera.storage.keys import split_prefix, validate_key, validate_prefix

GOOD_KEYS = [
    "projects/0123456789abcdef0123456789abcdef.json",
    "runs/0123456789abcdef0123456789abcdef/layers/natura.geojson",
    "a",
    "a.b",
    "...",
    "a..b",
    ".hidden",
    "a b/c d",
    "é/日本.json",
    "x" * 255,
    "/".join(["y" * 200] * 5),
    "ab:c",
    "runs/a:b",  # a colon is fine unless it makes a drive letter
]


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_good_keys_pass_unchanged(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("../x", "'..'"),
        ("a/.", "'.'"),
        ("/a", "relative"),
        ("C:x", "drive"),
        ("a\\b", "backslash"),
        ("a\x00", "control"),
        ("", "empty"),
        ("a//b", "empty"),
        ("a/", "empty"),
        ("x" * 1025, "1024"),
        ("y" * 256, "255"),
        (".aethera-tmp.1", "reserved"),
        (7, "string"),
    ],
)
def test_bad_keys_say_why(key: object, reason: str) -> None:
    with pytest.raises(InvalidKey, match=reason):
        validate_key(key)


@pytest.mark.parametrize("prefix", ["", "runs/", "runs/3f", "runs", "a/b/"])
def test_good_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "../", "a//", "a/../", "a\\", "\x00", "C:/", "a//b/"])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(InvalidKey):
        validate_prefix(prefix)


def test_split_prefix() -> None:
    assert split_prefix("runs/3f") == ("runs", "3f")
    assert split_prefix("runs/") == ("runs", "")
    assert split_prefix("runs") == ("", "runs")
    assert split_prefix("") == ("", "")


_PIECES = st.sampled_from(["..", ".", "/", "\\", "a", "b.c", "\x00", "C:", "~", "é", " ", "\n", ""])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(_PIECES, max_size=10).map("".join)))
def test_no_accepted_key_leaves_the_root_lexically(key: str) -> None:
    """Whatever text comes in, an accepted key names a path strictly inside the root."""
    try:
        validate_key(key)
    except InvalidKey:
        return
    root = "/srv/storage-root"
    joined = os.path.normpath(os.path.join(root, *key.split("/")))
    assert joined.startswith(root + "/")
    assert joined == os.path.join(root, key)  # nothing to normalise away: the key is canonical
