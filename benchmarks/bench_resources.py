"""Resource search and by-resources evaluation, in process.

Builds, in a temporary directory (SQLite file, ``file`` series driver):

* 100,000 ``instance`` resources (``server_group`` with 10 members per
  group, ``host`` with 200 per host) inserted in bulk;
* one extra group of 1,000 instances, each with a ``cpu`` metric
  (policy ``medium``, 60 s) holding 10 buckets of measures.

Then times, over ``--repeat`` runs:

* the search ``server_group = X`` over the 100,000 resources: the search
  through the index alone (``Indexer.search_resources``: compile, query,
  rows in id order), the same for a non-admin (project scope added), and
  the whole ``POST /v1/search/resource/instance`` view through Flask's
  test client (compile, query, attributes and metrics of the matches,
  JSON);
* one evaluation of a ``gnocchi_aggregation_by_resources_threshold``
  rule over the 1,000-instance group: resolving the group's metrics
  (``Indexer.resolve_group``), reading the newest buckets of each metric
  from the engine and reducing them across the group
  (``aggregate_across``), then the decision;
* the same evaluation as the evaluator runs it
  (:func:`alarmer.evaluator.reader.read_outcome`: one batched engine read,
  ``last_buckets_many``, reduced as a matrix, then the decision), with
  the group's data unchanged between runs and with a new point in every
  member's newest bucket before each run (the write is not timed);
* the engine read alone after such a write by this engine and by a
  second engine over the same files (another process's view).

Usage: ``.venv/bin/python benchmarks/bench_resources.py [--resources N]
[--group N] [--repeat N] [--database URL]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable

import numpy as np

from alarmer import conf as aconf
from alarmer import runtime
from alarmer.evaluator import reader as data
from alarmer.metrics import index as index_mod
from alarmer.metrics import query as aggregates
from alarmer.metrics.series import store as series_mod

NS = 1_000_000_000
HEADERS = {"X-User-Id": "bench", "X-Project-Id": "bp", "X-Roles": "member"}
#: The benchmark's caller, and an admin of the same project.
BENCH = index_mod.Caller("bench", "bp")
ADMIN = index_mod.Caller("bench", "bp", is_admin=True)


def timed(fn: Callable[[int], object], repeat: int) -> list[float]:
    out = []
    for i in range(repeat):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def row(name: str, samples: list[float], note: str = "") -> None:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    print(
        f"| {name} | {statistics.median(samples):.2f} | {p95:.2f} | "
        f"{samples[0]:.2f} | {note} |"
    )


def populate(rt: runtime.Runtime, n: int, group: int) -> list[str]:
    with rt.db.session() as session, session.begin():
        rtype = rt.index.create_type(
            session,
            index_mod.parse_type_definition(
                {
                    "name": "instance",
                    "attributes": {
                        "server_group": {"type": "string", "required": False},
                        "host": {"type": "string", "required": False},
                    },
                }
            ),
        )
    members: list[str] = []
    total = n + group
    t0 = time.perf_counter()
    for start in range(0, total, 5000):
        bodies = []
        for i in range(start, min(total, start + 5000)):
            rid = str(uuid.uuid4())
            in_group = i >= n
            bodies.append(
                {
                    "id": rid,
                    "project_id": "bp",
                    "server_group": "big" if in_group else f"g{i % (n // 10)}",
                    "host": f"host{i % 500}",
                }
            )
            if in_group:
                members.append(rid)
        with rt.db.session() as session, session.begin():
            rt.index.import_resources(session, rtype, bodies, BENCH)
    with rt.db.engine.begin() as conn:
        if rt.db.dialect in ("postgresql", "sqlite"):
            conn.exec_driver_sql("ANALYZE")
    print(
        f"inserted {total} resources in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    return members


def add_metrics(rt: runtime.Runtime, members: list[str]) -> list[str]:
    policy = rt.index.get_archive_policy("medium")
    assert policy is not None
    with rt.db.session() as session, session.begin():
        metrics = [
            rt.index.create_metric(
                archive_policy_name="medium",
                name="cpu",
                resource_id=rid,
                session=session,
            ).id
            for rid in members
        ]
    now = int(time.time()) * NS
    stamps = now - np.arange(10, 0, -1, dtype=np.int64) * 60 * NS
    rng = np.random.default_rng(42)
    assert rt.series is not None
    batch = [
        (
            series_mod.MetricRef(id=mid, policy=policy),
            stamps,
            rng.random(10) * 100,
        )
        for mid in metrics
    ]
    rt.series.add_measures_batch(batch)
    return metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--group", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--database", default=None)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="alarmer-bench-")
    conf = aconf.make_conf(overrides={"DEFAULT": {"data_dir": tmp.name}})
    if args.database:
        conf.set_override("connection", args.database, group="database")
    rt = runtime.build(conf, migrate=True)
    members = populate(rt, args.resources, args.group)
    add_metrics(rt, members)

    print(
        f"\n{args.resources:,} resources + a group of {args.group:,}; "
        f"backend {rt.db.dialect}; {args.repeat} runs\n"
    )
    print("| operation | p50 ms | p95 ms | min ms | note |")
    print("|---|---|---|---|---|")

    groups = args.resources // 10
    index = rt.index
    with rt.db.read_session() as session:
        rtype = index.get_type(session, "instance")

    def sql_search(i: int, scoped: bool = False) -> None:
        with rt.db.read_session() as session:
            found = index.search_resources(
                session,
                rtype,
                BENCH if scoped else ADMIN,
                {"=": {"server_group": f"g{(i * 7919) % groups}"}},
                limit=1000,
                sorts=[("id", "asc")],
            )
        assert len(found) == 10, len(found)

    row(
        f"search server_group = X, SQL (10 of {args.resources:,} match)",
        timed(sql_search, args.repeat),
    )
    row(
        "same, non-admin (project scope)",
        timed(lambda i: sql_search(i, True), args.repeat),
    )

    from api.app import create_app

    client = create_app(rt).test_client()

    def api_search(i: int) -> None:
        response = client.post(
            "/v1/search/resource/instance",
            json={"=": {"server_group": f"g{(i * 7919) % groups}"}},
            headers=HEADERS,
        )
        assert response.status_code == 200
        assert len(response.get_json()) == 10

    row(
        "POST /v1/search/resource/instance (view, in process)",
        timed(api_search, args.repeat),
        "10 results rendered",
    )

    def api_search_host(i: int) -> None:
        response = client.post(
            "/v1/search/resource/instance?limit=1000",
            json={"=": {"host": f"host{i % 500}"}},
            headers=HEADERS,
        )
        assert response.status_code == 200
        assert len(response.get_json()) >= args.resources // 500

    row(
        f"same, host = X ({args.resources // 500} results)",
        timed(api_search_host, max(20, args.repeat // 4)),
        "each rendered",
    )

    # By-resources evaluation over the group.
    query = json.dumps(
        {"and": [{"=": {"server_group": "big"}}, {"=": {"ended_at": None}}]}
    )
    scoped = index_mod.scope_query(query, "bp")
    engine = rt.series
    assert engine is not None
    gran = 60 * NS

    def resolve(_: int) -> list[str]:
        with rt.db.read_session() as session:
            ids = index.resolve_group(session, "instance", scoped, "cpu")
        assert len(ids) == args.group
        return ids

    ids = resolve(0)

    def read(_: int) -> None:
        now = int(time.time()) * NS
        series = [engine.last_buckets(m, "mean", gran, 3) for m in ids]
        out = aggregates.aggregate_across(
            series,
            "mean",
            start=now - 3 * gran,
            stop=now,
            needed_overlap=0,
        )
        assert len(out.values) >= 1

    def evaluate(i: int) -> None:
        metric_ids = resolve(i)
        now = int(time.time()) * NS
        series = [engine.last_buckets(m, "mean", gran, 3) for m in metric_ids]
        out = aggregates.aggregate_across(
            series, "mean", start=now - 3 * gran, stop=now, needed_overlap=0
        )
        assert np.asarray(out.values).size >= 1

    row(
        f"by-resources: resolve the group ({args.group} metrics)",
        timed(resolve, args.repeat),
        "scoped query, SQL",
    )
    row(
        f"by-resources: read + reduce {args.group} series",
        timed(read, args.repeat),
        "last_buckets x N + aggregate_across",
    )
    row(
        f"by-resources evaluation, {args.group} instances (total)",
        timed(evaluate, args.repeat),
        "Gnocchi /v1/aggregates: 259 ms",
    )

    cache = index_mod.ResolutionCache()

    def resolve_cached(_: int) -> list[str]:
        with rt.db.read_session() as session:
            found = index.resolve_group(
                session, "instance", scoped, "cpu", cache=cache
            )
        assert len(found) == args.group
        return found

    resolve_cached(0)
    row(
        "by-resources: resolve, cached (group unchanged)",
        timed(resolve_cached, args.repeat),
        "one primary-key read",
    )
    now = int(time.time()) * NS
    series = [engine.last_buckets(m, "mean", gran, 3) for m in ids]
    row(
        f"by-resources: last_buckets x {args.group}",
        timed(
            lambda _: [engine.last_buckets(m, "mean", gran, 3) for m in ids],
            args.repeat,
        ),
        "engine reads",
    )
    row(
        f"by-resources: aggregate_across {args.group} series",
        timed(
            lambda _: aggregates.aggregate_across(
                series,
                "mean",
                start=now - 3 * gran,
                stop=now,
                needed_overlap=0,
            ),
            args.repeat,
        ),
        "cross-series mean",
    )

    def evaluate_cached(_: int) -> None:
        metric_ids = resolve_cached(0)
        now = int(time.time()) * NS
        series = [engine.last_buckets(m, "mean", gran, 3) for m in metric_ids]
        aggregates.aggregate_across(
            series, "mean", start=now - 3 * gran, stop=now, needed_overlap=0
        )

    row(
        f"by-resources evaluation, {args.group} instances, resolution cached",
        timed(evaluate_cached, args.repeat),
        "",
    )

    # The evaluator's path: one batched read, reduced as a matrix.
    plan = data.Plan.of(
        data.BY_RESOURCES,
        {
            "aggregation_method": "mean",
            "granularity": 60,
            "evaluation_periods": 1,
            "threshold": 50,
            "comparison_operator": "gt",
        },
    )
    row(
        f"batched: last_buckets_many x {args.group}, data unchanged",
        timed(
            lambda _: engine.last_buckets_many(ids, "mean", gran, plan.n),
            args.repeat,
        ),
        "change stamps only",
    )
    times, grid = engine.last_buckets_many(ids, "mean", gran, plan.n)
    row(
        f"batched: aggregate_matrix {args.group} x {times.size}",
        timed(
            lambda _: aggregates.aggregate_matrix(
                gran,
                times,
                grid,
                "mean",
                start=times[0],
                stop=times[-1] + 1,
                needed_overlap=0,
            ),
            args.repeat,
        ),
        "cross-series mean",
    )

    def evaluate_batched(_: int, cached: bool) -> None:
        with rt.db.read_session() as session:
            metric_ids = data.resolve_by_resources(
                index,
                session,
                {
                    "resource_type": "instance",
                    "query": scoped,
                    "metric": "cpu",
                },
                cache if cached else None,
            )
        outcome = data.read_outcome(
            engine, plan, metric_ids, int(time.time() * NS)
        )
        assert outcome.values, outcome

    row(
        f"batched evaluation, {args.group} instances (uncached resolution)",
        timed(lambda i: evaluate_batched(i, False), args.repeat),
        "read_outcome, data unchanged",
    )
    row(
        f"batched evaluation, {args.group} instances, resolution cached",
        timed(lambda i: evaluate_batched(i, True), args.repeat),
        "read_outcome, data unchanged",
    )
    policy = index.get_archive_policy("medium")
    assert policy is not None
    refs = [series_mod.MetricRef(id=mid, policy=policy) for mid in ids]
    rng = np.random.default_rng(7)
    for cached in (False, True):
        samples = []
        for _ in range(max(20, args.repeat // 5)):
            stamp = np.array([int(time.time() * NS)], dtype=np.int64)
            engine.add_measures_batch(
                [(ref, stamp, rng.random(1) * 100) for ref in refs]
            )
            t0 = time.perf_counter()
            evaluate_batched(0, cached)
            samples.append((time.perf_counter() - t0) * 1000)
        row(
            f"batched evaluation after a new point in every member, "
            f"resolution {'cached' if cached else 'uncached'}",
            samples,
            "written by this process (not timed)",
        )
    # The engine read alone after a new point in every member, written
    # by this engine, then by a second engine over the same files (its
    # own cache: to the reader, the same as a writer process).
    other = series_mod.make_store(conf)
    for name, writer in (("this engine", engine), ("another engine", other)):
        samples = []
        for _ in range(max(20, args.repeat // 5)):
            stamp = np.array([int(time.time() * NS)], dtype=np.int64)
            writer.add_measures_batch(
                [(ref, stamp, rng.random(1) * 100) for ref in refs]
            )
            t0 = time.perf_counter()
            engine.last_buckets_many(ids, "mean", gran, plan.n)
            samples.append((time.perf_counter() - t0) * 1000)
        row(
            f"batched: last_buckets_many x {args.group} after a new point "
            f"in every member, written by {name}",
            samples,
            "engine read only",
        )
    other.close()
    rt.close()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
