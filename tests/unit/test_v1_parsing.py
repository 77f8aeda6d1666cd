"""Pure parsers of the v1 API: timestamps, measures, rule matching."""

from __future__ import annotations

import flask
import pytest

from api import errors
from api.v1 import validation as v

NS = 1_000_000_000


@pytest.mark.parametrize(
    ("raw", "ns"),
    [
        (0, 0),
        (1, NS),
        (1.5, 1_500_000_000),
        ("1700000000.123456789", 1_700_000_000_123_456_789),
        (1700000000.1234567, 1_700_000_000_123_456_700),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("1970-01-01T00:00:00.000000001", 1),
        ("1970-01-01 00:00:01,5", 1_500_000_000),
        ("1970-01-02", 86400 * NS),
        ("1970-01-01T05:30:00+0530", 0),
        ("1970-01-01T05:30:00 05:30", 0),
        ("2024-02-29T23:59:59-00:00", 1709251199 * NS),
    ],
)
def test_timestamps(raw, ns):
    assert v.timestamp_ns(raw, "ts") == ns


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("1969-12-31T23:59:59Z", "after Epoch"),
        (-1, "after Epoch"),
        ("nan", "unable to parse"),
        (float("inf"), "not a timestamp"),
        (True, "not a timestamp"),
        (None, "not a timestamp"),
        ([1], "not a timestamp"),
        ("", "empty"),
        ("tomorrow", "unable to parse"),
        ("2023-02-29", "invalid date"),
        ("2024-01-01T24:00:00", "invalid time"),
        ("2024-01-01T10:00:00+25:00", "invalid UTC offset"),
        ("3000-01-01", "out of range"),
    ],
)
def test_bad_timestamps_name_the_field(raw, reason):
    with pytest.raises(errors.APIError) as excinfo:
        v.timestamp_ns(raw, "measures[2].timestamp")
    assert excinfo.value.status == 400
    assert "measures[2].timestamp" in excinfo.value.message
    assert reason in excinfo.value.message


def test_measures_arrays_and_first_bad_element():
    ts, values = v.measures(
        [{"timestamp": 2, "value": 1}, {"timestamp": "3", "value": "2.5"}],
        "m",
    )
    assert ts.tolist() == [2 * NS, 3 * NS]
    assert values.tolist() == [1.0, 2.5]
    with pytest.raises(errors.APIError) as excinfo:
        v.measures(
            [{"timestamp": 1, "value": 1}, {"timestamp": 1, "value": 1e400}],
            "m",
        )
    assert "m[1].value" in excinfo.value.message


def test_query_parsers():
    app = flask.Flask("t")
    with app.test_request_context(
        "/?needed_overlap=50&fill=0&flag=yes&n=3&g=5min&n2=x"
    ):
        assert v.query_float("needed_overlap", 0, 100) == 50.0
        assert v.query_bool("flag") is True
        assert v.query_bool("absent", default=True) is True
        assert v.query_int("n", minimum=1) == 3
        assert v.query_granularity("g") == 300 * NS
        with pytest.raises(errors.APIError, match="n2"):
            v.query_int("n2")
