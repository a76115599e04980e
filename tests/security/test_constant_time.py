"""Every comparison of a secret is constant-time.

Statically: an AST scan of app/ and workers/ fails on ``==``, ``!=``, ``in``, ``not in``,
``startswith`` and ``endswith`` where an operand's name says it holds a secret, a token, a
signature, a digest or a key, except for the few explicit, justified false positives below.

Behaviourally: every verifier decides through ``hmac.compare_digest`` (counted by patching it),
tries every active secret whether or not an earlier one matched, and cannot accept anything
once ``compare_digest`` says no, whichever way it is reached (a direct call, or real signed
requests to the inbound, accountants' and admin APIs).
"""

from __future__ import annotations

import ast
import hmac
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.domain import apikeys, signing
from app.domain.apikeys import ApiKey
from app.domain.errors import Unauthorized
from tests.support import (
    ADMIN_TOKEN,
    API_SECRETS,
    HTX_SECRET,
    HTX_SECRET_OLD,
    PP_SECRET,
    PP_SECRET_OLD,
    TRX_TOKEN,
    TRX_TOKEN_OLD,
    api_get,
    body_of,
    htx_headers,
    htx_update,
    post_htx,
    pp_headers,
)

pytestmark = pytest.mark.sqlite_only

ROOT = Path(__file__).resolve().parents[2]
_SECRET_WORDS = re.compile(
    r"secrets?|tokens?|signatures?|sigs?|digests?|hexdigest|keys?|apikeys?|passwords?|"
    r"passwd|hmac|macs?|credentials?|expected|presented",
    re.IGNORECASE,
)
# Calls that only re-encode or trim a value: ``token.encode()`` is still the token.
_TRANSFORMS = frozenset(
    {"encode", "decode", "strip", "lstrip", "rstrip", "lower", "upper", "casefold", "hex"}
    | {"removeprefix", "removesuffix"}
)
# (file, the comparison as ast.unparse writes it): why it is no secret comparison.
ALLOWED = {
    # The first 7 characters of the presented signature against the public literal prefix
    # "sha256=": timing can only tell the sender what its own header starts with.
    ("app/domain/signing.py", "presented[:7].lower() == 'sha256='"),
    # (source, idempotency key) pairs: the idempotency key is payload data, not a credential.
    ("app/ingest.py", "p.sql_key not in receipts"),
    # A SQLAlchemy column named "key" in the instance-id table, compared in SQL.
    ("app/store/models.py", "table.c.key == 'instance_id'"),
    # The ledger verifier's (account, currency) dictionary keys.
    ("app/store/verify.py", "key in last_id"),
}


def _own_name(node: ast.expr) -> str | None:
    """The name that says what an operand holds: ``x`` for ``x``, ``a.x``, ``x[i]``,
    ``x.encode()`` and ``x.strip().lower()``; the function's name for another call."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _own_name(node.value)
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _TRANSFORMS:
            return _own_name(func.value)
        return _own_name(func)
    return None


def _secretish(node: ast.expr) -> bool:
    name = _own_name(node)
    if name is None:
        return False
    words = re.split(r"_+|(?<=[a-z0-9])(?=[A-Z])", name)
    return any(_SECRET_WORDS.fullmatch(w) for w in words if w)


def secret_comparisons(source: str) -> list[tuple[int, str]]:
    """(line, code) of every non-constant-time comparison of a secret-named value."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            content = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)
            if any(isinstance(op, content) for op in node.ops) and any(
                _secretish(x) for x in (node.left, *node.comparators)
            ):
                found.append((node.lineno, ast.unparse(node)))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"startswith", "endswith"}
            and (_secretish(node.func.value) or any(_secretish(a) for a in node.args))
        ):
            found.append((node.lineno, ast.unparse(node)))
    return found


def _sources() -> Iterator[tuple[str, str]]:
    for package in ("app", "workers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def test_no_secret_is_compared_with_a_short_circuiting_operator():
    offending, used = [], set()
    for name, source in _sources():
        for line, code in secret_comparisons(source):
            if (name, code) in ALLOWED:
                used.add((name, code))
            else:
                offending.append(f"{name}:{line}: {code}")
    assert not offending, "compare secrets with hmac.compare_digest:\n" + "\n".join(offending)
    assert used == ALLOWED, f"stale allowlist entries: {ALLOWED - used}"


@pytest.mark.parametrize(
    ("code", "flagged"),
    [
        ("if signature == expected: pass", True),
        ("ok = presented_token != token", True),
        ("ok = request.headers['x-signature'] == sig", True),
        ("ok = secret.encode() == given", True),
        ("ok = api_key in keys", True),
        ("ok = hmac_sha256_hex(k, b) == header", True),
        ("ok = digest.hexdigest() == value", True),
        ("ok = header.strip().lower().startswith(signature)", True),
        ("ok = settings.admin_token == provided", True),
        ("ok = hmac.compare_digest(signature, expected)", False),
        ("ok = source.auth == 'token'", False),
        ("ok = sig.status == 'delivered'", False),
        ("ok = token is None", False),
        ("ok = len(signature) != 64", False),
    ],
)
def test_the_scan_tells_secret_comparisons_from_others(code, flagged):
    assert bool(secret_comparisons(code)) is flagged


# --- behaviour: hmac.compare_digest decides, over every secret ------------------------------


class Counter:
    """Stands in for ``hmac.compare_digest``: counts the calls, answers as told (or truly)."""

    def __init__(self, answer: bool | None = None) -> None:
        self.calls: list[tuple[bytes | str, bytes | str]] = []
        self._answer = answer
        self._real: Callable[[Any, Any], bool] = hmac.compare_digest

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls.append((a, b))
        return self._real(a, b) if self._answer is None else self._answer


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Counter]:
    def install(answer: bool | None = None) -> Counter:
        counter = Counter(answer)
        monkeypatch.setattr(hmac, "compare_digest", counter)
        return counter

    return install


