"""``GET /metrics``: every counter moves with the action that drives it.

A real API server, evaluator and notifier in one process; the scrape is
read with prometheus-client's own text parser.  The multi-process mode
is checked with two real processes writing into one directory.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from alarmer import logformat
from alarmer.evaluator.service import EvaluatorService
from notifiers.service import NotifierService
from tests.functional.notifier_helpers import Receiver, wait_for

H = {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "member"}
RULE_TYPE = "gnocchi_aggregation_by_metrics_threshold"

pytestmark = pytest.mark.slow


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` by (name, sorted labels)."""
    r = requests.get(f"{base}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    """Sum of the samples of *name* whose labels include *labels*."""
    return sum(
        v
        for (n, lab), v in samples.items()
        if n == name and all(dict(lab).get(k) == x for k, x in labels.items())
    )


def test_counters_follow_measures_evaluations_and_deliveries(
    live_api, sqlite_rt
):
    conf = sqlite_rt.conf
    conf.set_override("allowed_networks", ["127.0.0.0/8"], group="notifier")
    conf.set_override("refresh_interval", 0.05, group="evaluator")
    conf.set_override("check_interval", 0.05, group="coordination")
    conf.set_override("metrics_count_max_age", 0, group="api")
    before = scrape(live_api)
    assert value(before, "alarmer_measures_ingested_total") == 0
    receiver = Receiver()
    evaluator = EvaluatorService(sqlite_rt)
    notifier = NotifierService(sqlite_rt)
    evaluator.start()
    notifier.start()
    try:
        r = requests.post(
            f"{live_api}/v1/metric",
            json={"archive_policy_name": "high"},
            headers=H,
        )
        assert r.status_code == 201, r.text
        metric_id = r.json()["id"]
        hook = receiver.url(f"/m/{uuid.uuid4()}")
        r = requests.post(
            f"{live_api}/v2/alarms",
            json={
                "name": "cpu-high",
                "type": RULE_TYPE,
                "alarm_actions": [hook],
                f"{RULE_TYPE}_rule": {
                    "metrics": [metric_id],
                    "aggregation_method": "mean",
                    "threshold": 50,
                    "comparison_operator": "gt",
                    "granularity": 1,
                    "evaluation_periods": 3,
                },
            },
            headers=H,
        )
        assert r.status_code == 201, r.text
        alarm_id = r.json()["alarm_id"]
        wait_for(lambda: alarm_id in evaluator.owned())
        end = int(time.time()) + 1
        r = requests.post(
            f"{live_api}/v1/metric/{metric_id}/measures",
            json=[{"timestamp": end - i, "value": 90} for i in range(4)],
            headers=H,
        )
        assert r.status_code == 202, r.text
        wait_for(lambda: receiver.bodies(), timeout=15)
        wait_for(
            lambda: (
                value(
                    scrape(live_api),
                    "alarmer_deliveries_total",
                    outcome="delivered",
                )
                == 1
            ),
            timeout=10,
        )
        # A point far older than the "high" policy keeps: refused.
        r = requests.post(
            f"{live_api}/v1/metric/{metric_id}/measures",
            json=[{"timestamp": "2001-01-01T00:00:00Z", "value": 1}],
            headers=H,
        )
        assert r.status_code == 202, r.text
        refused = r.json()["measures_refused"]
        evaluator.report()
        # The database gauges are read in the background of a scrape:
        # the one after shows the transition.
        wait_for(
            lambda: (
                value(scrape(live_api), "alarmer_alarms", state="alarm") == 1
            )
        )
        after = scrape(live_api)
    finally:
        notifier.stop()
        evaluator.stop()
        receiver.stop()
    assert value(after, "alarmer_measures_ingested_total") == 4
    assert value(after, "alarmer_measures_refused_total") == refused == 1
    assert (
        value(
            after,
            "alarmer_evaluations_total",
            type=RULE_TYPE,
            outcome="transition",
        )
        >= 1
    )
    assert value(after, "alarmer_evaluations_total", trigger="event") >= 1
    assert value(after, "alarmer_alarm_transitions_total", state="alarm") == 1
    assert value(
        after,
        "alarmer_evaluation_duration_seconds_count",
        type=RULE_TYPE,
    ) == value(after, "alarmer_evaluations_total", type=RULE_TYPE)
    assert (
        value(
            after,
            "alarmer_delivery_attempt_duration_seconds_count",
            scheme="http",
        )
        == 1
    )
    assert value(after, "alarmer_evaluator_owned_alarms") == 1
    assert value(after, "alarmer_coordination_members") == 1
    assert value(after, "alarmer_alarms", state="alarm", enabled="true") == 1
    assert value(after, "alarmer_dead_letters") == 0
    assert value(after, "alarmer_delivery_queue_depth") == 0
    # Requests by route template: no metric id in any label.
    assert (
        value(
            after,
            "alarmer_api_requests_total",
            method="POST",
            route="/v1/metric/<metric_id>/measures",
            status="202",
        )
        == 2
    )
    assert not any(metric_id in str(lab) for (_, lab) in after)
    assert (
        value(
            after,
            "alarmer_api_request_duration_seconds_count",
            route="/metrics",
        )
        >= 2
    )


def test_unmatched_routes_share_one_label(live_api):
    for i in range(3):
        assert requests.get(f"{live_api}/nowhere/{i}").status_code == 404
    samples = scrape(live_api)
    assert (
        value(
            samples,
            "alarmer_api_requests_total",
            route="unmatched",
            status="404",
        )
        == 3
    )
    assert not any("nowhere" in str(lab) for (_, lab) in samples)


def test_request_id_is_kept_answered_and_logged(live_api, caplog):
    caplog.set_level(logging.INFO, logger="alarmer.api.access")
    mine = f"req-{uuid.uuid4()}"
    r = requests.get(
        f"{live_api}/v2/alarms",
        headers={**H, "X-Openstack-Request-Id": mine},
    )
    assert r.status_code == 200
    assert r.headers["X-Openstack-Request-Id"] == mine
    # A malformed one is replaced, never echoed.
    r = requests.get(
        f"{live_api}/v2/alarms",
        headers={**H, "X-Openstack-Request-Id": "req-<script>"},
    )
    fresh = r.headers["X-Openstack-Request-Id"]
    assert fresh.startswith("req-") and fresh != mine
    wait_for(
        lambda: any(
            getattr(rec, "request_id", None) == fresh for rec in caplog.records
        )
    )
    line = next(
        rec
        for rec in caplog.records
        if getattr(rec, "request_id", None) == mine
    ).getMessage()
    assert "GET /v2/alarms 200" in line
    assert "project=p1" in line


def test_queue_depth_warnings_are_summarised():
    limit = logformat.RateLimit(interval=3600)
    records = [
        logging.LogRecord(
            "waitress.queue",
            logging.WARNING,
            "",
            0,
            "Task queue depth is %d",
            (n,),
            None,
        )
        for n in range(1, 501)
    ]
    passed = [r for r in records if limit.filter(r)]
    assert len(passed) == 1
    assert limit.suppressed == 499


def test_json_log_lines_carry_request_id_and_context():
    import json

    formatter = logformat.JSONFormatter()
    record = logging.LogRecord(
        "alarmer.evaluator.service",
        logging.WARNING,
        "",
        0,
        "alarm %s: slow",
        ("a1",),
        None,
    )
    record.request_id = "-"
    record.alarm_id = "a1"
    doc = json.loads(formatter.format(record))
    assert doc["message"] == "alarm a1: slow"
    assert doc["alarm_id"] == "a1"
    assert doc["level"] == "WARNING"
    assert doc["time"].endswith("+00:00")


CHILD = textwrap.dedent(
    """
    import os
    import sys
    # As under a supervisor: the modules are loaded before the directory
    # is exported (then the children fork).
    shared = os.environ.pop("PROMETHEUS_MULTIPROC_DIR")
    from alarmer.telemetry import Telemetry
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    tel = Telemetry()
    assert tel.multiprocess
    for _ in range(int(sys.argv[1])):
        tel.transitioned("alarm")
    tel.delivered("delivered")
    """
)


def test_multiprocess_values_are_summed_across_processes(tmp_path):
    shared = tmp_path / "prom"
    shared.mkdir()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    for count in (2, 3):
        subprocess.run(
            [sys.executable, "-c", CHILD, str(count)],
            env=env,
            check=True,
            timeout=60,
        )
    # The reader (an API process) sees both writers.
    reader = subprocess.run(
        [
            sys.executable,
            "-c",
            "from alarmer.telemetry import Telemetry;"
            "import sys; sys.stdout.write(Telemetry().render().decode())",
        ],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reader.stdout)
        for s in family.samples
    }
    assert (
        samples[("alarmer_alarm_transitions_total", (("state", "alarm"),))]
        == 5
    )
    assert (
        samples[("alarmer_deliveries_total", (("outcome", "delivered"),))] == 2
    )


BUSY_CHILD = textwrap.dedent(
    """
    import os
    import sys
    shared = os.environ.pop("PROMETHEUS_MULTIPROC_DIR")
    from alarmer.telemetry import Telemetry
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    tel = Telemetry()
    n = int(sys.argv[1])
    for i in range(n):
        tel.evaluated("threshold", "unchanged", i % 2 == 0, 0.001 * i)
        tel.request("GET", '/v2/alarms/<alarm_id>', 200, 0.002 * i)
    tel.delivery("delivered", "http", [0.03, 7.0])
    tel.delivery("retry", "log", [])
    tel.ingested(n, 1)
    tel.owned_alarms.set(n)
    tel.members.set(n)
    """
)

#: The reference rendering: prometheus-client's own collector.
REFERENCE = (
    "import sys;"
    "from prometheus_client import CollectorRegistry, generate_latest;"
    "from prometheus_client.multiprocess import MultiProcessCollector;"
    "r = CollectorRegistry(); MultiProcessCollector(r);"
    "sys.stdout.write(generate_latest(r).decode())"
)


def _families(text: str) -> dict:
    return {
        f.name: (
            f.type,
            f.documentation,
            sorted(
                (s.name, tuple(sorted(s.labels.items())), s.value)
                for s in f.samples
            ),
        )
        for f in text_string_to_metric_families(text)
    }


def test_multiprocess_rendering_matches_prometheus_client(tmp_path):
    shared = tmp_path / "prom"
    shared.mkdir()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    for count in (3, 5):
        subprocess.run(
            [sys.executable, "-c", BUSY_CHILD, str(count)],
            env=env,
            check=True,
            timeout=60,
        )

    def run(code: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
        ).stdout

    ours = _families(
        run(
            "from alarmer.telemetry import Telemetry;"
            "import sys; sys.stdout.write(Telemetry().render().decode())"
        )
    )
    assert ours == _families(run(REFERENCE))
    # Values read back: 8 evaluations, 2 deliveries' 3 attempts.
    kind, _, samples = ours["alarmer_evaluations"]
    assert kind == "counter"
    assert sum(v for n, _, v in samples if n.endswith("_total")) == 8
    _, _, attempts = ours["alarmer_delivery_attempt_duration_seconds"]
    by = {(n, dict(lab).get("le")): v for n, lab, v in attempts}
    assert by[("alarmer_delivery_attempt_duration_seconds_count", None)] == 4
    assert (
        by[("alarmer_delivery_attempt_duration_seconds_bucket", "0.05")] == 2
    )
    _, _, members = ours["alarmer_coordination_members"]
    assert [v for _, _, v in members] == [5]


def _metrics_alarm(base: str, metric_id: str, headers: dict) -> str:
    r = requests.post(
        f"{base}/v2/alarms",
        json={
            "name": "counted",
            "type": RULE_TYPE,
            f"{RULE_TYPE}_rule": {
                "metrics": [metric_id],
                "aggregation_method": "mean",
                "threshold": 50,
                "comparison_operator": "gt",
                "granularity": 1,
                "evaluation_periods": 1,
            },
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return r.json()["alarm_id"]


def test_v2_metrics_is_forbidden_unless_enabled(live_api):
    r = requests.get(f"{live_api}/v2/metrics", headers=H)
    assert r.status_code == 403
    assert "metrics endpoint is disabled" in r.text


def test_v2_metrics_counts_evaluation_results(live_api, sqlite_rt):
    conf = sqlite_rt.conf
    conf.set_override("enable_evaluation_results_metrics", True)
    conf.set_override("refresh_interval", 0.05, group="evaluator")
    conf.set_override("check_interval", 0.05, group="coordination")
    r = requests.post(
        f"{live_api}/v1/metric",
        json={"archive_policy_name": "high"},
        headers=H,
    )
    metric_id = r.json()["id"]
    alarm_id = _metrics_alarm(live_api, metric_id, H)
    evaluator = EvaluatorService(sqlite_rt)
    evaluator.start()
    try:
        wait_for(lambda: alarm_id in evaluator.owned())
        for _ in range(3):
            end = int(time.time()) + 1
            requests.post(
                f"{live_api}/v1/metric/{metric_id}/measures",
                json=[{"timestamp": end - i, "value": 90} for i in range(3)],
                headers=H,
            )
            time.sleep(0.3)
        wait_for(
            lambda: (
                requests.get(
                    f"{live_api}/v2/alarms/{alarm_id}", headers=H
                ).json()["state"]
                == "alarm"
            )
        )
    finally:
        evaluator.stop()  # flushes what it counted
    per_type = value(
        scrape(live_api), "alarmer_evaluations_total", type=RULE_TYPE
    )
    skipped = value(
        scrape(live_api),
        "alarmer_evaluations_total",
        type=RULE_TYPE,
        outcome="skipped",
    )
    r = requests.get(f"{live_api}/v2/metrics", headers=H)
    assert r.status_code == 200, r.text
    (entry,) = r.json()["evaluation_results"]
    assert entry["alarm_id"] == alarm_id
    assert entry["project_id"] == "p1"
    counters = entry["state_counters"]
    assert set(counters) == {"ok", "alarm", "insufficient data"}
    assert counters["alarm"] >= 1
    # The same evaluations as the Prometheus counter.
    assert sum(counters.values()) == per_type - skipped
    # Another project sees none of them; all_projects is for admins.
    other = {"X-User-Id": "u9", "X-Project-Id": "p9", "X-Roles": "reader"}
    r = requests.get(f"{live_api}/v2/metrics", headers=other)
    assert r.json() == {"evaluation_results": []}
    r = requests.get(f"{live_api}/v2/metrics?all_projects=true", headers=other)
    assert r.status_code == 403
    admin = {"X-User-Id": "a", "X-Project-Id": "p9", "X-Roles": "admin"}
    r = requests.get(f"{live_api}/v2/metrics?all_projects=true", headers=admin)
    assert [e["alarm_id"] for e in r.json()["evaluation_results"]] == [
        alarm_id
    ]
    # A deleted alarm is no longer listed.
    assert (
        requests.delete(
            f"{live_api}/v2/alarms/{alarm_id}", headers=H
        ).status_code
        == 204
    )
    r = requests.get(f"{live_api}/v2/metrics", headers=H)
    assert r.json() == {"evaluation_results": []}


def test_grafana_dashboard_reads_only_metrics_alarmer_serves(
    live_api, sqlite_rt
):
    import json
    import re

    tel = sqlite_rt.telemetry
    # One of each labelled series, so that every name is rendered.
    tel.evaluated(RULE_TYPE, "unchanged", True, 0.001)
    tel.transitioned("alarm")
    tel.delivered("delivered")
    tel.attempt("http", 0.01)
    tel.cache_seen(1, 1, 1)
    tel.schedule_lag.observe(0.1)
    assert requests.get(f"{live_api}/v2/alarms", headers=H).ok
    served = {name for name, _ in scrape(live_api)}
    here = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    path = os.path.join(here, "etc", "grafana", "alarmer.json")
    with open(path, encoding="utf-8") as f:
        dashboard = json.load(f)
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used.update(re.findall(r"\balarmer_[a-z_]+", target["expr"]))
    assert used, "the dashboard reads no metric"
    assert used - served == set()


def test_one_file_exposition_follows_values_entries_and_files(tmp_path):
    """One reader across scrapes, as an API process keeps it: a value
    moved in place, an entry appended, a process's file added and one
    removed are each rendered as prometheus-client renders the files."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    from prometheus_client.multiprocess import MultiProcessCollector

    from alarmer.telemetry import FileExposition

    def reference() -> str:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(tmp_path))
        return generate_latest(registry).decode()

    files = FileExposition(str(tmp_path))

    def same() -> dict:
        ours = _families(files.render().decode())
        assert ours == _families(reference())
        return ours

    def count(kind: str) -> str:
        return mmap_key("alarmer_x", "alarmer_x_total", ["kind"], [kind], "X.")

    def bucket(le: str) -> str:
        return mmap_key("alarmer_h", "alarmer_h_bucket", ["le"], [le], "H.")

    total = mmap_key("alarmer_h", "alarmer_h_sum", [], [], "H.")
    members = mmap_key("alarmer_m", "alarmer_m", [], [], "M.")
    opened = []

    def open_file(name: str) -> MmapedDict:
        opened.append(MmapedDict(str(tmp_path / name)))
        return opened[-1]

    try:
        first = open_file("counter_101.db")
        first.write_value(count("a"), 1.0, 0.0)
        hist = open_file("histogram_101.db")
        for le, n in (("0.1", 1.0), ("1.0", 0.0), ("+Inf", 2.0)):
            hist.write_value(bucket(le), n, 0.0)
        hist.write_value(total, 7.5, 0.0)
        top = open_file("gauge_livemax_101.db")
        top.write_value(members, 2.0, 0.0)
        same()
        first.write_value(count("a"), 2.5, 0.0)
        hist.write_value(bucket("1.0"), 4.0, 0.0)
        got = same()
        assert ("alarmer_x_total", (("kind", "a"),), 2.5) in got["alarmer_x"][
            2
        ]
        assert (
            "alarmer_h_bucket",
            (("le", "1.0"),),
            5.0,
        ) in got["alarmer_h"][2]
        first.write_value(count("b"), 4.0, 0.0)
        same()
        second = open_file("counter_102.db")
        second.write_value(count("a"), 3.0, 0.0)
        other = open_file("gauge_livemax_102.db")
        other.write_value(members, 5.0, 0.0)
        got = same()
        assert ("alarmer_x_total", (("kind", "a"),), 5.5) in got["alarmer_x"][
            2
        ]
        assert got["alarmer_m"][2] == [("alarmer_m", (), 5.0)]
        other.write_value(members, 1.0, 0.0)
        assert same()["alarmer_m"][2] == [("alarmer_m", (), 2.0)]
        second.close()
        os.remove(tmp_path / "counter_102.db")
        got = same()
        assert ("alarmer_x_total", (("kind", "a"),), 2.5) in got["alarmer_x"][
            2
        ]
    finally:
        for f in opened:
            f.close()


