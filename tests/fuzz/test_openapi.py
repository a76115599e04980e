"""The shipped OpenAPI document (``app/openapi.json``): valid OpenAPI 3.1, served as is at
``/openapi.json``, and in step with the app: every route documented, every documented operation
routed, every status the inbound edge can answer documented with its error body."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import schemathesis
from starlette.routing import Route
from starlette.testclient import TestClient

from app.domain import apikeys
from app.domain.errors import HookError
from app.main import create_app
from app.routes.errors import status_of
from app.settings import Settings

DOCUMENT: dict[str, Any] = json.loads(
    resources.files("app").joinpath("openapi.json").read_text(encoding="utf-8")
)
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def _documented() -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }


def _routed(settings: Settings) -> set[tuple[str, str]]:
    routes = [r for r in create_app(settings).routes if isinstance(r, Route)]
    # Starlette adds HEAD to every GET route by itself; the document lists GET.
    return {(r.path, m) for r in routes for m in (r.methods or set()) if m != "HEAD"}


def test_every_route_is_documented_and_every_documented_operation_is_routed(
    settings: Settings,
) -> None:
    routed, documented = _routed(settings), _documented()
    assert routed - documented == set(), "routes missing from app/openapi.json"
    assert documented - routed == set(), "documented operations the app does not route"
    assert ("/openapi.json", "GET") in routed


def test_the_document_is_valid_openapi_and_every_reference_resolves() -> None:
    assert DOCUMENT["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(DOCUMENT).validate()

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(DOCUMENT):
        assert ref.startswith("#/"), ref
        node: Any = DOCUMENT
        for part in ref[2:].split("/"):
            assert part in node, f"unresolved {ref}"
            node = node[part]


def test_the_app_serves_the_shipped_document(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == resources.files("app").joinpath("openapi.json").read_bytes()
    assert client.head("/openapi.json").status_code == 200


def _statuses(path: str, method: str) -> set[int]:
    return {int(s) for s in DOCUMENT["paths"][path][method]["responses"]}


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def test_every_rejection_of_a_callback_is_documented() -> None:
    statuses = {status_of(cls) for cls in _subclasses(HookError)}
    assert statuses == {400, 401, 403, 404, 408, 413, 415, 422, 503}
    for path in ("/hooks/{source}", "/hooks/{source}/{token}"):
        assert statuses | {200} == _statuses(path, "post"), path


def test_the_accountants_api_documents_its_error_envelope_and_codes() -> None:
    envelope = DOCUMENT["components"]["schemas"]["ApiError"]
    assert set(envelope["required"]) == {"code", "message", "details"}
    codes = [v for k, v in vars(apikeys).items() if k.isupper() and isinstance(v, int)]
    described = envelope["properties"]["code"]["description"]
    for code in codes:
        if code != apikeys.TOLERANCE_MS:
            assert str(code) in described, code
    for path, item in DOCUMENT["paths"].items():
        if path.startswith("/account/v1/"):
            assert {200, 400, 401, 403, 503} <= _statuses(path, "get"), path
            for status, response in item["get"]["responses"].items():
                if status != "200":
                    name = response["$ref"].rsplit("/", 1)[-1] if "$ref" in response else None
                    target = DOCUMENT["components"]["responses"][name] if name else response
                    schema = target["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ApiError"}, (path, status)


def test_admin_operations_require_the_bearer_token_and_document_401() -> None:
    assert DOCUMENT["components"]["securitySchemes"]["adminBearer"]["scheme"] == "bearer"
    for path, item in DOCUMENT["paths"].items():
        if path.startswith("/admin/"):
            for method, operation in item.items():
                assert operation["security"] == [{"adminBearer": []}], (path, method)
                assert 401 in _statuses(path, method), (path, method)


def test_every_undocumented_method_of_a_documented_path_is_405_with_allow(
    client: TestClient,
) -> None:
    for path, item in DOCUMENT["paths"].items():
        documented = {m.upper() for m in item if m in METHODS}
        allowed = documented | ({"HEAD"} if "GET" in documented else set())
        url = path.replace("{", "").replace("}", "")  # any value fits a path parameter
        for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - documented):
            response = client.request(method, url)
            assert response.status_code == 405, (method, path)
            assert response.json()["error"] == "method_not_allowed"
            assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
