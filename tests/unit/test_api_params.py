"""Request parameters of both dialects (api.params)."""

from __future__ import annotations

import flask
import pytest

from api import errors, params

APP = flask.Flask("params_test")


def _fault(call, url: str = "/", **request) -> errors.APIError:
    with APP.test_request_context(url, **request):
        with pytest.raises(errors.APIError) as excinfo:
            call()
    return excinfo.value


@pytest.mark.parametrize(
    ("word", "value"),
    [
        ("true", True),
        (" YES ", True),
        ("on", True),
        ("1", True),
        ("y", True),
        ("t", True),
        ("False", False),
        ("no", False),
        ("off", False),
        ("0", False),
        ("n", False),
        ("f", False),
        ("", None),
        ("perhaps", None),
    ],
)
def test_one_boolean_vocabulary(word, value):
    assert params.as_bool(word) is value


def test_v1_booleans():
    with APP.test_request_context("/?a=yes&b=&c=0&c=on"):
        assert params.v1_bool("a") is True
        assert params.v1_bool("b", default=True) is False
        assert params.v1_bool("c") is True  # the last value counts
        assert params.v1_bool("absent", default=True) is True
    fault = _fault(lambda: params.v1_bool("details"), "/?details=perhaps")
    assert fault.status == 400
    assert fault.message == (
        "Invalid input: details: must be a boolean, got 'perhaps'"
    )


def test_v2_booleans():
    assert params.v2_bool("enabled", True) is True
    assert params.v2_bool("enabled", "False") is False
    for bad in ("perhaps", ""):
        with pytest.raises(errors.APIError) as excinfo:
            params.v2_bool("enabled", bad)
        assert excinfo.value.status == 400
        assert excinfo.value.message == (
            f"Invalid input for field/attribute enabled. Value: '{bad}'. "
            f"Value not an unambiguous boolean: {bad}"
        )


def test_v1_integers():
    with APP.test_request_context("/?n=3&e="):
        assert params.v1_int("n", minimum=1, maximum=3) == 3
        assert params.v1_int("e") is None
        assert params.v1_int("absent") is None
    for url, reason in (
        ("/?n=x", "n: must be an integer, got 'x'"),
        ("/?n=0", "n: must be >= 1, got '0'"),
        ("/?n=9", "n: must be <= 5, got '9'"),
    ):
        fault = _fault(lambda: params.v1_int("n", 1, 5), url)
        assert (fault.status, fault.message) == (
            400,
            f"Invalid input: {reason}",
        )


def test_v1_json_bodies():
    with APP.test_request_context("/", data=b'{"a": 1}'):
        assert params.v1_json_body() == {"a": 1}
    with APP.test_request_context("/", data=b" "):
        assert params.v1_json_body(allow_empty=True) is None
    assert "body is empty" in _fault(params.v1_json_body, data=b"").message
    fault = _fault(params.v1_json_body, data=b"{'a': 1}")
    assert fault.message.startswith(
        "Invalid input: the body is not valid JSON"
    )


def test_v2_json_bodies():
    with APP.test_request_context(
        "/", data=b'"ok"', content_type="application/json"
    ):
        assert params.v2_json_body() == "ok"
    fault = _fault(params.v2_json_body, data=b"a: 1", content_type="text/yaml")
    assert (fault.status, fault.message) == (
        415,
        "Unknown mimetype: text/yaml",
    )
    fault = _fault(
        params.v2_json_body, data=b"", content_type="application/json"
    )
    assert fault.status == 400
    assert fault.message.startswith("Request is not in valid JSON format")


def test_v1_pages():
    with APP.test_request_context(
        "/?limit=2&marker=m&sort=name:DESC-nullslast"
    ):
        page = params.v1_page(10, sort_keys=("name", "id"))
    assert page == params.Page(limit=2, marker="m", sorts=[("name", "desc")])
    with APP.test_request_context("/?marker="):
        page = params.v1_page(10, default_sort=[("id", "asc")])
    assert page == params.Page(limit=10, marker=None, sorts=[("id", "asc")])
    for url, reason in (
        ("/?limit=0", "limit: must be >= 1, got '0'"),
        ("/?limit=11", "limit: must be <= 10, got '11'"),
        ("/?sort=colour", "sort: unknown sort key 'colour' (one of name, id)"),
        ("/?sort=id:sideways", "sort: unknown sort direction 'sideways'"),
    ):
        fault = _fault(
            lambda: params.v1_page(10, sort_keys=("name", "id")), url
        )
        assert (fault.status, fault.message) == (
            400,
            f"Invalid input: {reason}",
        )


def test_v2_paging():
    with APP.test_request_context("/x?limit=0&sort=name:desc,name&marker=m"):
        assert params.v2_limit(50) == 50
        assert params.v2_sort(("name", "state")) == [("name", "desc")]
        assert params.v2_marker() == "m"
    with APP.test_request_context("/x?limit=80"):
        assert params.v2_limit(50) == 50
    fault = _fault(lambda: params.v2_limit(50), "/?limit=-1")
    assert fault.message == (
        "Invalid input for field/attribute limit. Value: '-1'. it should be "
        "a positive integer."
    )
    fault = _fault(lambda: params.v2_sort(("name",)), "/?sort=name:up")
    assert fault.message.startswith(
        "Invalid input for field/attribute sort. Value: 'name:up'. "
    )


def test_v2_next_link_only_for_a_full_page():
    items = [{"id": "a"}, {"id": "b"}]
    with APP.test_request_context("http://h/v2/x?q.field=f&limit=2"):
        assert params.v2_next_link(items[:1], 2, "id") is None
        link = params.v2_next_link(items, 2, "id")
    assert link == "http://h/v2/x?q.field=f&limit=2&marker=b"
