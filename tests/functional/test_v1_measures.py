"""Measures over HTTP: push, read back, check against numpy; bad input."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import numpy as np
import pytest

from tests import envelopes
from tests.functional.series_helpers import ContendedDriver

ADMIN = {"X-User-Id": "admin", "X-Project-Id": "p-admin", "X-Roles": "admin"}
ALICE = {"X-User-Id": "alice", "X-Project-Id": "p-a", "X-Roles": "member"}
BOB = {"X-User-Id": "bob", "X-Project-Id": "p-b", "X-Roles": "member"}

T0 = 1_700_000_000 - 1_700_000_000 % 3600  # an hour boundary (seconds)
METHODS = [
    "mean",
    "sum",
    "count",
    "min",
    "max",
    "std",
    "median",
    "first",
    "last",
    "95pct",
]


def fault(response, status):
    assert status < 500
    return envelopes.message(response, status)


def make_policy(client, name="fine", back_window=0, methods=None):
    r = client.post(
        "/v1/archive_policy",
        json={
            "name": name,
            "back_window": back_window,
            "definition": [
                {"granularity": 60, "points": 1000},
                {"granularity": 300, "points": 1000},
            ],
            "aggregation_methods": methods or METHODS,
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.get_data(as_text=True)


def make_metric(client, policy="fine", headers=ALICE):
    r = client.post(
        "/v1/metric", json={"archive_policy_name": policy}, headers=headers
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()["id"]


def iso(seconds):
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()


def expected(ts, values, gran, method):
    """Gnocchi's bucket semantics computed with plain numpy."""
    keys = ts - ts % gran
    out = []
    for key in np.unique(keys):
        sel = values[keys == key]
        if method == "mean":
            v = sel.mean()
        elif method == "sum":
            v = sel.sum()
        elif method == "count":
            v = float(sel.size)
        elif method == "min":
            v = sel.min()
        elif method == "max":
            v = sel.max()
        elif method == "std":
            if sel.size < 2:
                continue
            v = sel.std(ddof=1)
        elif method == "median":
            v = np.median(sel)
        elif method == "first":
            v = sel[0]
        elif method == "last":
            v = sel[-1]
        elif method == "95pct":
            v = np.percentile(sel, 95)
        out.append((int(key), float(v)))
    return out


def test_push_and_read_back_every_method_and_granularity(client, rt):
    make_policy(client)
    mid = make_metric(client)
    published = []
    rt.channel.subscribe(published.append)
    rng = np.random.default_rng(7)
    ts = np.sort(rng.choice(np.arange(T0, T0 + 3000), 200, replace=False))
    values = np.round(rng.normal(50, 20, ts.size), 3)
    body = [
        {"timestamp": iso(t) if i % 2 else int(t), "value": float(v)}
        for i, (t, v) in enumerate(zip(ts, values, strict=True))
    ]
    r = client.post(f"/v1/metric/{mid}/measures", json=body, headers=ALICE)
    assert r.status_code == 202, r.get_data(as_text=True)
    assert r.get_json() == {"measures_stored": 200, "measures_refused": 0}
    assert published == [[mid]]
    for method in METHODS:
        r = client.get(
            f"/v1/metric/{mid}/measures?aggregation={method}", headers=ALICE
        )
        assert r.status_code == 200, r.get_data(as_text=True)
        got = r.get_json()
        want = [
            [iso(k), 300.0, v] for k, v in expected(ts, values, 300, method)
        ] + [[iso(k), 60.0, v] for k, v in expected(ts, values, 60, method)]
        assert [p[:2] for p in got] == [p[:2] for p in want], method
        np.testing.assert_allclose(
            [p[2] for p in got],
            [p[2] for p in want],
            rtol=1e-9,
            err_msg=method,
        )
    # one granularity, bounded: start rounded down, stop exclusive
    start, stop = T0 + 610, T0 + 1200
    r = client.get(
        f"/v1/metric/{mid}/measures?granularity=60&start={start}"
        f"&stop={iso(stop)}&aggregation=max",
        headers=ALICE,
    )
    got = r.get_json()
    want = [
        [iso(k), 60.0, v]
        for k, v in expected(ts, values, 60, "max")
        if T0 + 600 <= k < stop
    ]
    assert got == want
    assert got[0][0] == iso(T0 + 600)


