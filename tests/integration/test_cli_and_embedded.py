"""The command line on real configs, and the private Redis a fresh machine falls back to."""

from __future__ import annotations

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from app.redis_embedded import resolve, start_private_server
from tests.canary import MARKER
from tests.support import hookledger
from workers.runtime import InProcessWorker


def test_check_config_accepts_a_good_config(env):
    result = hookledger(env, "check-config")
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout
    assert "source htx-main: kind=htx auth=hmac-sha256" in result.stdout
    assert MARKER not in result.stdout  # no configured secret, in any form


def test_check_config_names_the_bad_keys(tmp_path, env):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[server]\nmax_body = 10\n\n[sources.x]\nkind = "binance"\naccount_id = "1"\nauth = "none"\n'
        'allow_ips = ["10.0.0.0/8"]\n\n[sources.y]\nkind = "htx"\naccount_id = "1"\nauth = "hmac-sha256"\n'
        'secrets = ["${NOT_SET_ANYWHERE}"]\n'
    )
    result = hookledger({**env, "HOOKLEDGER_CONFIG": str(bad)}, "check-config")
    assert result.returncode == 2
    assert "sources.y.secrets[0]: environment variable NOT_SET_ANYWHERE is not set" in result.stderr

    bad.write_text(
        '[server]\nmax_body = 10\n\n[sources.x]\nkind = "binance"\naccount_id = "1"\nauth = "token"\n'
    )
    result = hookledger({**env, "HOOKLEDGER_CONFIG": str(bad)}, "check-config")
    assert result.returncode == 2
    assert "server.max_body: unknown key" in result.stderr
    assert "sources.x.kind" in result.stderr


def test_web_refuses_to_start_on_a_bad_config(tmp_path, env):
    bad = tmp_path / "bad.toml"
    bad.write_text('[sources.x]\nkind = "htx"\naccount_id = "1"\nauth = "none"\n')
    result = hookledger({**env, "HOOKLEDGER_CONFIG": str(bad)}, "web", "--port", "1")
    assert result.returncode == 2
    assert "sources.x: auth = 'none' requires allow_ips" in result.stderr


def test_sample_requests_are_signed_for_the_configured_source(env):
    result = hookledger(env, "sample", "--source", "htx-main")
    assert result.returncode == 0
    assert "X-Signature: " in result.stdout


def _double(x: int) -> int:
    return 2 * x


def test_private_redis_server_runs_rq_jobs(tmp_path):
    url, proc = start_private_server(tmp_path)
    try:
        client = Redis.from_url(url)
        assert client.ping()
        assert client.config_get("appendonly")["appendonly"] == "yes"
        queue = Queue("t", connection=client, serializer=JSONSerializer)
        job = queue.enqueue("tests.integration.test_cli_and_embedded._double", 21)
        InProcessWorker([queue], connection=client, serializer=JSONSerializer).work(
            burst=True, logging_level="WARNING"
        )
        assert job.latest_result().return_value == 42
        assert (tmp_path / "redis").is_dir()
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_resolve_prefers_the_configured_url(tmp_path):
    assert resolve("redis://example.invalid:6379/0", tmp_path) == (
        "redis://example.invalid:6379/0",
        None,
    )