def test_counts_are_exact_while_threads_record_and_flushes_run():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from alarmer.telemetry import Telemetry

    tel = Telemetry(multiprocess=False)
    threads, per_thread = 4, 20_000
    # Bounds, values between them and values beyond the last one.
    durations = [0.005, 0.0051, 0.0, 30.0, 31.0, 0.25, 1e-9]
    started = threading.Barrier(threads + 1)

    def record(index: int) -> None:
        # The deliverer's way (a recorder) and the general one.
        once = tel.delivery_recorder("delivered", "log")
        started.wait()
        for i in range(per_thread):
            seconds = durations[(i + index) % len(durations)]
            if i % 3:
                once(seconds)
            else:
                tel.delivery("retry", "log", [seconds])
            tel.evaluated(RULE_TYPE, "unchanged", i % 2 == 0, 0.001)

    workers = [
        threading.Thread(target=record, args=(n,)) for n in range(threads)
    ]
    # Threads switch as often as the interpreter allows: a recording
    # lands between any two steps of a flush.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for worker in workers:
            worker.start()
        started.wait()
        flushes = 0
        while any(w.is_alive() for w in workers):
            tel.flush()  # as the flushing thread and a scrape do
            flushes += 1
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)
    total = threads * per_thread
    retries = threads * len(range(0, per_thread, 3))
    assert flushes > 1
    assert tel.sample("alarmer_deliveries_total", {"outcome": "retry"}) == (
        retries
    )
    assert tel.sample(
        "alarmer_deliveries_total", {"outcome": "delivered"}
    ) == (total - retries)
    assert tel.sample("alarmer_evaluations_total", {"trigger": "event"}) == (
        total / 2
    )
    assert tel.sample("alarmer_evaluation_duration_seconds_count") == total
    # The buckets as prometheus-client's own histogram fills them.
    registry = CollectorRegistry()
    reference = Histogram(
        "ref",
        "",
        registry=registry,
        buckets=tel.delivery_seconds.bounds,
    )
    for index in range(threads):
        for i in range(per_thread):
            reference.observe(durations[(i + index) % len(durations)])
    ref = {
        s.labels["le"]: s.value
        for f in text_string_to_metric_families(
            generate_latest(registry).decode()
        )
        for s in f.samples
        if s.name == "ref_bucket"
    }
    assert len(ref) == 13
    for le, count in ref.items():
        assert (
            tel.sample(
                "alarmer_delivery_attempt_duration_seconds_bucket",
                {"scheme": "log", "le": le},
            )
            == count
        ), le
    assert tel.sample(
        "alarmer_delivery_attempt_duration_seconds_sum", {"scheme": "log"}
    ) == pytest.approx(reference._sum.get())
    tel.close()


