"""Canary secrets: every secret the suite configures carries a marker no output may ever show.

Each secret (HMAC and Standard Webhooks secrets, URL tokens, API key secrets, the admin token,
target secrets and target URL tokens) is made by ``canary()`` or ``canary_whsec()``: the text
``CANARY``, a label and sixteen random-looking hex digits. Every signature the test helpers
compute is remembered too (``remember_signature``). While the suite runs, everything that could
be a log is copied under one session directory:

- in-process logs: a handler on the root logger, rendering each record with the app's own
  structlog formatter (structlog and the standard library both end there, see app/logconfig.py);
- anything else written to stdout/stderr in-process: the sections pytest captured per test;
- subprocesses: ``tests.processes.spawn`` tees each child's stderr into a file here, and
  ``tests.support.hookledger`` writes each CLI run's stderr and stdout here.

At the end of the session ``find_leaks`` scans it all; a single hit fails the session with the
offending line. The pytest plugin that starts and ends the capture is ``tests.canary_plugin``
(registered in tests/conftest.py); this module holds no hooks, so helpers and tests import it
freely. ``tests/security/test_canary.py`` proves the detector and the capture work.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import os
import re
import threading
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MARKER = "CANARY"
# The marker as it shows when a secret starting with it is hex- or base64-encoded.
_MARKER_HEX = MARKER.encode().hex()
_MARKER_B64 = base64.b64encode(MARKER.encode()).decode()
_HEX64 = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])")
_B64_SHA256 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}=")

# Every form of every canary (text, hex, base64, decoded key) -> the secret's label.
_FORMS: dict[str, str] = {}
# Signatures the test helpers computed (lowercase hex, or the base64 of a ``v1,`` entry).
_SIGNATURES: set[str] = set()
_capture_dir: Path | None = None
_counter = itertools.count()


def _forms(label: str, value: bytes) -> None:
    text = value.decode("latin-1")
    for form in (text, value.hex(), base64.b64encode(value).decode()):
        _FORMS[form] = label


def canary(label: str) -> str:
    """A secret for ``label``: ``CANARY-<label>-<16 hex digits>`` (URL- and TOML-safe)."""
    tail = hashlib.sha256(f"hookledger canary {label}".encode()).hexdigest()[:16]
    value = f"{MARKER}-{label}-{tail}"
    _forms(label, value.encode())
    return value


def canary_whsec(label: str) -> str:
    """A Standard Webhooks secret (``whsec_`` + base64) whose raw key bytes are a canary."""
    raw = canary(label).encode()
    encoded = base64.b64encode(raw).decode()
    _FORMS["whsec_" + encoded] = label
    return "whsec_" + encoded


def remember_signature(signature: str) -> None:
    """Remember a signature sent in a test (hex, ``sha256=`` hex, or ``v1,<base64>`` entries):
    none may ever appear in any output either."""
    for entry in signature.split():
        value = entry.partition(",")[2] if entry.startswith("v1,") else entry
        value = value.removeprefix("sha256=")
        if _HEX64.fullmatch(value):
            _SIGNATURES.add(value.lower())
        elif _B64_SHA256.fullmatch(value):
            _SIGNATURES.add(value)


@dataclass(frozen=True, slots=True)
class Leak:
    where: str
    line_no: int
    what: str
    line: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line_no}: {self.what}\n    {self.line[:600]}"


def _what(line: str, signatures: frozenset[str]) -> str | None:
    lowered = line.lower()
    # Every form of every canary holds the marker, as text, hex or base64: a cheap filter.
    if any(form.lower() in lowered for form in (MARKER, _MARKER_HEX, _MARKER_B64)):
        # The marker as written (case-sensitive: "canary" in a test's tmp_path is no secret)
        # or encoded; or any full form of a secret in any case (a lowercased secret).
        marked = MARKER in line or _MARKER_HEX in lowered or _MARKER_B64 in line
        named = sorted({label for form, label in _FORMS.items() if form.lower() in lowered})
        if marked or named:
            return f"canary secret ({', '.join(named) or 'marker'})"
    for match in _HEX64.finditer(line):
        if match.group().lower() in signatures:
            return "request signature (hex)"
    for match in _B64_SHA256.finditer(line):
        if match.group() in signatures:
            return "request signature (base64)"
    return None


def find_leaks(
    lines: Iterable[str], *, where: str, signatures: Iterable[str] | None = None
) -> list[Leak]:
    """Every line of ``lines`` that shows a canary secret, in any of its forms (text, hex,
    base64, a Standard Webhooks key decoded or encoded, or just the marker, so a truncated
    secret counts too) or a remembered signature."""
    sigs = frozenset(_SIGNATURES if signatures is None else signatures)
    leaks = []
    for number, line in enumerate(lines, 1):
        what = _what(line, sigs)
        if what:
            leaks.append(Leak(where, number, what, line.rstrip("\n")))
    return leaks


def scan(directory: Path) -> list[Leak]:
    """``find_leaks`` over every capture file under ``directory``."""
    leaks: list[Leak] = []
    for path in sorted(directory.iterdir()):
        with path.open(encoding="utf-8", errors="replace") as lines:
            leaks += find_leaks(lines, where=path.name)
    return leaks


# --- capture -----------------------------------------------------------------------------


def capture_file(name: str) -> Path | None:
    """A fresh file for output named ``name`` in this session's capture directory, or ``None``
    when no capture runs (a helper used outside the test session)."""
    if _capture_dir is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80]
    return _capture_dir / f"{next(_counter):05d}-{safe}.log"


def record_output(name: str, *texts: str | bytes | None) -> None:
    """Keep a finished process's output for the end-of-session scan."""
    path = capture_file(name)
    if path is None:
        return
    with path.open("ab") as out:
        for text in texts:
            if text:
                out.write(text.encode("utf-8", "replace") if isinstance(text, str) else text)
                out.write(b"\n")


