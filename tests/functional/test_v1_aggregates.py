"""POST /v1/aggregates: Gnocchi's shapes, Aodh's shape, checked by numpy."""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pytest

from tests import envelopes

ADMIN = {"X-User-Id": "admin", "X-Project-Id": "p-admin", "X-Roles": "admin"}
ALICE = {"X-User-Id": "alice", "X-Project-Id": "p-a", "X-Roles": "member"}
BOB = {"X-User-Id": "bob", "X-Project-Id": "p-b", "X-Roles": "member"}
T0 = 1_700_000_000 - 1_700_000_000 % 3600


def fault(response, status):
    assert status < 500
    return envelopes.message(response, status)


def iso(seconds):
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()


@pytest.fixture
def metrics(client):
    """Three metrics on a 60 s / 300 s policy with partly shared minutes.

    Returns {metric_id: {minute_start: mean value}} of the 60 s level.
    """
    r = client.post(
        "/v1/archive_policy",
        json={
            "name": "agg",
            "definition": [
                {"granularity": 60, "points": 100},
                {"granularity": 300, "points": 100},
            ],
            "aggregation_methods": ["mean", "max", "last"],
        },
        headers=ADMIN,
    )
    assert r.status_code == 201
    rng = np.random.default_rng(3)
    data = {}
    minutes = {
        0: range(0, 10),
        1: range(2, 12),
        2: list(range(0, 10, 2)),
    }
    for i in range(3):
        mid = client.post(
            "/v1/metric", json={"archive_policy_name": "agg"}, headers=ALICE
        ).get_json()["id"]
        points = {}
        body = []
        for m in minutes[i]:
            vals = rng.uniform(0, 100, 3).round(2)
            for j, v in enumerate(vals):
                body.append({"timestamp": T0 + m * 60 + j * 10, "value": v})
            points[T0 + m * 60] = float(vals.mean())
        r = client.post(f"/v1/metric/{mid}/measures", json=body, headers=ALICE)
        assert r.status_code == 202
        data[mid] = points
    return data


def pairs(times, values):
    return list(zip(times, values, strict=True))


def across(data, ids, reducer, keep):
    times = sorted({t for mid in ids for t in data[mid]})
    out = []
    for t in times:
        vals = [data[mid][t] for mid in ids if t in data[mid]]
        if keep(len(vals)):
            out.append((t, reducer(vals)))
    return out


def post(client, operations, query="", headers=ALICE, **extra):
    return client.post(
        f"/v1/aggregates?{query}",
        json={"operations": operations, **extra},
        headers=headers,
    )


def check(got, want, gran=60.0):
    assert [p[0] for p in got] == [iso(t) for t, _ in want]
    assert all(p[1] == gran for p in got)
    np.testing.assert_allclose([p[2] for p in got], [v for _, v in want])


def test_aggregate_mean_list_sexpr_and_aodh_shapes(client, metrics):
    ids = list(metrics)
    query = f"granularity=60&start={T0}&stop={T0 + 3600}&needed_overlap=0"
    want = across(metrics, ids, np.mean, lambda n: n > 0)
    shapes = [
        ["aggregate", "mean", ["metric", *[[i, "mean"] for i in ids]]],
        "(aggregate mean (metric "
        + " ".join(f"({i} mean)" for i in ids)
        + "))",
        ["aggregate", "mean", *[["metric", i, "mean"] for i in ids]],
    ]
    for ops in shapes:
        r = post(client, ops, query)
        assert r.status_code == 200, r.get_data(as_text=True)
        check(r.get_json()["measures"]["aggregated"], want)
    # max across, 100 % overlap required: only minutes all three have
    r = post(
        client,
        ["aggregate", "max", ["metric", *[[i, "mean"] for i in ids]]],
        f"granularity=60&start={T0}&stop={T0 + 3600}&fill=null",
    )
    check(
        r.get_json()["measures"]["aggregated"],
        across(metrics, ids, np.max, lambda n: n > 0),
    )


