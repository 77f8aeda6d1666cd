"""The service's read path selects exactly the buckets of Aodh's window.

The expected points come from an independent model of the window Aodh's
Gnocchi evaluator reads (written here from its definition, not from the
code under test): ``start = now - granularity * (evaluation_periods + 1)
- additional_ingestion_lag``, ``stop = now``; Gnocchi rounds ``start``
down to the granularity and leaves out the bucket starting at ``stop``;
a cross-metric read aggregates, at each timestamp, the metrics that have
a bucket there; the last ``evaluation_periods`` points are assessed.

Generated cases mix buckets stamped after "now" (a client clock ahead),
sparse series and "now" exactly on a bucket edge, for the three
threshold types and for composite rules, through both read paths of the
service: one alarm at a time and the batched read of a tick.
"""

from __future__ import annotations

import random
import statistics
import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from alarmer import runtime
from alarmer.alarms.tables import Alarm
from alarmer.evaluator import decide, evaluate
from alarmer.evaluator.service import EvaluatorService
from alarmer.metrics import policy as ap
from alarmer.metrics.index import Caller
from alarmer.metrics.series import store as series_mod

NS = 1_000_000_000
G = 60
OWNER = {"user_id": "u1", "project_id": "p1"}
THRESHOLD = 50.0
#: An instant on a bucket edge of G (the generated "now"s are around it).
EDGE = 1_800_000_000 // G * G * NS


# -- the independent model ----------------------------------------------------


def model_points(
    buckets: list[dict[int, float]],
    *,
    now_ns: int,
    periods: int,
    lag_s: float = 0.0,
) -> list[float]:
    """The points Aodh assesses: *buckets* is one {start ns: value} per
    metric (one metric: its own series; several: their mean)."""
    gran = G * NS
    start = now_ns - gran * (periods + 1) - round(lag_s * NS)
    start -= start % gran
    columns: dict[int, list[float]] = {}
    for series in buckets:
        for stamp, value in series.items():
            if start <= stamp < now_ns:
                columns.setdefault(stamp, []).append(value)
    points = [statistics.fmean(columns[t]) for t in sorted(columns)]
    return points[-periods:]


# -- fixtures ------------------------------------------------------------


@pytest.fixture
def world(make_conf):
    conf = make_conf(coordination={"backend_url": "none"})
    rt = runtime.build(conf, migrate=True)
    rt.index.create_archive_policy(
        ap.ArchivePolicy(
            "window", (ap.PolicyItem(G * NS, 100_000),), ("mean",)
        )
    )
    try:
        yield rt
    finally:
        rt.close()


def make_resources(rt, count: int, group: str) -> list[tuple[str, str]]:
    """*count* resources named by UUID, each with a metric ``cpu``."""
    resource_ids = [str(uuid.uuid4()) for _ in range(count)]
    with rt.db.session() as session, session.begin():
        rt.index.import_resources(
            session,
            rt.index.get_type(session, "generic"),
            [{"id": rid, "user_id": group} for rid in resource_ids],
            Caller(OWNER["user_id"], OWNER["project_id"]),
        )
    made = []
    for resource_id in resource_ids:
        info = rt.index.create_metric(
            archive_policy_name="window",
            name="cpu",
            resource_id=resource_id,
            **OWNER,
        )
        made.append((resource_id, info.id))
    return made


def write(rt, metric_id: str, series: dict[int, float]) -> None:
    if not series:
        return
    policy = rt.index.get_archive_policy("window")
    stamps = sorted(series)
    rt.series.add_measures(
        series_mod.MetricRef(metric_id, policy),
        # One point inside each bucket: the bucket's mean is its value.
        np.array([t + 7 * NS for t in stamps], dtype=np.int64),
        np.array([series[t] for t in stamps], dtype=np.float64),
    )


def insert_alarm(rt, alarm_type: str, rule: dict, state: str) -> str:
    alarm_id = str(uuid.uuid4())
    with rt.db.session() as session:
        session.execute(
            sa.insert(Alarm),
            [
                {
                    "alarm_id": alarm_id,
                    "name": "window",
                    "description": "",
                    "type": alarm_type,
                    "rule": rule,
                    "enabled": True,
                    "state": state,
                    "state_reason": "Not evaluated yet",
                    "severity": "low",
                    "ok_actions": [],
                    "alarm_actions": [],
                    "insufficient_data_actions": [],
                    "repeat_actions": False,
                    "time_constraints": [],
                    **OWNER,
                }
            ],
        )
        session.commit()
    return alarm_id


def threshold_rule(periods: int, **fields) -> dict:
    return {
        "aggregation_method": "mean",
        "threshold": THRESHOLD,
        "comparison_operator": "gt",
        "granularity": G,
        "evaluation_periods": periods,
        **fields,
    }


