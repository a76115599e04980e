"""/metrics (Prometheus text, every process of a host together), request ids in logs and
answers."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlmodel import Session

from app.store.models import InboundEvent
from tests.processes import free_port, spawn, stop, wait_until, web_server
from tests.support import body_of, htx_headers, htx_update, post_htx, run_jobs


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_receipts_rejections_and_requests(client, runtime):
    before = client.get("/metrics").text
    for order in (1, 2):
        assert post_htx(client, htx_update(order, "filled", "1", "10", "0")).status_code == 200
    post_htx(client, htx_update(1, "filled", "1", "10", "0"))  # a duplicate
    post_htx(client, htx_update(3, "filled", "1", "10", "0"), secret="wrong")  # 401
    client.post(
        "/hooks/htx-main", content=b'{"order-id": 1}', headers=htx_headers(b'{"order-id": 1}')
    )
    client.post("/hooks/nope", content=b"{}")  # 404: counted under one label, not the path
    console = client.get("/console/login").status_code  # a route under a Mount
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")

    def delta(name: str, **labels: str) -> float:
        return value(after.text, name, **labels) - value(before, name, **labels)

    received = "hookledger_events_received_total"
    assert delta(received, source="htx-main", outcome="accepted") == 2
    assert delta(received, source="htx-main", outcome="duplicate") == 1
    assert delta(received, source="htx-main", outcome="rejected") == 2
    assert delta(received, source="_unknown", outcome="rejected") == 1
    rejections = "hookledger_rejections_total"
    assert delta(rejections, source="htx-main", reason="unauthorized") == 1
    assert delta(rejections, source="htx-main", reason="schema") == 1
    assert delta(rejections, source="_unknown", reason="unknown_source") == 1
    requests = "hookledger_http_requests_total"
    assert delta(requests, route="/hooks/{source}", method="POST", status="200") == 3
    assert delta(requests, route="/hooks/{source}", method="POST", status="404") == 1
    assert delta(requests, route="/metrics", method="GET", status="200") == 1
    assert delta(requests, route="/console/login", method="GET", status=str(console)) == 1
    assert "/hooks/nope" not in after.text  # label sets stay bounded
    assert delta("hookledger_http_request_duration_seconds_count", route="/hooks/{source}") == 6


def test_state_gauges_are_read_from_sql_and_redis_at_scrape_time(client, runtime):
    ids = [
        post_htx(client, htx_update(n, "filled", "1", "10", "0")).json()["event_id"]
        for n in range(3)
    ]
    text = client.get("/metrics").text
    assert value(text, "hookledger_events_pending") == 3
    assert value(text, "hookledger_queue_depth") >= 1  # the batch job(s) not yet run
    assert value(text, "hookledger_oldest_pending_event_age_seconds") > 0
    assert value(text, "hookledger_state_up", store="database") == 1
    assert value(text, "hookledger_state_up", store="redis") == 1
    with Session(runtime.engine) as session, session.begin():
        session.exec(update(InboundEvent).where(InboundEvent.id == ids[0]).values(status="dead"))
    before = client.get("/metrics").text
    run_jobs(runtime)
    text = client.get("/metrics").text
    assert value(before, "hookledger_dead_letters") == 1
    assert value(text, "hookledger_events_pending") == 0
    assert value(text, "hookledger_oldest_pending_event_age_seconds") == 0
    assert value(text, "hookledger_queue_depth") == 0
    processed = "hookledger_events_processed_total"
    assert value(text, processed, source="htx-main", status="processed") >= 2
    assert value(text, "hookledger_processing_latency_seconds_count", source="htx-main") >= 2


def test_a_request_id_is_answered_and_bound_to_the_logs(client, runtime, caplog):
    given = client.get("/healthz", headers={"x-request-id": "lb-req-42"})
    assert given.headers["x-request-id"] == "lb-req-42"
    made = client.get("/healthz", headers={"x-request-id": "bad id\twith junk"})
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])
    with caplog.at_level("INFO"):
        response = post_htx(client, htx_update(9, "filled", "1", "10", "0"))
    request_id = response.headers["x-request-id"]
    lines = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    received = [m for m in lines if m.get("event") == "hook.received"]
    assert received and received[0]["request_id"] == request_id


@pytest.mark.slow
@pytest.mark.timeout(300)  # its waits: web start, both processes, worker, drain, exporter
def test_metrics_of_every_web_and_worker_process_are_reported_together(env, runtime, tmp_path):
    """Two uvicorn processes and a worker process write their own files; any scrape sums them."""
    metrics = tmp_path / "metrics"

    def writers() -> set[str]:
        """The processes that wrote metric files (a file name ends in ``_<pid>.db``)."""
        return {p.name.split("_")[-1] for p in metrics.glob("*.db")}

    with web_server(env, workers=2) as base, httpx.Client(base_url=base, timeout=10) as http:
        # Keep-alive off, so connections spread over both uvicorn processes. /readyz answered
        # from one of them; the other may still be importing on a busy machine and take none of
        # the first requests, so send until both have counted some (or give up after 60 s).
        sent = 0
        deadline = time.monotonic() + 60
        while sent < 40 or (len(writers()) < 2 and time.monotonic() < deadline):
            body = body_of(htx_update(100 + sent, "filled", "1", "10", "0"))
            answer = http.post(
                "/hooks/htx-main",
                content=body,
                headers={**htx_headers(body), "connection": "close"},
            )
            assert answer.status_code == 200
            sent += 1
            if sent >= 40 and len(writers()) < 2:
                time.sleep(0.05)
        web_writers = writers()
        assert len(web_writers) == 2, web_writers  # both uvicorn processes took requests
        worker = subprocess.run(
            [sys.executable, "-m", "app.cli", "worker", "--burst"],
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert worker.returncode == 0, worker.stderr[-2000:]
        # Its log lines (ours and RQ's own) carry the job's id.
        job_lines = [line for line in worker.stderr.decode().splitlines() if '"job_id"' in line]
        assert any('"event": "event.processed"' in line for line in job_lines)
        assert any("Job OK" in line for line in job_lines)

        def scraped() -> str:
            return http.get("/metrics", headers={"connection": "close"}).text

        wait_until(lambda: value(scraped(), "hookledger_events_pending") == 0, 30, "the drain")
        assert len(writers() - web_writers) >= 1, writers()  # and the worker wrote its own
        received = "hookledger_events_received_total"
        processed = "hookledger_events_processed_total"
        for _ in range(4):  # whichever process answers, the totals are the host's
            text = scraped()
            assert value(text, received, source="htx-main", outcome="accepted") == sent
            assert value(text, processed, source="htx-main", status="processed") == sent
    # A host without a web process serves the same files with `hookledger metrics`.
    port = free_port()
    exporter = spawn(["metrics", "--host", "127.0.0.1", "--port", str(port)], env)
    try:

        def exported() -> str | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
            except httpx.HTTPError:
                return None

        wait_until(lambda: exported() is not None, 30, "hookledger metrics")
        text = exported() or ""
        assert value(text, processed, source="htx-main", status="processed") == sent
        assert value(text, received, source="htx-main", outcome="accepted") == sent
    finally:
        stop(exporter)
    assert exporter.returncode == 0  # SIGTERM is a clean stop
