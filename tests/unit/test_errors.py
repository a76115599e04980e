"""One exception tree: every error class hookledger defines descends from ``HookledgerError``,
and every refusal at the edge (a callback's, the admin API's, the console's) has its HTTP status
in the edge's one table."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import app
import workers
from app.domain.errors import HookError
from app.errors import HookledgerError
from app.routes.errors import STATUS, status_of
from app.routes.refusals import Refused


def _our_modules() -> list[str]:
    names = []
    for package in (app, workers):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            # Alembic's environment and revisions run under alembic only.
            if not info.name.endswith("__main__") and ".migrations." not in info.name:
                names.append(info.name)
    return names


def _our_errors() -> list[type[BaseException]]:
    found = []
    for name in _our_modules():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == name:
                found.append(obj)
    return found


def test_every_error_class_is_in_the_tree() -> None:
    errors = _our_errors()
    assert len(errors) >= 20
    outside = [
        f"{e.__module__}.{e.__qualname__}" for e in errors if not issubclass(e, HookledgerError)
    ]
    assert outside == []


def test_every_callback_refusal_has_its_status_at_the_edge() -> None:
    refusals = [e for e in _our_errors() if issubclass(e, HookError)]
    assert all(status_of(e) < 500 or e.__name__ == "Unavailable" for e in refusals)
    assert {status_of(e) for e in refusals} == {400, 401, 403, 404, 408, 413, 415, 422, 503}
    assert all(klass in STATUS for klass in refusals)


def test_every_admin_and_console_refusal_has_its_status_and_code() -> None:
    refusals = [e for e in _our_errors() if issubclass(e, Refused) and e is not Refused]
    assert all(klass in STATUS for klass in refusals)
    assert {status_of(e) for e in refusals} == {400, 401, 403, 404, 413, 415, 429, 503}
    # Each names its refusal in the admin API's answers, and no two alike.
    assert len({e.code for e in refusals}) == len(refusals)


def test_errors_carry_no_http_status() -> None:
    for error in _our_errors():
        assert not any(hasattr(error, name) for name in ("status", "status_code", "headers"))
        parameters = inspect.signature(error.__init__).parameters
        assert not {"status", "status_code", "headers"} & set(parameters), error