BODY = body_of(htx_update(1, "filled", "1", "100", "0"))
NOW = time.time()
SECRETS = (HTX_SECRET.encode(), HTX_SECRET_OLD.encode())


def _hmac(headers: dict[str, str]) -> None:
    signing.verify_hmac_sha256(
        BODY,
        headers,
        SECRETS,
        signature_header="X-Signature",
        timestamp_header=None,
        tolerance_s=300,
        now=NOW,
    )


@pytest.mark.parametrize("signed_with", [HTX_SECRET, HTX_SECRET_OLD, "wrong"])
def test_hmac_verification_compares_with_every_secret(counted, signed_with):
    counter = counted()
    headers = htx_headers(BODY, signed_with)
    if signed_with == "wrong":
        with pytest.raises(Unauthorized):
            _hmac(headers)
    else:
        _hmac(headers)
    assert len(counter.calls) == len(SECRETS)  # every secret, even after a match
    assert {b for _, b in counter.calls} == {headers["x-signature"].encode()}


def test_hmac_verification_rests_on_compare_digest(counted):
    counted(answer=False)
    with pytest.raises(Unauthorized):
        _hmac(htx_headers(BODY))  # a correct signature, but compare_digest says no
    counted(answer=True)
    _hmac({"x-signature": "0" * 64})  # a wrong one, but compare_digest says yes


def test_standard_webhooks_verification_compares_every_signature_with_every_key(counted):
    keys = [signing.decode_webhook_secret(s) for s in (PP_SECRET, PP_SECRET_OLD)]
    headers = pp_headers(BODY, PP_SECRET_OLD)
    headers["webhook-signature"] = "v1,AAAA " + headers["webhook-signature"]
    counter = counted()
    assert signing.verify_standard_webhook(BODY, headers, keys, now=time.time()) == "msg_1"
    assert len(counter.calls) == 2 * 2
    counted(answer=False)
    with pytest.raises(Unauthorized):
        signing.verify_standard_webhook(BODY, headers, keys, now=time.time())


def test_token_verification_compares_with_every_secret(counted):
    tokens = (TRX_TOKEN.encode(), TRX_TOKEN_OLD.encode())
    counter = counted()
    signing.verify_token(TRX_TOKEN, tokens)
    assert len(counter.calls) == 2
    counted(answer=False)
    with pytest.raises(Unauthorized):
        signing.verify_token(TRX_TOKEN, tokens)


KEYS = [
    ApiKey(name=f"k{n}", key=key, secret=secret, accounts=("*",))
    for n, (key, secret) in enumerate(API_SECRETS.items())
]


@pytest.mark.parametrize("key", ["ak_finance", "ak_auditor", "ak_nobody"])
def test_api_key_authentication_compares_every_key_and_the_signature(counted, key):
    stamp = str(int(time.time() * 1000))
    secret = API_SECRETS.get(key, "x")
    headers = {
        "x-api-key": key,
        "x-api-timestamp": stamp,
        "x-api-signature": apikeys.sign(secret, stamp, "GET", "/account/v1/balances", ""),
    }
    counter = counted()

    def authenticate() -> ApiKey:
        return apikeys.authenticate(
            KEYS,
            headers,
            method="GET",
            path="/account/v1/balances",
            query="",
            now_ms=int(time.time() * 1000),
        )

    if key in API_SECRETS:
        assert authenticate().key == key
    else:
        with pytest.raises(apikeys.ApiError):
            authenticate()
    assert len(counter.calls) == len(KEYS) + 1  # every key, then the signature, always
    counted(answer=False)
    with pytest.raises(apikeys.ApiError):
        authenticate()


# --- the same through real requests ---------------------------------------------------------


def test_signed_requests_are_judged_by_compare_digest(admin_client, counted):
    counter = counted()
    assert post_htx(admin_client, htx_update(5, "filled", "1", "1", "0")).status_code == 200
    assert len(counter.calls) == 2  # htx-main has two secrets
    counter = counted()
    assert api_get(admin_client, "/account/v1/balances").status_code == 200
    assert len(counter.calls) == len(API_SECRETS) + 1
    counter = counted()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert admin_client.get("/admin/events", headers=auth).status_code == 200
    assert (ADMIN_TOKEN.encode(), ADMIN_TOKEN.encode()) in counter.calls

    counted(answer=False)  # now every comparison fails: so must every correctly signed request
    assert post_htx(admin_client, htx_update(6, "filled", "1", "1", "0")).status_code == 401
    assert api_get(admin_client, "/account/v1/balances").status_code == 401
    assert admin_client.get("/admin/events", headers=auth).status_code == 401
