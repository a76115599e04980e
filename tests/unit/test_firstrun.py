"""What ``hookledger up`` keeps in ``./var/credentials.json``: only what it made itself."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from app.firstrun import CREDENTIALS_FILE, ensure_credentials
from app.settings import load_settings
from tests.support import ADMIN_TOKEN


def test_first_start_makes_both_and_the_next_keeps_them(tmp_path: Path) -> None:
    settings = load_settings({})
    first = ensure_credentials(settings, tmp_path)
    assert first.made and first.admin_token.startswith("adm_") and first.api_key
    path = tmp_path / CREDENTIALS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = ensure_credentials(settings, tmp_path)
    assert not again.made
    assert (again.admin_token, again.api_key, again.api_secret) == (
        first.admin_token,
        first.api_key,
        first.api_secret,
    )


def test_a_configured_admin_token_is_used_and_never_written(tmp_path: Path) -> None:
    settings = load_settings({"HOOKLEDGER_ADMIN_TOKEN": ADMIN_TOKEN})
    credentials = ensure_credentials(settings, tmp_path)
    assert credentials.admin_token == ADMIN_TOKEN
    kept = json.loads((tmp_path / CREDENTIALS_FILE).read_text())
    assert set(kept) == {"api_key", "api_secret"}
    assert ADMIN_TOKEN not in (tmp_path / CREDENTIALS_FILE).read_text()
