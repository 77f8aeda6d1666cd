"""The metric channel across processes: Redis pub/sub."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from alarmer import channel as channel_mod
from alarmer.alarms.tables import Alarm
from alarmer.metrics.series import store as series_mod
from tests.functional.test_evaluator_faults import (
    setup_db,
    start_worker,
    stop_all,
    wait_for,
    write_conf,
)


def test_redis_channel_round_trip(redis_url):
    name = f"alarmer-test-{uuid.uuid4().hex[:8]}"
    receiver = channel_mod.RedisChannel(redis_url, name=name)
    sender = channel_mod.RedisChannel(redis_url, name=name)
    got: list[list[str]] = []
    event = threading.Event()

    def callback(ids):
        got.append(ids)
        event.set()

    try:
        receiver.subscribe(callback)
        sender.publish(["m1", "m2"])
        assert event.wait(5)
        assert got == [["m1", "m2"]]
        receiver.unsubscribe(callback)
        event.clear()
        sender.publish(["m3"])
        assert not event.wait(0.3)
    finally:
        receiver.close()
        sender.close()


def test_make_channel_follows_the_configuration(make_conf, redis_url):
    assert isinstance(
        channel_mod.make_channel(make_conf()), channel_mod.LocalChannel
    )
    conf = make_conf(coordination={"backend_url": f"{redis_url}?timeout=5"})
    assert channel_mod.channel_url(conf) == redis_url
    made = channel_mod.make_channel(conf)
    try:
        assert isinstance(made, channel_mod.RedisChannel)
    finally:
        made.close()
    conf = make_conf(
        coordination={"backend_url": redis_url},
        evaluator={"metric_channel": "local"},
    )
    assert isinstance(channel_mod.make_channel(conf), channel_mod.LocalChannel)
    with pytest.raises(ValueError, match="metric_channel"):
        channel_mod.make_channel(
            make_conf(evaluator={"metric_channel": "amqp://x"})
        )


def test_event_reaches_an_evaluator_in_another_process(tmp_path, redis_url):
    namespace = f"alarmer-test-{uuid.uuid4().hex[:8]}"
    backend = f"{redis_url.rsplit('/', 1)[0]}?namespace={namespace}"
    conf_path = write_conf(tmp_path, backend)
    text = (
        conf_path.read_text()
        .replace("evaluation_interval = 2", "evaluation_interval = 3600")
        .replace("metric_channel = local", f"metric_channel = {redis_url}")
    )
    conf_path.write_text(text)
    rt, _ = setup_db(conf_path, 0)
    index = rt.index
    metric = index.create_metric(
        archive_policy_name="high", user_id="u1", project_id="p1"
    )
    with rt.db.session() as session:
        session.add(
            Alarm(
                alarm_id=str(uuid.uuid4()),
                name="remote",
                type="gnocchi_aggregation_by_metrics_threshold",
                rule={
                    "metrics": [metric.id],
                    "aggregation_method": "mean",
                    "threshold": 50,
                    "comparison_operator": "gt",
                    "granularity": 1,
                    "evaluation_periods": 2,
                },
                state="ok",
                ok_actions=[],
                alarm_actions=["log://"],
                insufficient_data_actions=[],
                time_constraints=[],
                project_id="p1",
                user_id="u1",
            )
        )
        session.commit()
    worker = start_worker(conf_path, tmp_path / "worker.log")
    publisher = channel_mod.make_channel(rt.conf)
    assert isinstance(publisher, channel_mod.RedisChannel)
    try:
        wait_for(
            lambda: (
                "evaluator started" in (tmp_path / "worker.log").read_text()
            ),
            30,
        )
        # As the API does: store the measures, then announce the metric.
        now = time.time_ns() // 1_000_000_000
        stamps = np.array(
            [(now - k) * 1_000_000_000 for k in (3, 2, 1, 0)], dtype=np.int64
        )
        rt.series.add_measures(
            series_mod.MetricRef(metric.id, metric.archive_policy),
            stamps,
            np.full(4, 99.0),
        )
        t0 = time.monotonic()
        publisher.publish([metric.id])

        def state():
            with rt.db.read_session() as session:
                return session.scalar(sa.select(Alarm.state))

        wait_for(lambda: state() == "alarm", 5, step=0.01)
        assert time.monotonic() - t0 < 2.0
    finally:
        stop_all([worker])
        publisher.close()
        rt.close()
