"""API keys: the operator's keys file, creating keys, and checking a presented key.

A key looks like `ak_<key id>_<secret>`. The key id (12 hex characters) is a public label: it picks
the one file entry to check, appears in logs and names the key's rate-limit bucket. The file stores
only a salted scrypt hash of the whole key, never the key, so a leaked keys file lets nobody in.
The secret has 256 random bits; scrypt on top makes even a stolen hash useless to brute force.

The file (JSON, mode 0600, written atomically):

    {"version": 1, "keys": [{"key_id": "3f2a9c0b1d4e", "tenant": "acme", "scopes": ["read", "write"],
      "hash": "scrypt$16384$8$1$<salt b64>$<hash b64>", "created_at": "2025-01-01T00:00:00+00:00"}]}

Scopes: `read` (GET and HEAD of the tenant's data), `write` (everything else; implies `read`) and
`admin` (operator routes such as `/metrics`; implies nothing else, so a scrape key reads no tenant data).

Removing an entry revokes the key; running servers notice within `RELOAD_INTERVAL_S`. A reload keeps
the keys already verified whose entry (hash, tenant, scopes) did not change, so an unrelated edit costs
no scrypt and cannot expose known-good keys to the bad-key throttle.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from aethera.errors import ConfigError, InvalidInput
from aethera.security.validation import check_tenant

KEY_PREFIX = "ak"
SCOPES: frozenset[str] = frozenset({"read", "write", "admin"})
DEFAULT_SCOPES: tuple[str, ...] = ("read", "write")
RELOAD_INTERVAL_S = 5.0
_KEY_ID_HEX = 12
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_LEN = 2**14, 8, 1, 32
_SALT_BYTES = 16
_CACHE_ENTRIES = 1024
_TIMING_WEIGHT = 0.2  # weight of the newest scrypt duration in the running average
_FILE_VERSION = 1

log = logging.getLogger("aethera.security")


class ApiKeyEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One key as the file stores it: no key, only its hash."""

    key_id: str
    tenant: str
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    hash: str
    created_at: str = ""