def test_default_fill_is_dropna_over_common_granularities(client, metrics):
    ids = list(metrics)[:2]
    r = post(
        client,
        ["aggregate", "mean", ["metric", [ids[0], "mean"], [ids[1], "mean"]]],
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    got = r.get_json()["measures"]["aggregated"]
    grans = [p[1] for p in got]
    assert grans == sorted(grans, reverse=True)
    assert set(grans) == {300.0, 60.0}
    check(
        [p for p in got if p[1] == 60.0],
        across(metrics, ids, np.mean, lambda n: n > 0),
    )


def test_overlap_is_enforced_without_fill(client, metrics):
    ids = list(metrics)
    r = post(
        client,
        ["aggregate", "mean", ["metric", *[[i, "mean"] for i in ids]]],
        f"granularity=60&start={T0}&stop={T0 + 3600}&needed_overlap=100",
    )
    assert "overlap" in fault(r, 400)


def test_overlap_rules_word_their_errors_as_gnocchi(client, metrics):
    ids = list(metrics)
    ops = ["aggregate", "mean", ["metric", *[[i, "mean"] for i in ids]]]
    r = post(
        client,
        ops,
        f"granularity=60&start={T0}&stop={T0 + 3600}&needed_overlap=100",
    )
    assert fault(r, 400).startswith(
        "Less than 100.000000% of datapoints overlap in this timespan ("
    )
    # a timespan without any point: nothing overlaps
    far = T0 + 30 * 86400
    span = f"granularity=60&start={far}&stop={far + 600}"
    assert fault(post(client, ops, span + "&needed_overlap=50"), 400) == (
        "No overlap"
    )
    for query in (span + "&needed_overlap=0", span):
        r = post(client, ops, query)
        assert r.status_code == 200, r.get_data(as_text=True)
        assert r.get_json()["measures"] == {"aggregated": []}


def test_metric_only_returns_each_series(client, metrics):
    ids = list(metrics)[:2]
    r = post(
        client,
        ["metric", [ids[0], "mean"], [ids[1], "max"]],
        "granularity=60&details=true",
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    measures = body["measures"]
    assert set(measures) == set(ids)
    # dropna: each series keeps only its own points
    check(measures[ids[0]]["mean"], sorted(metrics[ids[0]].items()))
    assert [p[0] for p in measures[ids[1]]["max"]] == [
        iso(t) for t in sorted(metrics[ids[1]])
    ]
    assert sorted(m["id"] for m in body["references"]) == sorted(ids)
    # single metric, S-expression
    r = post(client, f"(metric {ids[0]} mean)", "granularity=60")
    check(
        r.get_json()["measures"][ids[0]]["mean"],
        sorted(metrics[ids[0]].items()),
    )
    # fill with a number: the union of timestamps, gaps take the number
    r = post(
        client,
        ["metric", [ids[0], "mean"], [ids[1], "mean"]],
        "granularity=60&fill=-1",
    )
    got = r.get_json()["measures"][ids[1]]["mean"]
    times = sorted(set(metrics[ids[0]]) | set(metrics[ids[1]]))
    check(got, [(t, metrics[ids[1]].get(t, -1.0)) for t in times])
    # ffill: leading gaps stay empty (null), inner gaps take the previous
    r = post(
        client,
        ["metric", [ids[0], "mean"], [ids[1], "mean"]],
        "granularity=60&fill=ffill",
    )
    got = r.get_json()["measures"][ids[1]]["mean"]
    assert [p[2] for p in got[:2]] == [None, None]
    assert got[-1][2] == pytest.approx(metrics[ids[1]][T0 + 11 * 60])


@pytest.mark.parametrize(
    ("ops", "query", "status", "field"),
    [
        (["bogus", "x"], "", 400, "unknown operation 'bogus'"),
        (
            ["rolling", "mean", 0, ["metric", "{a}", "mean"]],
            "",
            400,
            "operations[2]: the window",
        ),
        (
            ["rolling", "mean", 99, ["metric", "{a}", "mean"]],
            "granularity=60",
            400,
            "rolling window 99 is greater",
        ),
        (
            ["resample", "last", 300, ["metric", "{a}", "mean"]],
            "",
            400,
            "operations[1]",
        ),
        (["+", 1, 2], "", 400, "at least one operation"),
        (["+", ["metric", "{a}", "mean"], "x"], "", 400, "operations[2]"),
        (["abs", ["metric", "{a}", "mean"], 3], "", 400, "one operation"),
        (
            [
                "-",
                ["metric", ["{a}", "mean"], ["{b}", "mean"]],
                ["metric", ["{a}", "mean"], ["{b}", "mean"], ["{c}", "mean"]],
            ],
            "granularity=60",
            400,
            "between 2 and 3 series",
        ),
        (
            ["aggregate", "avg", ["metric", "{a}", "mean"]],
            "",
            400,
            "operations[1]",
        ),
        (["aggregate", "mean"], "", 400, "operations"),
        (["metric", "{a}"], "", 400, "operations"),
        (["metric", ["{a}"]], "", 400, "operations[1]"),
        ("(aggregate mean (metric {a} mean)", "", 400, "unbalanced"),
        ("aggregate mean", "", 400, "operations"),
        ([], "", 400, "operations"),
        (["metric", "{a}", "std"], "", 404, "'std'"),
        (["metric", "{missing}", "mean"], "", 404, "{missing}"),
        (["metric", "{foreign}", "mean"], "", 404, "{foreign}"),
        (["metric", "{a}", "mean"], "granularity=7", 404, "granularity"),
        (["metric", "{a}", "mean"], "granularity=x", 400, "granularity"),
        (["metric", "{a}", "mean"], "fill=sideways", 400, "fill"),
        (
            ["metric", "{a}", "mean"],
            "needed_overlap=101",
            400,
            "needed_overlap",
        ),
        (
            ["metric", "{a}", "mean"],
            "needed_overlap=abc",
            400,
            "needed_overlap",
        ),
        (["metric", "{a}", "mean"], "start=yesterday", 400, "start"),
        (["metric", "{a}", "mean"], "details=perhaps", 400, "details"),
        (["metric", "{a}", "mean", "{b}", "mean"], "", 400, "operations"),
        (
            ["metric", ["{a}", "last"], ["{low}", "last"]],
            "",
            400,
            "No granularity match",
        ),
    ],
)
def test_bad_requests(client, metrics, ops, query, status, field):
    a, b = list(metrics)[:2]
    missing = str(uuid.uuid4())
    foreign = client.post(
        "/v1/metric", json={"archive_policy_name": "agg"}, headers=BOB
    ).get_json()["id"]
    low = client.post(
        "/v1/metric", json={"archive_policy_name": "bool"}, headers=ALICE
    ).get_json()["id"]
    c = list(metrics)[2]
    names = {
        "c": c,
        "a": a,
        "b": b,
        "missing": missing,
        "foreign": foreign,
        "low": low,
    }

    def fmt(x):
        if isinstance(x, str):
            return x.format(**names)
        if isinstance(x, list):
            return [fmt(y) for y in x]
        return x

    r = post(client, fmt(ops), query)
    assert fmt(field) in fault(r, status)


def test_body_checks(client, metrics):
    a = next(iter(metrics))
    for body, field in (
        ({"operations": ["metric", a, "mean"], "colour": 1}, "colour"),
        ({}, "operations"),
        ({"operations": 3}, "operations"),
        ([1], "body"),
    ):
        r = client.post("/v1/aggregates", json=body, headers=ALICE)
        assert field in fault(r, 400)
    r = client.post(
        "/v1/aggregates",
        data=b"nope",
        headers={**ALICE, "Content-Type": "application/json"},
    )
    assert "JSON" in fault(r, 400)


def test_arithmetic_rolling_resample_and_derivatives(client, metrics):
    a, b, _ = list(metrics)
    sa = sorted(metrics[a].items())
    va = np.array([x for _, x in sa])
    ta = [t for t, _ in sa]
    q = "granularity=60"

    def series(ops, key=a, agg="mean"):
        r = post(client, ops, q)
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.get_json()["measures"][key][agg]

    def aggregated(ops, query=q):
        r = post(client, ops, query)
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.get_json()["measures"]["aggregated"]

    check(series(["*", 2, ["metric", a, "mean"]]), pairs(ta, 2 * va))
    check(series("(abs (neg (metric " + a + " mean)))"), pairs(ta, va))
    check(
        series(["clip", ["metric", a, "mean"], 20, 80]),
        pairs(ta, np.clip(va, 20, 80)),
    )
    check(
        series([">", ["metric", a, "mean"], 50]),
        pairs(ta, (va > 50).astype(float)),
    )
    check(
        series(["rolling", "sum", 2, ["metric", a, "mean"]]),
        pairs(ta[1:], va[1:] + va[:-1]),
    )
    check(
        series(["rateofchange", ["metric", a, "mean"]]),
        pairs(ta[1:], np.diff(va)),
    )
    check(
        series(["rateofchangesec", ["metric", a, "mean"]]),
        pairs(ta[1:], np.diff(va) / 60),
    )
    got = series(["resample", "max", 300, ["metric", a, "mean"]])
    want = [
        (t, max(x for u, x in sa if t <= u < t + 300))
        for t in sorted({u - u % 300 for u in ta})
    ]
    check(got, want, gran=300.0)
    # difference of two series: one aggregated series where both exist
    got = aggregated(["-", ["metric", a, "mean"], ["metric", b, "mean"]])
    common = sorted(set(metrics[a]) & set(metrics[b]))
    check(got, [(t, metrics[a][t] - metrics[b][t]) for t in common])
    # each series minus the mean across them (2 rows kept)
    r = post(
        client,
        [
            "-",
            ["metric", [a, "mean"], [b, "mean"]],
            ["aggregate", "mean", ["metric", [a, "mean"], [b, "mean"]]],
        ],
        q + "&fill=null",
    )
    body = r.get_json()["measures"]
    times = sorted(set(metrics[a]) | set(metrics[b]))
    means = {
        t: np.mean([m[t] for m in (metrics[a], metrics[b]) if t in m])
        for t in times
    }
    got = body[b]["mean"]
    assert [p[0] for p in got] == [iso(t) for t in times]
    for (_, _, value), t in zip(got, times, strict=True):
        if t in metrics[b]:
            assert value == pytest.approx(metrics[b][t] - means[t])
        else:
            assert value is None
    # resample inside aggregate, rate: across
    got = aggregated(
        [
            "aggregate",
            "rate:mean",
            ["resample", "mean", 300, ["metric", [a, "mean"], [b, "mean"]]],
        ]
    )
    assert all(p[1] == 300.0 for p in got)
