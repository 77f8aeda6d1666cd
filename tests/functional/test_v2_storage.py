"""Alarm storage: the version fence under a real race, paging in SQL."""

from __future__ import annotations

import sqlalchemy as sa

from alarmer.alarms import store as store_mod
from alarmer.alarms import validation as rules
from alarmer.alarms.tables import Alarm, AlarmHistory

ACTOR = store_mod.Actor("u1", "p1")


def _values(name: str = "a", **extra) -> dict:
    body = {
        "name": name,
        "type": "gnocchi_aggregation_by_metrics_threshold",
        "gnocchi_aggregation_by_metrics_threshold_rule": {
            "metrics": ["m1"],
            "aggregation_method": "mean",
            "threshold": 1,
        },
        **extra,
    }
    values = rules.validate_alarm(body)
    values.setdefault("project_id", "p1")
    values.setdefault("user_id", "u1")
    return values


def _evaluator_transition(rt, alarm_id: str, state: str) -> None:
    with rt.db.session() as session, session.begin():
        version = session.get(Alarm, alarm_id).version
        done = session.execute(
            sa.update(Alarm)
            .where(Alarm.alarm_id == alarm_id, Alarm.version == version)
            .values(state=state, state_reason="evaluated", version=version + 1)
        )
        assert done.rowcount == 1


def test_replace_retries_when_the_evaluator_wins_the_race(rt):
    store = store_mod.AlarmStore(rt.db)
    row = store.create(_values(), ACTOR)
    calls = []

    def build(current):
        calls.append(current["version"])
        if len(calls) == 1:
            # The evaluator commits between our read and our write.
            _evaluator_transition(rt, row["alarm_id"], "alarm")
        return _values("renamed", severity="critical")

    updated = store.replace(row["alarm_id"], build, ACTOR)
    assert calls == [1, 2]
    stored = store.get(row["alarm_id"])
    assert stored["name"] == "renamed" and stored["severity"] == "critical"
    assert stored["state"] == "alarm" and stored["state_reason"] == "evaluated"
    assert stored["version"] == 3 == updated["version"]
    assert stored["evaluate_timestamp"] == row["evaluate_timestamp"]
    assert stored["seq"] == row["seq"]


def test_set_state_is_fenced_and_recorded_once(rt):
    store = store_mod.AlarmStore(rt.db)
    row = store.create(_values(), ACTOR)
    store.set_state(row["alarm_id"], "ok", ACTOR)
    store.set_state(row["alarm_id"], "ok", ACTOR)  # no change, no entry
    stored = store.get(row["alarm_id"])
    assert stored["state"] == "ok" and stored["version"] == 2
    assert stored["state_timestamp"] > row["state_timestamp"]
    with rt.db.session() as session:
        kinds = session.scalars(
            sa.select(AlarmHistory.type).where(
                AlarmHistory.alarm_id == row["alarm_id"]
            )
        ).all()
    assert sorted(kinds) == ["creation", "state transition"]


def test_pages_walk_every_alarm_once_in_every_order(rt):
    store = store_mod.AlarmStore(rt.db)
    for i in range(23):
        store.create(
            _values(f"a{i % 5}", severity=rules.SEVERITIES[i % 3]), ACTOR
        )
    for sort in (
        [],
        [("severity", "desc")],
        [("name", "asc"), ("severity", "desc")],
        [("name", "desc"), ("timestamp", "asc")],
    ):
        seen, marker = [], None
        while True:
            page = store.list(
                filters={"project_id": "p1"}, sort=sort, limit=4, marker=marker
            )
            seen += page
            if len(page) < 4:
                break
            marker = page[-1]["alarm_id"]
        whole = store.list(filters={"project_id": "p1"}, sort=sort)
        assert [r["alarm_id"] for r in seen] == [r["alarm_id"] for r in whole]
        assert len({r["alarm_id"] for r in seen}) == 23
