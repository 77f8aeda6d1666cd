"""Pure parsers of the v1 API: timestamps, measures, rule matching."""

from __future__ import annotations

import re

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


# -- the array parse of measures agrees with the one-by-one parse ----------

EDGE_STAMPS = [
    "1970-01-01T00:00:00Z",
    "1970-01-01T00:00:00.000000001",
    "2026-12-03T13:30:16.123456+00:00",
    "2026-12-03 13:30",
    "2026-12-03T13:30:16.5Z",
    "2024-02-29T23:59:59",
    "2261-12-31T23:59:59.999999999Z",
    "2262-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "0000-01-01T00:00:00",
    "2023-02-29T00:00:00",
    "2024-01-01T24:00:00",
    "2024-01-01T10:60:00",
    "2024-01-01T10:00:60",
    "2024-13-01T10:00:00",
    "2024-01-01T10:00:00.1234567891",
    "2024-01-01T10:00:00.",
    "2024-01-01t10:00:00",
    "2024-01-01T10:00:00+01:00",
    "2024-01-01T10:00:00z",
    "2024-01-01",
    "2024-01-01T10",
    "1700000000",
    "2024-01-01T10:00:00Z\n",
    "\uff12\uff10\uff12\uff14-01-01T10:00:00",
    "now",
    "NaT",
]


def outcome(fn, *args):
    try:
        ts, values = fn(*args)
    except errors.APIError as exc:
        # The server's clock the message shows moves between the calls.
        return ("error", exc.status, re.sub(r"\(\d{4}-.*\)$", "", exc.message))
    return (ts.dtype.str, ts.tolist(), values.dtype.str, values.tolist())


@pytest.mark.parametrize("stamp", EDGE_STAMPS)
def test_array_parse_of_each_timestamp_agrees(stamp):
    raw = [
        {"timestamp": "2026-01-01T00:00:00Z", "value": 1},
        {"timestamp": stamp, "value": 2.5},
    ]
    fast = outcome(v.measures, raw, "measures")
    assert fast == outcome(v._measures_one_by_one, raw, "measures")


@pytest.mark.parametrize(
    "measure",
    [
        {"timestamp": 5, "value": 1e308},
        {"timestamp": 5, "value": 10**400},
        {"timestamp": 5, "value": True},
        {"timestamp": 5, "value": None},
        {"timestamp": 5, "value": "7.5"},
        {"timestamp": 5, "value": float("nan")},
        {"timestamp": True, "value": 1},
        {"timestamp": -1, "value": 1},
        {"timestamp": 2**63, "value": 1},
        {"timestamp": 9223372037, "value": 1},
        {"timestamp": 1.5, "value": 1},
        {"timestamp": 5, "value": 1, "extra": 0},
        {"timestamp": 5},
        {"value": 1, "other": 5},
        [5, 1],
    ],
)
def test_array_parse_of_each_measure_agrees(measure):
    raw = [{"timestamp": 1, "value": 1}, measure]
    fast = outcome(v.measures, raw, "m")
    assert fast == outcome(v._measures_one_by_one, raw, "m")


def test_array_parse_of_generated_lists_agrees():
    import random

    rng = random.Random(14)
    for _ in range(300):
        n = rng.randrange(0, 6)
        raw = []
        for _ in range(n):
            stamp = rng.choice(
                [
                    rng.randrange(0, 2_000_000_000),
                    rng.choice(EDGE_STAMPS),
                    f"20{rng.randrange(0, 40):02d}-{rng.randrange(0, 14):02d}"
                    f"-{rng.randrange(0, 32):02d}T{rng.randrange(0, 25):02d}:"
                    f"{rng.randrange(0, 61):02d}:{rng.randrange(0, 61):02d}"
                    + rng.choice(["", "Z", "+00:00", ".25", ".000001Z"]),
                ]
            )
            value = rng.choice([rng.random() * 1e6, rng.randrange(-9, 9)])
            raw.append({"timestamp": stamp, "value": value})
        assert outcome(v.measures, raw, "m") == outcome(
            v._measures_one_by_one, raw, "m"
        )


def test_many_lists_are_split_back_and_name_the_first_bad_one():
    good = [{"timestamp": i, "value": i} for i in range(3)]
    iso = [
        {"timestamp": f"2026-01-01T00:00:0{i}Z", "value": i} for i in range(2)
    ]
    got = v.measures_many([(good, "a"), ([], "b"), (iso, "c")])
    assert [ts.tolist() for ts, _ in got] == [
        [0, NS, 2 * NS],
        [],
        [1767225600 * NS, 1767225601 * NS],
    ]
    assert [vals.tolist() for _, vals in got] == [[0, 1, 2], [], [0, 1]]
    bad = [{"timestamp": 1, "value": "x"}]
    with pytest.raises(errors.APIError) as excinfo:
        v.measures_many([(good, "a"), (bad, "b[x]"), ({}, "c")])
    assert "b[x][0].value" in excinfo.value.message
    with pytest.raises(errors.APIError) as excinfo:
        v.measures_many([(good, "a"), ({}, "c")])
    assert "c: a list of measures is required" in excinfo.value.message
    future = [{"timestamp": 4_000_000_000, "value": 1}]
    with pytest.raises(errors.APIError) as excinfo:
        v.measures_many([(good, "a"), (future, "f")])
    assert "f[0].timestamp" in excinfo.value.message
