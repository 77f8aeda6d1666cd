"""The one door for writes: store, report refused points, announce."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from alarmer import channel as channel_mod
from alarmer.metrics import ingest
from alarmer.metrics import policy as ap
from alarmer.metrics.series import store as series_mod
from alarmer.metrics.series.drivers import file as file_driver
from tests.functional.series_helpers import ContendedDriver, Recorder

NS = 1_000_000_000
G = 60 * NS
POLICY = ap.ArchivePolicy("p", (ap.PolicyItem(G, 100),), ("count", "max"), 0)


@pytest.fixture
def store(tmp_path):
    built = series_mod.SeriesStore(file_driver.FileDriver(str(tmp_path)))
    yield built
    built.close()


@pytest.fixture
def channel():
    local = channel_mod.LocalChannel()
    recorder = Recorder()
    local.subscribe(recorder)
    return local, recorder


def ref(metric_id):
    return series_mod.MetricRef(metric_id, POLICY)


def points(*seconds):
    return np.array(seconds, dtype=np.int64) * NS, np.ones(len(seconds))


def counts(store, metric_id):
    found = store.get_measures(metric_id, "count", granularity=G)
    return dict(
        zip(
            (found[0].timestamps // NS).tolist(),
            found[0].values.tolist(),
            strict=True,
        )
    )


def test_batch_is_stored_counted_and_announced(store, channel):
    local, heard = channel
    done = ingest.store_batch(
        store,
        local,
        [
            (ref("a"), *points(0, 10, 70)),
            (ref("b"), *points()),  # nothing to store: skipped
            (ref("c"), *points(130)),
        ],
    )
    assert done == ingest.Ingested(stored=4, refused=0, changed=("a", "c"))
    assert heard.ids == ["a", "c"]
    assert counts(store, "a") == {0: 2.0, 60: 1.0}
    assert counts(store, "c") == {120: 1.0}
    assert counts(store, "b") == {}


def test_late_points_are_refused_logged_and_counted(store, channel, caplog):
    local, heard = channel
    ingest.store_measures(store, local, ref("a"), *points(600))
    before = store.statistics()["measures_refused_late"]
    with caplog.at_level(logging.WARNING, logger=ingest.__name__):
        done = ingest.store_measures(store, local, ref("a"), *points(0, 5))
    assert (done.stored, done.refused, done.changed) == (0, 2, ())
    assert store.statistics()["measures_refused_late"] == before + 2
    assert "metric a: 2 late measure(s) refused" in caplog.text
    assert heard.ids == ["a"]  # the first write only
    assert counts(store, "a") == {600: 1.0}


def test_nothing_to_store_touches_nothing(store, channel):
    local, heard = channel
    assert ingest.store_batch(store, local, []) == ingest.NOTHING
    assert ingest.store_measures(store, local, ref("a"), *points()) == (
        ingest.NOTHING
    )
    assert heard.ids == []
    assert store.statistics().get("writes", 0) == 0
    assert counts(store, "a") == {}


def test_write_conflict_is_one_domain_error(store, channel, monkeypatch):
    local, heard = channel
    monkeypatch.setattr(store, "driver", ContendedDriver(store.driver, {"b"}))
    with pytest.raises(ingest.IngestConflict, match="metric b") as excinfo:
        ingest.store_measures(store, local, ref("b"), *points(0))
    assert excinfo.value.metric_ids == ("b",)
    assert heard.ids == []  # a lone metric that was not written
    with pytest.raises(ingest.IngestConflict) as excinfo:
        ingest.store_batch(
            store,
            local,
            [(ref("a"), *points(0)), (ref("b"), *points(0))],
        )
    assert excinfo.value.metric_ids == ("a", "b")
    # "a" may hold its point: every metric of the batch is announced
    assert heard.ids == ["a", "b"]
    assert counts(store, "a") == {0: 1.0}
    assert counts(store, "b") == {}
    assert store.statistics()["write_conflicts"] >= 2 * (
        series_mod.MAX_WRITE_ATTEMPTS
    )
