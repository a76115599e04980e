"""The canary check itself (tests/canary.py, run by the plugin tests/canary_plugin.py): the
detector finds a secret in every form it can take in a log line, the capture really sees
in-process and subprocess logs, and every secret the suite configures is a canary. Nothing
here logs a secret: the leaking lines are rendered into local buffers and handed to the
detector, never to the session's logs."""

from __future__ import annotations

import base64
import io
import logging
import logging.config
import textwrap
import uuid

import pytest
import structlog

from app.domain.signing import hmac_sha256_hex, sign_standard_webhook
from app.settings import load_settings
from tests import canary
from tests.canary import MARKER, find_leaks, remember_signature
from tests.processes import spawn, stop
from tests.support import (
    ADMIN_TOKEN,
    API_SECRETS,
    FOURPASS_SECRET,
    FOURPASS_TOKEN,
    HTX_SECRET,
    PP_SECRET,
    TEST_CONFIG,
    TRX_TOKEN,
    WEBHOOK_TARGET_SECRET,
)


def _rendered(**fields: object) -> str:
    """One log line exactly as the app renders it (structlog through the stdlib formatter that
    app/logconfig.py installs), written to a local buffer instead of the session's logs."""
    root_formatter = next(
        h.formatter
        for h in logging.getLogger().handlers
        if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
    )
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(root_formatter)
    logger = logging.getLogger(f"canary-selftest-{uuid.uuid4().hex}")
    logger.propagate = False  # never reaches the root handlers, so never the real capture
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    structlog.wrap_logger(
        logger,
        processors=[
            structlog.processors.add_log_level,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    ).info("selftest", **fields)
    return buffer.getvalue()


PP_KEY = base64.b64decode(PP_SECRET.removeprefix("whsec_"))


@pytest.mark.parametrize(
    "leaked",
    [
        pytest.param(HTX_SECRET, id="hmac-secret"),
        pytest.param(HTX_SECRET[:14], id="truncated-secret"),
        pytest.param(f"https://x.example/hooks/trx/{TRX_TOKEN}", id="token-in-a-url"),
        pytest.param(API_SECRETS["ak_finance"], id="api-key-secret"),
        pytest.param(f"Bearer {ADMIN_TOKEN}", id="admin-token"),
        pytest.param({"secret": FOURPASS_SECRET}, id="fourpass-secret-in-a-dict"),
        pytest.param(PP_SECRET, id="whsec-encoded"),
        pytest.param(PP_SECRET.removeprefix("whsec_"), id="whsec-base64-alone"),
        pytest.param(PP_KEY, id="whsec-raw-key-bytes"),
        pytest.param(PP_KEY.decode(), id="whsec-raw-key-text"),
        pytest.param(PP_KEY.hex(), id="whsec-raw-key-hex"),
        pytest.param(HTX_SECRET.encode().hex().upper(), id="secret-hex-upper"),
        pytest.param(base64.b64encode(ADMIN_TOKEN.encode()).decode(), id="secret-base64"),
    ],
)
def test_the_detector_finds_a_secret_in_a_rendered_log_line(leaked: object) -> None:
    line = _rendered(value=leaked, event_id="evt_1")
    leaks = find_leaks(line.splitlines(), where="sample")
    assert len(leaks) == 1, line
    assert leaks[0].what.startswith("canary secret")
    assert leaks[0].line_no == 1


def test_the_detector_names_the_secret_that_leaked() -> None:
    [leak] = find_leaks([_rendered(headers={"x-signature-secret": HTX_SECRET})], where="sample")
    assert "htx-current" in leak.what
    assert HTX_SECRET in leak.line
    assert "sample:1" in str(leak)


def test_the_detector_finds_remembered_signatures_in_hex_and_base64() -> None:
    body = b'{"order-id": 1}'
    hex_signature = hmac_sha256_hex(b"any key at all", body)
    webhook_signature = sign_standard_webhook(b"another key", "msg_1", 1_700_000_000, body)
    remember_signature(hex_signature)
    remember_signature(f"v1,AAAA {webhook_signature}")
    lines = [
        _rendered(signature=hex_signature),
        _rendered(signature=hex_signature.upper()),
        _rendered(header=f"sha256={hex_signature}"),
        _rendered(header=webhook_signature),
        _rendered(header=webhook_signature.removeprefix("v1,")),
    ]
    leaks = find_leaks(lines, where="sample")
    assert [leak.line_no for leak in leaks] == [1, 2, 3, 4, 5]
    assert {leak.what for leak in leaks} == {
        "request signature (hex)",
        "request signature (base64)",
    }


def test_clean_lines_are_not_leaks() -> None:
    unknown_digest = hmac_sha256_hex(b"never remembered", b"x")
    lines = [
        _rendered(event_id="evt_01a1fd9", status="accepted", source="htx-main"),
        _rendered(body_sha256=unknown_digest),  # a hex digest nobody sent as a signature
        _rendered(message="signature does not match", header="X-Signature"),
        "",
    ]
    assert find_leaks(lines, where="sample") == []


def test_the_capture_runs_as_a_registered_plugin(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("tests.canary_plugin")


def test_in_process_logs_reach_the_capture(canary_watch) -> None:
    marker = f"capture-probe-{uuid.uuid4().hex}"
    # uvicorn.Config (the tests' counterpart servers) runs dictConfig, which closes every
    # handler: the capture must keep working after it.
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    structlog.get_logger("tests.security").info("canary.probe", probe=marker)
    logging.getLogger("some.library").warning("stdlib probe %s", marker)
    captured = (canary_watch / "in-process.log").read_text()
    assert captured.count(marker) == 2


def test_subprocess_stderr_is_teed_and_still_readable(canary_watch, tmp_path) -> None:
    marker = f"spawn-probe-{uuid.uuid4().hex}"
    # ``spawn`` runs ``python -m app.cli ARGS``: an unknown verb makes argparse write its
    # usage error, with the marker in it, to stderr and exit 2.
    proc = spawn([marker], {"PATH": "/usr/bin:/bin", "HOOKLEDGER_CONFIG": str(tmp_path / "x")})
    assert proc.wait(timeout=60) == 2
    assert proc.stderr is not None
    assert marker in proc.stderr.read().decode()  # callers reading proc.stderr see it all
    stop(proc)
    teed = [p for p in canary_watch.iterdir() if f"spawn-{marker}"[:60] in p.name]
    assert len(teed) == 1
    assert marker in teed[0].read_text()


def test_a_leak_in_a_capture_file_is_reported_with_its_line(tmp_path) -> None:
    (tmp_path / "00001-spawn-worker-1.log").write_text(
        _rendered(outcome="ok") + _rendered(token=TRX_TOKEN)
    )
    [leak] = canary.scan(tmp_path)
    assert (leak.where, leak.line_no) == ("00001-spawn-worker-1.log", 2)
    assert TRX_TOKEN in canary.report([leak])


def test_every_secret_of_the_test_config_is_a_canary(tmp_path) -> None:
    path = tmp_path / "hookledger.toml"
    path.write_text(textwrap.dedent(TEST_CONFIG))
    settings = load_settings(
        {
            "HOOKLEDGER_CONFIG": str(path),
            "TEST_HTX_SECRET": HTX_SECRET,
            "TEST_FINANCE_SECRET": API_SECRETS["ak_finance"],
        }
    )
    secrets = [key for source in settings.sources.values() for key in source.secret_bytes()]
    secrets += [cfg.secret.encode() for cfg in settings.file.api_keys.values()]
    assert len(secrets) >= 10
    for secret in secrets:
        assert secret.startswith(MARKER.encode()), secret
    for other in (ADMIN_TOKEN, FOURPASS_SECRET, FOURPASS_TOKEN):
        assert other.startswith(MARKER)
    target_key = base64.b64decode(WEBHOOK_TARGET_SECRET.removeprefix("whsec_"))
    assert target_key.startswith(MARKER.encode())


def test_a_lowercased_secret_is_found_but_the_word_canary_alone_is_not() -> None:
    lowered = _rendered(value=HTX_SECRET.lower())
    path = _rendered(config="/tmp/pytest-of-ci/test_every_secret_is_a_canary0/hookledger.toml")
    assert [leak.line_no for leak in find_leaks([lowered, path], where="sample")] == [1]