def random_series(rnd: random.Random, now_ns: int) -> dict[int, float]:
    """Sparse buckets around *now_ns*, some stamped after it."""
    gran = G * NS
    current = now_ns - now_ns % gran
    series: dict[int, float] = {}
    for k in range(-12, 6):
        if rnd.random() < 0.55:
            value = rnd.choice((10.0, 40.0, 60.0, 90.0))
            series[current + k * gran] = value
    return series


def random_now(rnd: random.Random, case: int) -> int:
    """On a bucket edge, just after or before one, or anywhere."""
    base = EDGE + case * 40 * G * NS
    return base + rnd.choice((0, 1, G * NS - 1, rnd.randrange(G * NS)))


# -- the cases -----------------------------------------------------------


class Case:
    """One alarm with its data and the points the model expects."""

    def __init__(self, alarm_id: str, now_ns: int, expected) -> None:
        self.alarm_id = alarm_id
        self.now_ns = now_ns
        #: sub-rule index -> expected points
        self.expected = expected


def build_cases(rt, rnd: random.Random, count: int) -> list[Case]:
    cases: list[Case] = []
    states = ("ok", "alarm", "insufficient data")
    for i in range(count):
        kind = i % 4
        now_ns = random_now(rnd, i)
        periods = rnd.randint(1, 4)
        state = rnd.choice(states)
        if kind == 0:  # gnocchi_resources_threshold
            ((resource_id, metric_id),) = make_resources(rt, 1, f"r{i}")
            series = random_series(rnd, now_ns)
            write(rt, metric_id, series)
            rule = threshold_rule(
                periods,
                metric="cpu",
                resource_id=resource_id,
                resource_type="generic",
            )
            alarm_type = "gnocchi_resources_threshold"
            expected = {0: ([series], periods)}
        elif kind == 1:  # by-metrics
            made = make_resources(rt, 3, f"m{i}")
            series_list = [random_series(rnd, now_ns) for _ in made]
            for (_, metric_id), series in zip(made, series_list, strict=True):
                write(rt, metric_id, series)
            rule = threshold_rule(periods, metrics=[m for _, m in made])
            alarm_type = "gnocchi_aggregation_by_metrics_threshold"
            expected = {0: (series_list, periods)}
        elif kind == 2:  # by-resources
            group = f"g{i}"
            made = make_resources(rt, 3, group)
            series_list = [random_series(rnd, now_ns) for _ in made]
            for (_, metric_id), series in zip(made, series_list, strict=True):
                write(rt, metric_id, series)
            rule = threshold_rule(
                periods,
                metric="cpu",
                resource_type="generic",
                query=f'{{"=": {{"user_id": "{group}"}}}}',
            )
            alarm_type = "gnocchi_aggregation_by_resources_threshold"
            expected = {0: (series_list, periods)}
        else:  # composite: or(by-metrics A, and(resources B, resources C))
            made = make_resources(rt, 4, f"c{i}")
            series_list = [random_series(rnd, now_ns) for _ in made]
            for (_, metric_id), series in zip(made, series_list, strict=True):
                write(rt, metric_id, series)
            p = [rnd.randint(1, 3) for _ in range(3)]
            sub_a = {
                "type": "gnocchi_aggregation_by_metrics_threshold",
                **threshold_rule(p[0], metrics=[made[0][1], made[1][1]]),
            }
            sub_b = {
                "type": "gnocchi_resources_threshold",
                **threshold_rule(
                    p[1],
                    metric="cpu",
                    resource_id=made[2][0],
                    resource_type="generic",
                ),
            }
            sub_c = {
                "type": "gnocchi_resources_threshold",
                **threshold_rule(
                    p[2],
                    metric="cpu",
                    resource_id=made[3][0],
                    resource_type="generic",
                ),
            }
            rule = {"or": [sub_a, {"and": [sub_b, sub_c]}]}
            alarm_type = "composite"
            expected = {
                0: (series_list[:2], p[0]),
                1: ([series_list[2]], p[1]),
                2: ([series_list[3]], p[2]),
            }
        alarm_id = insert_alarm(rt, alarm_type, rule, state)
        cases.append(Case(alarm_id, now_ns, expected))
    return cases


def expected_decision(alarm, case: Case):
    """The decision from the model's points (Aodh's rules on them)."""

    def assess(index, kind, rule):
        buckets, periods = case.expected[index]
        points = model_points(buckets, now_ns=case.now_ns, periods=periods)
        return decide.assess(
            points,
            threshold=THRESHOLD,
            comparison_operator="gt",
            evaluation_periods=periods,
            granularity=G,
        )

    return evaluate.evaluate(alarm, assess)