class KeysFile(msgspec.Struct, kw_only=True):
    version: int = _FILE_VERSION
    keys: list[ApiKeyEntry] = msgspec.field(default_factory=list)


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who a request acts for: a tenant and what it may do."""

    tenant: str
    scopes: tuple[str, ...]
    key_id: str | None = None  # None when auth is off

    @property
    def can_write(self) -> bool:
        return "write" in self.scopes

    def has(self, scope: str) -> bool:
        return scope in self.scopes


def hash_key(key: str, *, salt: bytes | None = None) -> str:
    """The stored form of `key`: `scrypt$n$r$p$salt$hash` (salt and hash in base64)."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = _scrypt(key.encode(), salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_LEN)
    return "$".join(("scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)))


def verify_hash(key: str, stored: str) -> bool:
    """True when `key` hashes to `stored`; the comparison takes the same time wherever they differ."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = _unb64(salt_b64), _unb64(hash_b64)
        digest = _scrypt(key.encode(), salt, int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def parse_key(key: str) -> str | None:
    """The key id of a well-formed key, else None (nothing is hashed for a malformed key)."""
    if not isinstance(key, str) or len(key) > 256 or not key.isascii():
        return None
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    key_id, secret = parts[1], parts[2]
    if len(key_id) != _KEY_ID_HEX or any(c not in "0123456789abcdef" for c in key_id):
        return None
    if len(secret) < 32:
        return None
    return key_id


def normalise_scopes(scopes: Iterable[str] | None) -> tuple[str, ...]:
    """Scopes in a fixed order; none given means read and write; `write` implies `read`; `admin` nothing."""
    wanted = set(scopes or DEFAULT_SCOPES)
    unknown = wanted - SCOPES
    if unknown:
        raise InvalidInput(f"unknown scope {sorted(unknown)[0]!r}; use read, write or admin")
    if "write" in wanted:
        wanted.add("read")
    return tuple(sorted(wanted))


def read_keys_file(path: str | Path) -> KeysFile:
    """Parse the keys file; a missing or malformed file is a ConfigError naming it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"API keys file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"API keys file cannot be read: {path} ({exc.strerror})") from None
    try:
        parsed = msgspec.json.decode(raw, type=KeysFile)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"API keys file {path} is invalid: {exc}") from None
    if parsed.version != _FILE_VERSION:
        raise ConfigError(f"API keys file {path} has version {parsed.version}; this service reads {_FILE_VERSION}")
    seen: set[str] = set()
    for entry in parsed.keys:
        if entry.key_id in seen:
            raise ConfigError(f"API keys file {path} lists key id {entry.key_id} twice")
        seen.add(entry.key_id)
        try:
            check_tenant(entry.tenant)
            normalise_scopes(entry.scopes)
        except InvalidInput as exc:
            raise ConfigError(f"API keys file {path}, key {entry.key_id}: {exc.detail}") from None
    return parsed


def create_key(path: str | Path, tenant: str, scopes: Iterable[str] | None = None) -> tuple[str, ApiKeyEntry]:
    """Add a new key for `tenant` to the file (created when missing); returns the key, shown only now."""
    tenant = check_tenant(tenant)
    scope_tuple = normalise_scopes(scopes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a lock file serialises two `keys create` runs: each would otherwise drop the other's new entry
    lock_fd = os.open(f"{path}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        current = read_keys_file(path) if path.exists() else KeysFile()
        taken = {e.key_id for e in current.keys}
        key_id = secrets.token_hex(_KEY_ID_HEX // 2)
        while key_id in taken:
            key_id = secrets.token_hex(_KEY_ID_HEX // 2)
        key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        entry = ApiKeyEntry(
            key_id=key_id,
            tenant=tenant,
            scopes=scope_tuple,
            hash=hash_key(key),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        current.keys.append(entry)
        _write_private(path, msgspec.json.format(msgspec.json.encode(current), indent=2) + b"\n")
    finally:
        os.close(lock_fd)
    return key, entry


class KeyStore:
    """The keys file in memory, reloaded when it changes, with verified keys cached.

    `authenticate` is CPU-bound (scrypt, about 50 ms) the first time a key is seen: call it in a
    thread. Later calls hit the cache, keyed by a SHA-256 of the presented key so the cache never
    holds a key itself. A reload drops from the cache every key whose entry was removed or changed,
    which is how revocation takes effect, and keeps the others.

    `scrypt_runs` counts the hashes computed for presented keys (what a flood of wrong keys costs);
    `typical_verify_s` is their running average, measured once at start, for answering an unknown
    key id after about as long as a wrong secret takes.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, ApiKeyEntry] = {}
        self._cache: OrderedDict[bytes, Principal] = OrderedDict()
        self._signature: tuple[int, int, int] | None = None
        self._bad_signature: tuple[int, int, int] | None = None  # the malformed version last logged
        self._checked_at = 0.0
        self.scrypt_runs = 0
        self.reload()
        started = time.perf_counter()
        hash_key(secrets.token_urlsafe(32))
        self.typical_verify_s = time.perf_counter() - started

    def __len__(self) -> int:
        return len(self._entries)

    def knows(self, key_id: str) -> bool:
        """Whether the file lists `key_id` (no hashing, safe on the event loop)."""
        with self._lock:
            return key_id in self._entries

    def reload(self) -> None:
        """Read the file now (raises ConfigError when it is missing or malformed)."""
        signature = _signature(self.path)
        parsed = read_keys_file(self.path)
        entries = {e.key_id: e for e in parsed.keys}
        with self._lock:
            for fingerprint, principal in list(self._cache.items()):
                key_id = principal.key_id or ""
                if not _same_grant(self._entries.get(key_id), entries.get(key_id)):
                    del self._cache[fingerprint]
            self._entries = entries
            self._signature = signature
            self._checked_at = time.monotonic()

    def reload_if_changed(self) -> None:
        """Reload when the file changed; a file that turned bad keeps the last good keys in force."""
        self._checked_at = time.monotonic()
        signature = _signature(self.path)
        if signature == self._signature:
            return
        try:
            self.reload()
        except ConfigError:
            # refusing every request because an operator is mid-edit would be worse; the next check retries.
            # Logged once per bad version, without the path or the parser's words (they may quote the file)
            if signature != self._bad_signature:
                self._bad_signature = signature
                log.warning("API keys file changed but cannot be read as a keys file; the last good keys stay in force")

    def due_for_reload(self) -> bool:
        return time.monotonic() - self._checked_at >= RELOAD_INTERVAL_S

    def cached(self, key: str) -> Principal | None:
        """The principal of a key this store has already verified (no hashing, safe on the event loop)."""
        fingerprint = hashlib.sha256(key.encode()).digest()
        with self._lock:
            principal = self._cache.get(fingerprint)
            if principal is not None:
                self._cache.move_to_end(fingerprint)
            return principal

    def authenticate(self, key: str) -> Principal | None:
        """The principal of a valid key, else None."""
        key_id = parse_key(key)
        if key_id is None:
            return None
        cached = self.cached(key)
        if cached is not None:
            return cached
        fingerprint = hashlib.sha256(key.encode()).digest()
        with self._lock:
            entry = self._entries.get(key_id)
        if entry is None:  # an unknown key id costs no scrypt
            return None
        started = time.perf_counter()
        valid = verify_hash(key, entry.hash)
        elapsed_s = time.perf_counter() - started
        with self._lock:
            self.scrypt_runs += 1
            self.typical_verify_s += _TIMING_WEIGHT * (elapsed_s - self.typical_verify_s)
        if not valid:
            return None
        principal = Principal(tenant=entry.tenant, scopes=normalise_scopes(entry.scopes), key_id=entry.key_id)
        with self._lock:
            if _same_grant(self._entries.get(key_id), entry):  # not revoked or changed by a reload meanwhile
                self._cache[fingerprint] = principal
                while len(self._cache) > _CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        return principal


def _same_grant(old: ApiKeyEntry | None, new: ApiKeyEntry | None) -> bool:
    """Whether a key verified against `old` may stay verified under `new` (created_at does not matter)."""
    if old is None or new is None:
        return False
    return (old.hash, old.tenant, normalise_scopes(old.scopes)) == (new.hash, new.tenant, normalise_scopes(new.scopes))


def _scrypt(key: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # maxmem above the 32 MiB default leaves room for n=2**14, r=8 (16 MiB) plus OpenSSL's overhead
    return hashlib.scrypt(key, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=64 * 1024 * 1024)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _signature(path: Path) -> tuple[int, int, int] | None:
    """What tells a changed file apart: the atomic rewrite gives a new inode even within one mtime tick."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ino, st.st_size


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically (temp file, fsync, rename) with mode 0600 from the first byte on."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
