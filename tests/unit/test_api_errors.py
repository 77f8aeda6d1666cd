"""One domain-error table per API dialect, answered per blueprint."""

from __future__ import annotations

from typing import Any

import flask
import pytest

from alarmer.alarms import store
from alarmer.alarms.errors import RuleError
from alarmer.errors import AlarmerError
from alarmer.metrics import index as idx
from alarmer.metrics import policy
from alarmer.metrics.index import search as srch
from api import errors
from api.v1 import resources as resource_views
from api.v1 import validation as v
from tests import envelopes


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (idx.NoSuchMetric("m1"), 404),
        (idx.NoSuchArchivePolicyRule("r"), 404),
        (idx.NoSuchArchivePolicy("low"), 400),
        (idx.ArchivePolicyAlreadyExists("low"), 409),
        (idx.ArchivePolicyRuleAlreadyExists("r"), 409),
        (idx.NamedMetricAlreadyExists("cpu"), 409),
        (idx.ArchivePolicyInUse("low", "metrics"), 400),
        (idx.UnsupportedArchivePolicyChange("low", "no"), 400),
        (idx.NoArchivePolicyForMetric("cpu"), 400),
        (idx.NoSuchResourceType("vm"), 404),
        (idx.NoSuchResource("r1"), 404),
        (idx.ResourceAlreadyExists("Resource r1 already exists"), 409),
        (idx.ResourceTypeInUse("Resource type vm is in use"), 400),
        (idx.ResourceError("bad attribute"), 400),
        (srch.QueryError("bad query"), 400),
        (policy.PolicyError("Invalid value for points"), 400),
    ],
)
def test_the_v1_table(exc, status):
    answer = errors.GNOCCHI.translate(exc)
    assert answer is not None
    assert (answer.status, answer.message) == (status, str(exc))


@pytest.mark.parametrize(
    "exc",
    [
        idx.NoSuchResourceType("vm"),
        idx.NoSuchResource("r1"),
        idx.ResourceAlreadyExists("r1 exists"),
        idx.ResourceTypeInUse("vm in use"),
        idx.ResourceError("bad"),
        srch.QueryError("bad query"),
    ],
)
def test_the_v1_table_answers_as_the_resource_views_translate(exc):
    table = errors.GNOCCHI.translate(exc)
    views = resource_views.translate(exc)
    assert table is not None
    assert (table.status, table.message) == (views.status, views.message)


def test_index_errors_of_v1_views_go_through_the_table():
    answer = v.index_error(idx.NamedMetricAlreadyExists("cpu"))
    assert (answer.status, answer.message) == (
        409,
        "Named metric cpu already exists",
    )


@pytest.mark.parametrize(
    ("exc", "status", "message"),
    [
        (store.AlarmNotFound("a1"), 404, "Alarm a1 not found"),
        (
            store.InvalidMarker("m"),
            400,
            "Invalid input for field/attribute marker. Value: 'm'. No such "
            "item in this listing",
        ),
        (store.QuotaExceeded("Alarm quota exceeded"), 403, None),
        (store.ConcurrentUpdate("Alarm a1 kept changing"), 409, None),
        (RuleError("rule is bad", "rule"), 400, "rule is bad"),
        (RuleError("not yours", "alarm_actions", status=401), 401, None),
    ],
)
def test_the_v2_table(exc, status, message):
    answer = errors.AODH.translate(exc)
    assert answer is not None
    assert answer.status == status
    assert answer.message == (message or str(exc))


def test_a_dialect_knows_only_its_own_errors():
    assert errors.AODH.translate(idx.NoSuchMetric("m1")) is None
    assert errors.GNOCCHI.translate(store.AlarmNotFound("a1")) is None
    assert errors.GNOCCHI.translate(AlarmerError("x")) is None
    table: Any = errors.GNOCCHI.table
    with pytest.raises(TypeError):
        table[AlarmerError] = errors.Answer(400)


class _Unmapped(AlarmerError):
    pass


def _app() -> flask.Flask:
    app = flask.Flask("errors_test")
    errors.install(app)
    v1 = flask.Blueprint("v1_test", __name__, url_prefix="/v1")
    errors.GNOCCHI.install(v1)
    v2 = flask.Blueprint("v2_test", __name__, url_prefix="/v2")
    errors.AODH.install(v2)
    raised = {
        "metric": idx.NoSuchMetric("m1"),
        "alarm": store.AlarmNotFound("a1"),
        "rule": RuleError("not yours", "alarm_actions", status=401),
        "unmapped": _Unmapped("a bug"),
    }
    for bp in (v1, v2):

        @bp.get("/<what>")
        def fail(what: str) -> flask.Response:
            raise raised[what]

    app.register_blueprint(v1)
    app.register_blueprint(v2)
    return app


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/v1/metric", 404, "Metric m1 does not exist"),
        ("/v2/alarm", 404, "Alarm a1 not found"),
        ("/v2/rule", 401, "not yours"),
        # Another dialect's error, or one no table names, is a bug.
        ("/v1/alarm", 500, "Internal server error"),
        ("/v2/metric", 500, "Internal server error"),
        ("/v1/unmapped", 500, "Internal server error"),
    ],
)
def test_each_blueprint_answers_with_its_table(url, status, message):
    response = _app().test_client().get(url)
    assert envelopes.message(response, status) == message


@pytest.mark.parametrize(
    ("path", "gnocchi"),
    [
        ("/v1", True),
        ("/v1/metric", True),
        ("/v1x", False),
        ("/v2/alarms", False),
        ("/", False),
    ],
)
def test_the_dialect_of_an_error_follows_the_path(path, gnocchi):
    app = flask.Flask("t")
    with app.test_request_context(path):
        response = errors.error_response(409, "Archive policy a exists")
    body = response.get_json()
    if gnocchi:
        assert body == {
            "code": 409,
            "title": "Conflict",
            "description": "Archive policy a exists",
        }
    else:
        assert body["error_message"]["faultstring"] == (
            "Archive policy a exists"
        )


def test_a_structured_description_is_gnocchi_only():
    error = errors.UnknownResources([("0b1d-uuid", "vm-1")])
    app = flask.Flask("t")
    with app.test_request_context("/v1/batch/resources/metrics/measures"):
        body = errors.error_response(
            error.status, error.message, None, error.description
        ).get_json()
    assert body["description"] == {
        "cause": "Unknown resources",
        "detail": [
            {"resource_id": "0b1d-uuid", "original_resource_id": "vm-1"}
        ],
    }
    with app.test_request_context("/v2/alarms"):
        body = errors.error_response(
            error.status, error.message, None, error.description
        ).get_json()
    assert body["error_message"]["faultstring"] == "Unknown resources: vm-1"