class TeedStream:
    """A child's pipe, copied to a capture file as it arrives and kept for ``read()``.

    Reading the pipe at once also means a chatty child never blocks on a full pipe. ``read()``
    waits for the end of the stream, as reading the pipe itself would (at most ``timeout_s``)."""

    def __init__(self, pipe: IO[bytes], path: Path, *, timeout_s: float = 30) -> None:
        self._pipe = pipe
        self._data = bytearray()
        self._pos = 0
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self.closed = False
        self._thread = threading.Thread(target=self._pump, args=(path,), daemon=True)
        self._thread.start()

    def _pump(self, path: Path) -> None:
        fd = self._pipe.fileno()
        try:
            with path.open("ab") as out:
                while chunk := os.read(fd, 65536):
                    out.write(chunk)
                    out.flush()
                    with self._lock:
                        self._data += chunk
        finally:
            self._pipe.close()

    def fileno(self) -> int:
        return self._pipe.fileno()

    def read(self, size: int = -1) -> bytes:
        self._thread.join(self._timeout_s)
        with self._lock:
            end = len(self._data) if size < 0 else min(len(self._data), self._pos + size)
            chunk = bytes(self._data[self._pos : end])
            self._pos = end
        return chunk

    def close(self) -> None:
        # Let the copy finish (the child has exited); a grandchild still holding the pipe
        # keeps the copying thread alive, not the caller.
        self._thread.join(min(self._timeout_s, 5))
        self.closed = True


class _CaptureHandler(logging.Handler):
    """Every log record of this process, rendered as the app renders it, into a file."""

    def __init__(self, path: Path, formatter: logging.Formatter | None) -> None:
        super().__init__(logging.NOTSET)
        self._out = path.open("a", encoding="utf-8")
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        exc_info = record.exc_info  # the formatter may consume it
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - still keep what the record holds
            text = repr(record.__dict__)
        if exc_info and exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(*exc_info))
        self._out.write(text.rstrip("\n") + "\n")
        self._out.flush()

    def close(self) -> None:
        # logging.config.dictConfig (uvicorn.Config calls it, for the counterpart servers)
        # closes every handler yet leaves the root's attached: keep the file open for them.
        super().close()

    def finish(self) -> None:
        super().close()
        self._out.close()


_handler: _CaptureHandler | None = None
_section_leaks: list[Leak] = []


def reattach() -> None:
    """Put the capture handler back on the root logger, should anything have removed it."""
    root = logging.getLogger()
    if _handler is not None and _handler not in root.handlers:
        root.addHandler(_handler)


def start(directory: Path) -> None:
    """Capture from now on into ``directory``."""
    global _capture_dir, _handler  # noqa: PLW0603 - one capture per test session
    from app.logconfig import configure_logging

    # Configure once, now, as the app would on its first start: later calls are no-ops, so
    # nothing replaces the root handlers (and with them the capture handler) afterwards.
    configure_logging()
    # The test client's own request log (httpx2, used by starlette's TestClient) names the URL
    # a *sender* posted to, token segment included: the counterpart's log, not hookledger's.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    root = logging.getLogger()
    formatter = root.handlers[0].formatter if root.handlers else None
    _capture_dir = directory
    _handler = _CaptureHandler(directory / "in-process.log", formatter)
    reattach()


def stop() -> list[Leak]:
    """Stop capturing; return every leak found in the session."""
    global _capture_dir, _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler.finish()
    directory, _capture_dir, _handler = _capture_dir, None, None
    return [*_section_leaks, *(scan(directory) if directory else [])]


def check_sections(nodeid: str, when: str, sections: Iterable[tuple[str, str]]) -> None:
    """Scan what pytest captured in this process (stdout, stderr, logs) during phase ``when``
    of test ``nodeid``; a leak is kept for ``stop``. Nothing is scanned while no capture runs."""
    if _capture_dir is None:
        return
    for title, content in sections:
        if title.endswith(f" {when}"):  # later phases' reports repeat earlier sections
            _section_leaks.extend(find_leaks(content.splitlines(), where=f"{nodeid} {title}"))


def report(leaks: list[Leak]) -> str:
    shown = "\n".join(str(leak) for leak in leaks[:20])
    more = f"\n... and {len(leaks) - 20} more" if len(leaks) > 20 else ""
    return f"{len(leaks)} line(s) of output show a secret or a signature:\n{shown}{more}"


__all__ = [
    "MARKER",
    "Leak",
    "TeedStream",
    "canary",
    "canary_whsec",
    "capture_file",
    "check_sections",
    "find_leaks",
    "reattach",
    "record_output",
    "remember_signature",
    "report",
    "scan",
    "start",
    "stop",
]
