"""Hard edges seen from a real client over a real socket: a body that stops arriving gets 408
after ``server.body_timeout_s``; every answer the app writes, redirects and 404s included, is
JSON."""

from __future__ import annotations

import socket
import time

import httpx
import orjson
import pytest

from tests.processes import web_server
from tests.support import ADMIN_TOKEN


def _with_body_timeout(env: dict[str, str], seconds: float) -> dict[str, str]:
    path = env["HOOKLEDGER_CONFIG"]
    with open(path, encoding="utf-8") as config:
        text = config.read()
    with open(path, "w", encoding="utf-8") as config:
        config.write(text.replace("[server]\n", f"[server]\nbody_timeout_s = {seconds}\n", 1))
    return env


def _stalled_request(base: str, path: str, content_type: str) -> tuple[float, bytes]:
    """Send headers promising 100 bytes and only 10 of them; return how long the answer
    took and everything the server sent before it closed the connection."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            "Content-Length: 100\r\n\r\n".encode()
            + b'{"order-i'
        )
        received = b""
        while chunk := sock.recv(65536):  # until the server closes the connection
            received += chunk
        return time.monotonic() - started, received


def _status_and_json(raw: bytes) -> tuple[int, dict[str, object], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, orjson.loads(body), head.lower()


@pytest.mark.slow
def test_a_body_that_stops_arriving_gets_408_in_json(env):
    env = {**_with_body_timeout(env, 1), "HOOKLEDGER_ADMIN_TOKEN": ADMIN_TOKEN}
    with web_server(env, workers=1) as base:
        for path, content_type in (
            ("/hooks/open", "application/json"),
            ("/hooks/htx-main", "application/json"),
            ("/console/login", "application/x-www-form-urlencoded"),
        ):
            took, raw = _stalled_request(base, path, content_type)
            status, body, head = _status_and_json(raw)
            assert status == 408, raw
            assert body["error"] == "request_timeout"
            assert "1 s" in str(body["message"])
            assert b"content-type: application/json" in head
            assert 0.9 <= took < 20
        # The server is still there for everyone else, and counted the timeouts.
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert 'reason="request_timeout"' in metrics


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("POST", "/hooks/open/", 307, "redirect"),
        ("POST", "/hooks/htx-main//", 307, "redirect"),
        ("GET", "/admin/events/", 307, "redirect"),
        ("POST", "/hooks", 404, "not_found"),
        ("POST", "/hooks/", 404, "not_found"),
        ("GET", "/hooks/open", 405, "method_not_allowed"),
        ("DELETE", "/account/v1/transactions", 405, "method_not_allowed"),
        ("GET", "/console/static/missing.css", 404, "not_found"),
    ],
)
def test_every_answer_of_the_app_is_json(client, method, path, status, error):
    response = client.request(method, path, follow_redirects=False)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == error
    assert body["message"]
    if status == 307:
        assert response.headers["location"] == path.rstrip("/")
        assert body["location"] == path.rstrip("/")


def test_a_redirected_callback_is_delivered_when_followed(client, runtime):
    from tests.support import htx_update

    body = orjson.dumps(htx_update(77, "filled", "0.01", "420", "0"))
    response = client.post(
        "/hooks/open/?x=1",
        content=body,
        headers={"content-type": "application/json"},
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
