"""The OpenAPI document matches the routes the application serves."""

from __future__ import annotations

import re

from jsonschema import Draft202012Validator

from api.app import create_app
from api.openapi import document

IGNORED_ENDPOINTS = {"static"}
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in IGNORED_ENDPOINTS:
            continue
        if rule.endpoint.startswith("dashboard."):  # HTML pages
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods & METHODS:
            routes.add((method, path))
    return routes


def _documented(doc) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in doc["paths"].items()
        for method in operations
    }


def test_every_route_is_documented_and_vice_versa(sqlite_rt):
    app = create_app(sqlite_rt)
    served, documented = _routes(app), _documented(document())
    assert served - documented == set(), "routes missing from api/openapi.py"
    assert documented - served == set(), "documented routes not served"


def test_document_is_served_and_schemas_are_valid(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"].startswith("3.1")
    assert "/v2/alarms" in doc["paths"]
    assert doc["paths"]["/v2/alarms"]["post"]["responses"]["201"]
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
