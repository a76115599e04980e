"""The canary plugin: captures every log line of the test session and fails the session if one
shows a canary secret or a request signature (``tests.canary`` holds the secrets, the capture
and the detector). Registered by ``pytest_plugins`` in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import canary


@pytest.fixture(scope="session", autouse=True)
def canary_watch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Capture every log line of the session; at its end, fail on any canary or signature."""
    directory = tmp_path_factory.mktemp("leak-capture")
    canary.start(directory)
    yield directory
    leaks = canary.stop()
    if leaks:
        pytest.fail(canary.report(leaks), pytrace=False)


def pytest_runtest_setup(item: pytest.Item) -> None:
    canary.reattach()  # should anything have reset the root logger's handlers


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Whatever pytest captured of stdout, stderr and logs in this process, per test phase."""
    canary.check_sections(report.nodeid, report.when, report.sections)