def test_default_aggregation_is_mean_and_timestamps_have_offsets(client):
    mid = make_metric(client, policy="low")
    r = client.post(
        f"/v1/metric/{mid}/measures",
        json=[
            {"timestamp": "2024-05-01T12:01:00+02:00", "value": 1},
            {"timestamp": "2024-05-01T10:03:00", "value": "3"},
            {"timestamp": "1714557780.5", "value": 5.5},
        ],
        headers=ALICE,
    )
    assert r.status_code == 202
    got = client.get(f"/v1/metric/{mid}/measures", headers=ALICE).get_json()
    assert got == [["2024-05-01T10:00:00+00:00", 300.0, 3.1666666666666665]]


def test_nanosecond_timestamps_are_kept(client):
    r = client.post(
        "/v1/archive_policy",
        json={
            "name": "ns",
            "definition": [{"granularity": 1, "points": 100}],
            "aggregation_methods": ["first", "last", "count"],
        },
        headers=ADMIN,
    )
    assert r.status_code == 201
    mid = make_metric(client, policy="ns")
    body = [
        {"timestamp": "2024-01-01T00:00:00.000000002Z", "value": 2},
        {"timestamp": "2024-01-01T00:00:00.000000001Z", "value": 1},
    ]
    client.post(f"/v1/metric/{mid}/measures", json=body, headers=ALICE)
    for method, value in (("first", 1.0), ("last", 2.0), ("count", 2.0)):
        got = client.get(
            f"/v1/metric/{mid}/measures?aggregation={method}", headers=ALICE
        ).get_json()
        assert got == [["2024-01-01T00:00:00+00:00", 1.0, value]]


def test_late_points_are_refused_and_reported(client, rt):
    make_policy(client)
    mid = make_metric(client)
    r = client.post(
        f"/v1/metric/{mid}/measures",
        json=[{"timestamp": T0 + 3000, "value": 1}],
        headers=ALICE,
    )
    assert r.get_json() == {"measures_stored": 1, "measures_refused": 0}
    before = rt.series.statistics()["measures_refused_late"]
    r = client.post(
        f"/v1/metric/{mid}/measures",
        json=[
            {"timestamp": T0 + 10, "value": 100},
            {"timestamp": T0 + 3010, "value": 3},
        ],
        headers=ALICE,
    )
    assert r.status_code == 202
    assert r.get_json() == {"measures_stored": 1, "measures_refused": 1}
    assert rt.series.statistics()["measures_refused_late"] == before + 1
    got = client.get(
        f"/v1/metric/{mid}/measures?granularity=60&aggregation=sum",
        headers=ALICE,
    ).get_json()
    assert got == [[iso(T0 + 3000), 60.0, 4.0]]
    status = client.get("/v1/status", headers=ADMIN).get_json()
    assert status["engine"]["measures_refused_late"] >= 1
    assert status["storage"]["summary"] == {"metrics": 0, "measures": 0}
    assert status["alarmer"]["metrics"] == 1
    fault(client.get("/v1/status", headers=ALICE), 403)


