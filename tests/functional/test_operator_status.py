"""``/v1/status``: Gnocchi's meaning, and refusals that last.

Gnocchi's ``storage.summary`` counts what waits for its metricd; alarmer
aggregates before answering, so nothing waits.  The late measures
refused are counted in the database: another process (a new runtime on
the same database, as after a restart or on another host) reads the
same counts.
"""

from __future__ import annotations

from alarmer import runtime
from api.app import create_app
from tests.functional.test_v1_measures import (
    ADMIN,
    ALICE,
    T0,
    make_metric,
    make_policy,
)


def push(client, mid, *stamps):
    r = client.post(
        f"/v1/metric/{mid}/measures",
        json=[{"timestamp": stamp, "value": 1} for stamp in stamps],
        headers=ALICE,
    )
    assert r.status_code == 202, r.get_data(as_text=True)
    return r.get_json()


def test_refusals_are_counted_for_good_across_processes(client, rt, make_conf):
    make_policy(client)
    late, other, clean = (make_metric(client) for _ in range(3))
    push(client, clean, T0, T0 + 60)
    push(client, late, T0 + 3000)
    # Older than the back window (0) counted from the newest point.
    assert push(client, late, T0, T0 + 10, T0 + 3060) == {
        "measures_stored": 1,
        "measures_refused": 2,
    }
    push(client, other, T0 + 3000)
    assert push(client, other, T0)["measures_refused"] == 1
    assert push(client, late, T0 + 20)["measures_refused"] == 1

    status = client.get("/v1/status", headers=ADMIN).get_json()
    assert status["storage"] == {
        "summary": {"metrics": 0, "measures": 0},
        "measures_to_process": {},
    }
    assert status["alarmer"]["metrics"] == 3
    refused = status["alarmer"]["refused_late"]
    assert refused["refused_late"] == 4
    assert refused["metrics_with_refusals"] == 2
    assert [(m["metric_id"], m["refused"]) for m in refused["metrics"]] == [
        (late, 3),
        (other, 1),
    ]
    assert refused["metrics"][0]["last_refused_at"].endswith("+00:00")

    # Another process on the same database: its own engine counted
    # nothing, the lasting counts are the same.
    other_rt = runtime.build(
        make_conf(database={"connection": rt.conf.database.connection}),
        migrate=True,
    )
    try:
        api = create_app(other_rt).test_client()
        again = api.get("/v1/status", headers=ADMIN).get_json()
        assert again["engine"]["measures_refused_late"] == 0
        assert again["alarmer"]["refused_late"] == refused
    finally:
        other_rt.close()


def test_refusal_counts_add_up_on_mariadb(mysql_url):
    from alarmer import db
    from alarmer.metrics.index.indexer import Indexer

    database = db.Database(mysql_url)
    try:
        database.upgrade()
        index = Indexer(database)
        index.record_refusals({"m-1": 2, "m-2": 0})
        index.record_refusals({"m-1": 3, "m-3": 1})
        report = index.refusal_report()
        assert report["refused_late"] == 6
        assert report["metrics_with_refusals"] == 2
        assert [(m["metric_id"], m["refused"]) for m in report["metrics"]] == [
            ("m-1", 5),
            ("m-3", 1),
        ]
    finally:
        database.dispose()
