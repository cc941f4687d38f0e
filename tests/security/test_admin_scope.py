"""The `admin` scope: only an admin key reads `/metrics` (global figures, worker hosts); tenant keys get 403."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aethera.cli import main
from aethera.security.apikeys import KeyStore, create_key, read_keys_file


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_metrics_answer_admin_keys_only(make_service: Any, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    read_write, _ = create_key(keys_file, "acme")
    read_only, _ = create_key(keys_file, "acme", ["read"])
    admin, _ = create_key(keys_file, "ops", ["admin"])
    svc = await make_service(AETHERA_API_KEYS_FILE=str(keys_file), AETHERA_RATE_LIMIT_PER_S="0")

    resp = await svc.client.get("/metrics", headers=bearer(admin))
    assert resp.status == 200
    assert "aethera_http_requests_total" in await resp.text()
    for key in (read_write, read_only):
        resp = await svc.client.get("/metrics", headers=bearer(key))
        assert resp.status == 403
        body = await resp.json()
        assert set(body) == {"detail", "code"} and body["code"] == "forbidden" and "admin" in body["detail"]
    resp = await svc.client.get("/metrics")
    assert resp.status == 401


async def test_an_admin_only_key_reads_no_tenant_data(make_service: Any, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    admin, _ = create_key(keys_file, "ops", ["admin"])
    svc = await make_service(AETHERA_API_KEYS_FILE=str(keys_file), AETHERA_RATE_LIMIT_PER_S="0")
    for method, path in (("GET", "/projects"), ("GET", "/runs"), ("POST", "/projects")):
        resp = await svc.client.request(method, path, headers=bearer(admin), json={"name": "x", "country": "DEU"})
        assert resp.status == 403, (method, path)
        assert (await resp.json())["code"] == "forbidden"


async def test_metrics_stay_open_with_auth_off(make_service: Any) -> None:
    svc = await make_service()  # development without a keys file: authentication off
    assert (await svc.client.get("/metrics")).status == 200


def test_cli_creates_an_admin_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    assert main(["keys", "create", "--tenant", "ops", "--scope", "admin", "--file", str(path)]) == 0
    key = capsys.readouterr().out.strip()
    assert read_keys_file(path).keys[0].scopes == ("admin",)
    principal = KeyStore(path).authenticate(key)
    assert principal is not None and principal.scopes == ("admin",) and not principal.has("read")
