"""API keys: hashing, the keys file, the `keys create` command, the in-memory store."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aethera.cli import main
from aethera.errors import ConfigError, InvalidInput
from aethera.security.apikeys import (
    KeyStore,
    create_key,
    hash_key,
    normalise_scopes,
    parse_key,
    read_keys_file,
    verify_hash,
)


def test_hash_verifies_only_the_same_key() -> None:
    key = "ak_0123456789ab_" + "s" * 43
    stored = hash_key(key)
    assert stored.startswith("scrypt$16384$8$1$")
    assert key not in stored
    assert verify_hash(key, stored)
    assert not verify_hash(key[:-1] + "t", stored)
    assert not verify_hash("", stored)


def test_same_key_hashes_differently_each_time() -> None:
    key = "ak_0123456789ab_" + "s" * 43
    assert hash_key(key) != hash_key(key)  # a fresh salt each time


@pytest.mark.parametrize(
    "stored", ["", "scrypt", "bcrypt$1$2$3$AAAA$AAAA", "scrypt$x$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!$AAAA"]
)
def test_malformed_hash_never_verifies(stored: str) -> None:
    assert not verify_hash("ak_0123456789ab_" + "s" * 43, stored)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "Bearer x",
        "ak_0123456789ab",  # no secret
        "ak_0123456789ab_short",
        "ak_0123456789AB_" + "s" * 43,  # key id must be lower-case hex
        "ak_0123456789a_" + "s" * 43,
        "xx_0123456789ab_" + "s" * 43,
        "ak_0123456789ab_" + "s" * 300,  # over-long
        "ak_0123456789ab_" + "é" * 43,
    ],
)
def test_malformed_keys_are_rejected_before_hashing(key: str) -> None:
    assert parse_key(key) is None


def test_normalise_scopes() -> None:
    assert normalise_scopes(None) == ("read", "write")
    assert normalise_scopes(["read"]) == ("read",)
    assert normalise_scopes(["write"]) == ("read", "write")
    assert normalise_scopes(["admin"]) == ("admin",)  # operator routes only: no tenant data
    assert normalise_scopes(["admin", "write"]) == ("admin", "read", "write")
    with pytest.raises(InvalidInput):
        normalise_scopes(["root"])


def test_create_key_stores_only_a_hash_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "keys.json"
    key, entry = create_key(path, "acme")
    text = path.read_text()
    assert key not in text and key.split("_", 2)[2] not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    parsed = read_keys_file(path)
    assert [e.key_id for e in parsed.keys] == [entry.key_id]
    assert parsed.keys[0].tenant == "acme"
    assert parse_key(key) == entry.key_id


def test_create_key_refuses_a_bad_tenant(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        create_key(tmp_path / "k.json", "../etc")
    assert not (tmp_path / "k.json").exists()


def test_concurrent_creates_keep_every_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    with ThreadPoolExecutor(4) as pool:
        created = list(pool.map(lambda i: create_key(path, f"t{i}"), range(8)))
    stored = {e.key_id for e in read_keys_file(path).keys}
    assert stored == {entry.key_id for _, entry in created}


def test_key_store_authenticates_and_binds_tenant_and_scopes(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    rw_key, _ = create_key(path, "acme")
    ro_key, _ = create_key(path, "globex", ["read"])
    store = KeyStore(path)
    rw = store.authenticate(rw_key)
    ro = store.authenticate(ro_key)
    assert rw is not None and rw.tenant == "acme" and rw.can_write
    assert ro is not None and ro.tenant == "globex" and not ro.can_write
    assert store.authenticate(rw_key[:-2] + "zz") is None
    assert store.authenticate("ak_ffffffffffff_" + "x" * 43) is None  # unknown key id
    assert store.authenticate(rw_key) == rw  # from the cache now


def test_removing_an_entry_revokes_the_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, entry = create_key(path, "acme")
    other, _ = create_key(path, "acme")
    store = KeyStore(path)
    assert store.authenticate(key) is not None  # cached
    doc = json.loads(path.read_text())
    doc["keys"] = [k for k in doc["keys"] if k["key_id"] != entry.key_id]
    path.write_text(json.dumps(doc))
    store.reload_if_changed()
    assert store.authenticate(key) is None
    assert store.authenticate(other) is not None


def test_a_broken_edit_keeps_the_last_good_keys(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "keys.json"
    key, _ = create_key(path, "acme")
    store = KeyStore(path)
    path.write_text("{not json")
    with caplog.at_level("WARNING", logger="aethera.security"):
        store.reload_if_changed()
        store.reload_if_changed()
    assert store.authenticate(key) is not None
    warnings = [r.getMessage() for r in caplog.records if r.name == "aethera.security"]
    assert len(warnings) == 1 and "last good keys" in warnings[0] and str(tmp_path) not in warnings[0]
    with pytest.raises(ConfigError):
        KeyStore(path)  # but a server does not start on it


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "invalid"),
        ('{"version": 2, "keys": []}', "version"),
        ('{"keys": [{"key_id": "a", "tenant": "Bad Tenant", "hash": "x"}]}', "tenant"),
        ('{"keys": [{"key_id": "a", "tenant": "t", "hash": "x", "scopes": ["root"]}]}', "scope"),
        (
            '{"keys": [{"key_id": "a", "tenant": "t", "hash": "x"}, {"key_id": "a", "tenant": "u", "hash": "y"}]}',
            "twice",
        ),
    ],
)
def test_malformed_keys_file_is_a_config_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_keys_file(path)


def test_missing_keys_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        KeyStore(tmp_path / "absent.json")


def test_cli_keys_create_prints_the_key_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    assert main(["keys", "create", "--tenant", "acme", "--scope", "read", "--file", str(path)]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert parse_key(key) is not None
    assert key not in err and "not shown again" in err
    principal = KeyStore(path).authenticate(key)
    assert principal is not None and principal.tenant == "acme" and principal.scopes == ("read",)


def test_cli_keys_create_uses_the_setting_and_reports_errors(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    env = {**os.environ, "AETHERA_API_KEYS_FILE": str(path)}
    done = subprocess.run(
        [sys.executable, "-m", "aethera.cli", "keys", "create", "--tenant", "acme"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert KeyStore(path).authenticate(done.stdout.strip()) is not None
    env.pop("AETHERA_API_KEYS_FILE")
    done = subprocess.run(
        [sys.executable, "-m", "aethera.cli", "keys", "create", "--tenant", "acme"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "AETHERA_API_KEYS_FILE" in done.stderr and done.stdout == ""