BAD_BODIES = [
    ({"timestamp": 1, "value": 1}, "measures: a list"),
    (
        [{"timestamp": T0, "value": 1}, {"timestamp": T0 + 1, "value": "abc"}],
        "measures[1].value",
    ),
    (
        [{"timestamp": T0, "value": 1}, {"timestamp": T0, "value": None}],
        "measures[1].value",
    ),
    ([{"timestamp": T0, "value": True}], "measures[0].value"),
    ([{"timestamp": T0, "value": "nan"}], "measures[0].value"),
    ([{"timestamp": T0, "value": "Infinity"}], "measures[0].value"),
    ([{"timestamp": T0, "value": 10**400}], "measures[0].value"),
    ([{"timestamp": 1e30, "value": 1}], "measures[0].timestamp"),
    (
        [
            {"timestamp": T0, "value": 1},
            {"timestamp": "yesterday", "value": 1},
        ],
        "measures[1].timestamp",
    ),
    (
        [{"timestamp": "1969-12-31T23:59:59Z", "value": 1}],
        "measures[0].timestamp: timestamp must be after Epoch",
    ),
    ([{"timestamp": -5, "value": 1}], "measures[0].timestamp"),
    (
        [{"timestamp": "2024-02-30T00:00:00", "value": 1}],
        "measures[0].timestamp",
    ),
    (
        [{"timestamp": "2024-01-01T25:00:00", "value": 1}],
        "measures[0].timestamp",
    ),
    ([{"timestamp": None, "value": 1}], "measures[0].timestamp"),
    ([{"value": 1}], "measures[0]: required attribute(s) timestamp"),
    (
        [{"timestamp": T0, "value": 1, "unit": "B"}],
        "measures[0]: unknown attribute(s) unit",
    ),
    ([[T0, 1]], "measures[0]"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_measures_are_400_and_store_nothing(client, body, field):
    mid = make_metric(client, policy="low")
    r = client.post(f"/v1/metric/{mid}/measures", json=body, headers=ALICE)
    assert field in fault(r, 400)
    got = client.get(f"/v1/metric/{mid}/measures", headers=ALICE)
    assert got.status_code == 200
    assert got.get_json() == []


def test_nan_literal_and_non_json_bodies(client):
    mid = make_metric(client, policy="low")
    for data, field in (
        (b'[{"timestamp": 1700000000, "value": NaN}]', "measures[0].value"),
        (b"[{'timestamp': 1}]", "not valid JSON"),
        (b"", "empty"),
    ):
        r = client.post(
            f"/v1/metric/{mid}/measures",
            data=data,
            headers={**ALICE, "Content-Type": "application/json"},
        )
        assert field in fault(r, 400)
    got = client.get(f"/v1/metric/{mid}/measures", headers=ALICE)
    assert got.get_json() == []


def test_unknown_or_foreign_metric_is_404(client, rt):
    r = client.post(
        f"/v1/metric/{uuid.uuid4()}/measures",
        json=[{"timestamp": T0, "value": 1}],
        headers=ALICE,
    )
    assert "does not exist" in fault(r, 404)
    mid = make_metric(client, policy="low", headers=BOB)
    r = client.post(
        f"/v1/metric/{mid}/measures",
        json=[{"timestamp": T0, "value": 1}],
        headers=ALICE,
    )
    fault(r, 404)
    fault(client.get(f"/v1/metric/{mid}/measures", headers=ALICE), 404)
    assert rt.series.get_measures(mid, "mean") == []


def test_read_errors(client):
    mid = make_metric(client, policy="low")
    client.post(
        f"/v1/metric/{mid}/measures",
        json=[{"timestamp": T0, "value": 1}],
        headers=ALICE,
    )
    for query, status, field in (
        ("aggregation=last", 404, "'last'"),
        ("aggregation=bogus", 404, "'bogus'"),
        ("granularity=60", 404, "granularity"),
        ("granularity=abc", 400, "granularity"),
        ("granularity=-5", 400, "granularity"),
        ("start=notatime", 400, "start"),
        ("stop=1969-01-01", 400, "stop"),
        (f"start={T0 + 10}&stop={T0}", 400, "stop"),
        ("refresh=maybe", 400, "refresh"),
    ):
        r = client.get(f"/v1/metric/{mid}/measures?{query}", headers=ALICE)
        assert field in fault(r, status), query
    r = client.get(
        f"/v1/metric/{mid}/measures?granularity=5min&refresh=true",
        headers=ALICE,
    )
    assert r.get_json() == [[iso(T0), 300.0, 1.0]]


def test_batch_writes_all_or_nothing(client, rt):
    make_policy(client)
    a, b = make_metric(client), make_metric(client)
    published = []
    rt.channel.subscribe(published.append)
    good = [{"timestamp": T0 + 5, "value": 2}]
    unknown = str(uuid.uuid4())
    foreign = make_metric(client, policy="low", headers=BOB)
    for body, status, field in (
        ({a: good, unknown: good}, 400, unknown),
        ({a: good, foreign: good}, 400, foreign),
        (
            {a: good, b: [{"timestamp": T0, "value": "x"}]},
            400,
            f"measures[{b}][0].value",
        ),
        ({a: good, b: {"timestamp": T0}}, 400, f"measures[{b}]"),
        ([good], 400, "body"),
    ):
        r = client.post("/v1/batch/metrics/measures", json=body, headers=ALICE)
        assert field in fault(r, status)
    for mid in (a, b):
        assert (
            client.get(f"/v1/metric/{mid}/measures", headers=ALICE).get_json()
            == []
        )
    assert rt.series.get_measures(foreign, "mean") == []
    assert published == []
    r = client.post(
        "/v1/batch/metrics/measures",
        json={a: good, b: [*good, {"timestamp": T0 + 65, "value": 4}]},
        headers=ALICE,
    )
    assert r.status_code == 202
    assert r.get_json() == {"measures_stored": 3, "measures_refused": 0}
    assert sorted(published[0]) == sorted([a, b])
    got = client.get(
        f"/v1/metric/{b}/measures?granularity=60", headers=ALICE
    ).get_json()
    assert got == [[iso(T0), 60.0, 2.0], [iso(T0 + 60), 60.0, 4.0]]


def test_delete_metric_removes_its_series(client, rt):
    mid = make_metric(client, policy="low")
    client.post(
        f"/v1/metric/{mid}/measures",
        json=[{"timestamp": T0, "value": 1}],
        headers=ALICE,
    )
    assert rt.series.get_measures(mid, "mean") != []
    fault(client.delete(f"/v1/metric/{mid}", headers=BOB), 404)
    assert client.delete(f"/v1/metric/{mid}", headers=ALICE).status_code == 204
    fault(client.get(f"/v1/metric/{mid}", headers=ALICE), 404)
    fault(client.get(f"/v1/metric/{mid}/measures", headers=ALICE), 404)
    assert rt.series.get_measures(mid, "mean") == []


def test_metric_writes_answer_503_on_write_conflict(client, rt, monkeypatch):
    make_policy(client)
    a, b = make_metric(client), make_metric(client)
    monkeypatch.setattr(
        rt.series, "driver", ContendedDriver(rt.series.driver, {b})
    )
    good = [{"timestamp": T0 + 5, "value": 2}]
    for url, body in (
        (f"/v1/metric/{b}/measures", good),
        ("/v1/batch/metrics/measures", {a: good, b: good}),
    ):
        r = client.post(url, json=body, headers=ALICE)
        assert r.status_code == 503, r.get_data(as_text=True)
        assert r.headers["Retry-After"] == "1"
        error = envelopes.message(r, 503)
        assert b in error
        assert "retry the request" in error
    assert (
        client.get(f"/v1/metric/{b}/measures", headers=ALICE).get_json() == []
    )


def test_batch_fast_path_refuses_hostile_measures_storing_nothing(client, rt):
    make_policy(client)
    a, b = make_metric(client), make_metric(client)
    good = [
        {"timestamp": iso(T0 + i).replace("+00:00", "Z"), "value": i}
        for i in range(3)
    ]
    text = '{"%s": %s, "%s": [{"timestamp": %d, "value": %s}]}'
    for literal, field, reason in (
        ("NaN", f"measures.{b}[0].value", "NaN is not a JSON number"),
        ("-Infinity", f"measures.{b}[0].value", "-Infinity is not a JSON"),
        ("1e999", f"measures.{b}[0].value", "out of range"),
        ("9" * 400, f"measures.{b}[0].value", "out of range"),
        ('"\\ud800"', f"measures.{b}[0].value", "lone UTF-16 surrogates"),
        ('"x\\u0000"', f"measures.{b}[0].value", "NUL characters"),
    ):
        body = text % (a, json.dumps(good), b, T0, literal)
        r = client.post(
            "/v1/batch/metrics/measures",
            data=body,
            headers={**ALICE, "Content-Type": "application/json"},
        )
        message = fault(r, 400)
        assert field in message and reason in message, message
    for stamp, reason in (
        ("2023-02-29T00:00:00Z", "invalid date"),
        ("2024-01-01T24:00:00Z", "invalid time"),
        ("1969-12-31T23:59:59Z", "after Epoch"),
    ):
        r = client.post(
            "/v1/batch/metrics/measures",
            json={a: good, b: [*good, {"timestamp": stamp, "value": 1}]},
            headers=ALICE,
        )
        message = fault(r, 400)
        assert f"measures[{b}][3].timestamp" in message, message
        assert reason in message, message
    for mid in (a, b):
        got = client.get(f"/v1/metric/{mid}/measures", headers=ALICE)
        assert got.get_json() == []
    r = client.post(
        "/v1/batch/metrics/measures", json={a: good, b: good}, headers=ALICE
    )
    assert r.get_json() == {"measures_stored": 6, "measures_refused": 0}
    got = client.get(
        f"/v1/metric/{b}/measures?granularity=60&aggregation=sum",
        headers=ALICE,
    ).get_json()
    assert got == [[iso(T0), 60.0, 3.0]]