FORKING = textwrap.dedent(
    """
    import gc
    import os
    import threading
    import weakref
    from alarmer.telemetry import Telemetry

    def flushers():
        return [t for t in threading.enumerate()
                if t.name == "telemetry-flush" and t.is_alive()]

    def delivered(tel, outcome):
        return tel.sample("alarmer_deliveries_total", {"outcome": outcome})

    dropped = Telemetry(multiprocess=False)
    dropped.delivered("delivered")
    assert len(flushers()) == 1
    dropped.close()
    assert flushers() == [], "close() ends the flushing thread"
    assert delivered(dropped, "delivered") == 1, "close() flushes"
    gone = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert gone() is None, "the fork hook keeps a closed object alive"

    closed = Telemetry(multiprocess=False)
    closed.close()
    live = Telemetry(multiprocess=False)
    live.delivered("retry")  # the parent's, not written yet
    pinned = Telemetry(multiprocess=False)
    record = pinned.delivery_recorder("delivered", "log")
    record(0.01)  # the parent's, not written yet
    pid = os.fork()
    if pid == 0:
        try:
            assert len(flushers()) == 1, "the recorder's thread restarted"
            closed.delivered("dead")
            assert len(flushers()) == 1, "a closed object started a thread"
            assert delivered(closed, "dead") == 1
            assert delivered(live, "retry") == 0, "the parent's value"
            live.delivered("delivered")
            assert len(flushers()) == 2, "the child's own thread"
            live.close()
            assert delivered(live, "delivered") == 1
            record(0.02)
            pinned.close()
            assert flushers() == []
            assert delivered(pinned, "delivered") == 1, "the parent's value"
            assert pinned.sample(
                "alarmer_delivery_attempt_duration_seconds_sum",
                {"scheme": "log"},
            ) == 0.02
        except AssertionError as exc:
            print("child:", exc, flush=True)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert delivered(live, "retry") == 1
    live.close()
    pinned.close()
    assert delivered(pinned, "delivered") == 1
    assert flushers() == []
    print("ok")
    """
)


def test_closed_telemetry_is_freed_and_not_restarted_in_forked_children():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", FORKING],
        env=env,
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "ok"
