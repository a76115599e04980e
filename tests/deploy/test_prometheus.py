"""deploy/prometheus: the alert rules pass ``promtool check rules``, their unit tests pass
``promtool test rules``, and every metric and label value they use is one /metrics exports.

promtool comes from Debian's ``prometheus`` package (.ci/run installs it). The metric names
are the ones agreed with /metrics (issue 8): a rule on a misspelt name would never fire and
promtool cannot tell, so this test checks each selector against that list.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.deploy.tools import DEPLOY, load_yaml, require_tool

RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"

# name -> {label: allowed values, or None for any value}. Histograms add _bucket/_sum/_count.
METRICS: dict[str, dict[str, set[str] | None]] = {
    "hookledger_http_requests_total": {"route": None, "method": None, "status": None},
    "hookledger_http_request_duration_seconds": {"route": None},
    "hookledger_events_received_total": {
        "source": None,
        "outcome": {"accepted", "duplicate", "rejected", "unavailable"},
    },
    "hookledger_rejections_total": {
        "source": None,
        "reason": {
            "unauthorized",
            "forbidden",
            "bad_request",
            "schema",
            "too_large",
            "unsupported_media_type",
            "unknown_source",
        },
    },
    "hookledger_events_processed_total": {
        "source": None,
        "status": {"processed", "unhandled", "retrying", "dead"},
    },
    "hookledger_processing_latency_seconds": {"source": None},
    "hookledger_queue_depth": {},
    "hookledger_events_pending": {},
    "hookledger_oldest_pending_event_age_seconds": {},
    "hookledger_dead_letters": {},
    "hookledger_dead_signals": {},
    "hookledger_gaps": {"source": None},
    "hookledger_signal_deliveries_total": {
        "target": None,
        "outcome": {"delivered", "retrying", "dead", "refused"},
    },
}
HISTOGRAMS = {"hookledger_http_request_duration_seconds", "hookledger_processing_latency_seconds"}
TARGET_LABELS = {"instance", "job"}  # added by Prometheus to every scraped series
SELECTOR = re.compile(r"(hookledger_[a-z_]+)(\{([^}]*)\})?")
MATCHER = re.compile(r'\s*([a-zA-Z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*')
# What the issue asks alerts for, by the alert that covers it.
REQUIRED = {
    "HookledgerDeadLetters": "dead letters present",
    "HookledgerEventsWaitingTooLong": "the oldest waiting event too old",
    "HookledgerServerErrors": "5xx rate",
    "HookledgerReceiptsUnavailable": "receipts answered 503",
    "HookledgerNotReady": "readiness down",
    "HookledgerSignalDeliveriesFailing": "signal deliveries failing",
}


def _rules() -> list[dict[str, Any]]:
    document = load_yaml(RULES)
    return [rule for group in document["groups"] for rule in group["rules"]]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("promtool")
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=120, check=False, cwd=DEPLOY
    )


def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_test_rules() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested() -> None:
    tested = {
        case["alertname"]
        for test in load_yaml(RULE_TESTS)["tests"]
        for case in test.get("alert_rule_test", [])
    }
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts - tested == set()
    assert set(REQUIRED) <= alerts


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_alerts_use_only_exported_metrics_and_label_values(rule: dict[str, Any]) -> None:
    expr = rule["expr"]
    selectors = SELECTOR.findall(expr)
    assert selectors, "every alert reads a hookledger metric"
    for name, _braces, matchers in selectors:
        base = re.sub(r"_(bucket|sum|count)$", "", name) if name not in METRICS else name
        assert base in METRICS, f"{name} is not a metric /metrics exports"
        if base != name:
            assert base in HISTOGRAMS, f"{name}: {base} is not a histogram"
        labels = METRICS[base]
        for part in (p for p in matchers.split(",") if p.strip()):
            matcher = MATCHER.fullmatch(part)
            assert matcher, f"{name}: a matcher this test cannot read: {part!r}"
            label, op, value = matcher.groups()
            if label == "le" and base in HISTOGRAMS:
                continue
            assert label in labels or label in TARGET_LABELS, f"{name} has no label {label!r}"
            allowed = labels.get(label)
            if allowed is None or op not in {"=", "=~"}:
                continue
            for alternative in value.split("|"):
                assert alternative in allowed, f"{name}{{{label}}} is never {alternative!r}"


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_alerts_say_how_urgent_and_what_to_do(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"Hookledger[A-Z][A-Za-z]+", rule["alert"])
    assert rule["labels"]["severity"] in {"page", "ticket"}
    assert {"summary", "description"} <= set(rule["annotations"])
