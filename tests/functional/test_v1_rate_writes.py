"""``rate:`` over HTTP across writes equals Gnocchi 4.7.1's.

A cumulative counter (what Ceilometer pushes for ``cpu``) arrives in
several ``POST /v1/metric/<id>/measures`` requests on a real server;
``GET .../measures?aggregation=rate:mean`` (what Heat's alarms read)
must give what Gnocchi's own storage path computes for the same
batches, in the same test.
"""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest
import requests

from alarmer.metrics import policy as ap

pytest.importorskip("gnocchi.storage.file")

from tests.functional.gnocchi_reference import GnocchiMetric

ADMIN = {"X-User-Id": "admin", "X-Project-Id": "p-admin", "X-Roles": "admin"}
ALICE = {"X-User-Id": "alice", "X-Project-Id": "p-a", "X-Roles": "member"}
T0 = 1_700_000_000 - 1_700_000_000 % 3600
METHODS = ("mean", "rate:mean", "rate:max", "rate:std", "rate:95pct")


def iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat()


def test_counter_rates_over_several_writes_equal_gnocchi(live_api, tmp_path):
    r = requests.post(
        f"{live_api}/v1/archive_policy",
        json={
            "name": "counter",
            "back_window": 0,
            "definition": [
                {"granularity": 60, "points": 120},
                {"granularity": 300, "points": 24},
            ],
            "aggregation_methods": list(METHODS),
        },
        headers=ADMIN,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    r = requests.post(
        f"{live_api}/v1/metric",
        json={"archive_policy_name": "counter", "name": "cpu"},
        headers=ALICE,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    metric_id = r.json()["id"]
    reference = GnocchiMetric(
        ap.ArchivePolicy(
            "counter",
            (ap.PolicyItem(60 * ap.NS, 120), ap.PolicyItem(300 * ap.NS, 24)),
            METHODS,
        ),
        str(tmp_path / "gnocchi"),
    )
    # cpu time in ns, sampled every 10 s with jitter, a gap of 3 min,
    # sent in batches of varied sizes, one re-sending a point
    rng = np.random.default_rng(5)
    seconds = T0 + np.cumsum(rng.integers(8, 13, 150)).astype(np.int64)
    seconds[90:] += 180
    counter = np.cumsum(rng.uniform(1e8, 9e8, seconds.size)).round()
    ts = seconds * ap.NS
    cuts = [0, 7, 8, 30, 31, 62, 90, 97, 130, 150]
    for lo, hi in itertools.pairwise(cuts):
        batch_ts, batch_values = ts[lo:hi], counter[lo:hi]
        if lo == 62:
            batch_ts = np.append(batch_ts, ts[60])
            batch_values = np.append(batch_values, counter[60] + 5e7)
        body = [
            {"timestamp": iso(int(t)), "value": float(v)}
            for t, v in zip(batch_ts, batch_values, strict=True)
        ]
        r = requests.post(
            f"{live_api}/v1/metric/{metric_id}/measures",
            json=body,
            headers=ALICE,
            timeout=30,
        )
        assert r.status_code == 202, r.text
        reference.write(batch_ts, batch_values)
    for method in METHODS:
        r = requests.get(
            f"{live_api}/v1/metric/{metric_id}/measures",
            params={"aggregation": method},
            headers=ALICE,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        got = r.json()
        want = []
        for g in (300, 60):
            exp_ts, exp_values = reference.read(method, g * ap.NS)
            want += [
                [iso(int(t)), float(g), float(v)]
                for t, v in zip(exp_ts, exp_values, strict=True)
            ]
        assert len(want) > 10, method
        assert [p[:2] for p in got] == [p[:2] for p in want], method
        np.testing.assert_allclose(
            [p[2] for p in got],
            [p[2] for p in want],
            rtol=1e-9,
            err_msg=method,
        )