@pytest.fixture
def loaded(world):
    rnd = random.Random(20261203)
    cases = build_cases(world, rnd, 96)
    service = EvaluatorService(world)
    service.membership.start()
    service._control_step(force=True)
    assert len(service.registry) == len(cases)
    try:
        yield world, service, cases
    finally:
        service.membership.stop()


def test_one_by_one_read_matches_the_window_model(loaded):
    _, service, cases = loaded
    mismatches = []
    for case in cases:
        alarm = service.registry.get(case.alarm_id)
        got = service.decide(alarm, case.now_ns)
        want = expected_decision(alarm, case)
        if got != want:
            mismatches.append((alarm.type, case.now_ns, got, want))
    assert not mismatches, mismatches[:3]


def test_batched_read_matches_the_window_model(loaded):
    _, service, cases = loaded
    by_now: dict[int, list[Case]] = {}
    for case in cases:
        by_now.setdefault(case.now_ns, []).append(case)
    # Every case again, read together with the other cases of its
    # instant, then all cases at one instant (one engine call per group).
    mismatches = []
    for now_ns, group in by_now.items():
        alarms = [service.registry.get(c.alarm_id) for c in group]
        got = service.decide_many(alarms, now_ns)
        for case, alarm, decision in zip(group, alarms, got, strict=True):
            want = expected_decision(alarm, case)
            if decision != want:
                mismatches.append((alarm.type, now_ns, decision, want))
    assert not mismatches, mismatches[:3]
    now_ns = cases[0].now_ns
    alarms = [service.registry.get(c.alarm_id) for c in cases]
    got = service.decide_many(alarms, now_ns)
    for case, alarm, decision in zip(cases, alarms, got, strict=True):
        shifted = Case(case.alarm_id, now_ns, case.expected)
        assert decision == expected_decision(alarm, shifted), alarm.type


def test_future_buckets_do_not_push_valid_ones_out(world):
    """Three valid points and many later buckets: Aodh keeps judging on
    the valid ones; reading the newest buckets would find none."""
    now_ns = EDGE + 25 * NS
    gran = G * NS
    current = now_ns - now_ns % gran
    ((resource_id, metric_id),) = make_resources(world, 1, "future")
    series = {current - k * gran: 90.0 for k in range(3)}
    series.update({current + k * gran: 10.0 for k in range(1, 9)})
    write(world, metric_id, series)
    alarm_id = insert_alarm(
        world,
        "gnocchi_resources_threshold",
        threshold_rule(
            3, metric="cpu", resource_id=resource_id, resource_type="generic"
        ),
        "ok",
    )
    service = EvaluatorService(world)
    service.membership.start()
    try:
        service._control_step(force=True)
        alarm = service.registry.get(alarm_id)
        for decision in (
            service.decide(alarm, now_ns),
            service.decide_many([alarm], now_ns)[0],
        ):
            assert (decision.action, decision.state) == ("transition", "alarm")
            assert decision.reason_data["count"] == 3
            assert decision.reason_data["most_recent"] == 90.0
    finally:
        service.membership.stop()


def test_composite_blames_the_sub_rule_the_window_says(world):
    """A future bucket in one sub-rule's metric must not make that
    sub-rule insufficient and flip which sub-rule the reason names."""
    now_ns = EDGE + 10 * NS
    gran = G * NS
    current = now_ns - now_ns % gran
    (a, b) = make_resources(world, 2, "blame")
    # A breaches now; its later (future) buckets are low.
    write(
        world,
        a[1],
        {
            current - gran: 95.0,
            current: 95.0,
            **{current + k * gran: 5.0 for k in range(1, 6)},
        },
    )
    # B is low in its window.
    write(world, b[1], {current - gran: 5.0, current: 5.0})
    sub_a = {
        "type": "gnocchi_resources_threshold",
        **threshold_rule(
            2, metric="cpu", resource_id=a[0], resource_type="generic"
        ),
    }
    sub_b = {
        "type": "gnocchi_resources_threshold",
        **threshold_rule(
            2, metric="cpu", resource_id=b[0], resource_type="generic"
        ),
    }
    alarm_id = insert_alarm(world, "composite", {"or": [sub_b, sub_a]}, "ok")
    service = EvaluatorService(world)
    service.membership.start()
    try:
        service._control_step(force=True)
        alarm = service.registry.get(alarm_id)
        decision = service.decide(alarm, now_ns)
        assert decision.state == "alarm", decision
        # Aodh names the true sub-rule(s); rule2 is sub_a here.
        assert set(decision.reason_data["causative_rules"]) == {"rule2"}
        assert decision.reason.endswith(
            "due to rules: rule2 outside their threshold."
        )
        assert decision == service.decide_many([alarm], now_ns)[0]
    finally:
        service.membership.stop()
