"""The end-to-end benchmark runs, start to finish, in its quick mode.

It starts ``alarmer serve`` as a subprocess and drives it over HTTP; this
test checks that every row of its table is there and that every figure
is a number (no timing is asserted: speed belongs to the benchmark).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest
import sqlalchemy as sa

from tests.conftest import POSTGRESQL_URL, require_server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_e2e.py")

# (workload prefix, figure) of every row the table must hold.
EXPECTED = [
    ("setup", "alarms created (metric + alarm each)"),
    ("setup", "creation rate, concurrent"),
    ("mass transition", "transitions committed (history)"),
    ("mass transition", "transitions/s committed (to the last commit)"),
    ("mass transition", "committed within 10 s"),
    ("mass transition", "webhooks received within 10 s"),
    ("mass transition", "crossing during the wave: POST -> state visible"),
    ("detection, no background load", "POST -> state visible p50"),
    ("detection, no background load", "POST -> webhook received p99"),
    ("detection, 20 alarms", "POST -> state visible p50"),
    ("detection, 20 alarms", "POST -> state visible p99"),
    ("detection, 20 alarms", "POST -> state visible max"),
    ("detection, 20 alarms", "POST -> webhook received p50"),
    ("detection, 20 alarms", "POST -> webhook received p99"),
    ("detection, 20 alarms", "crossings"),
    (
        "detection, 20 alarms",
        "missed crossings (no state change within the limit)",
    ),
    ("detection, 20 alarms", "background ingest achieved"),
    ("detection, 20 alarms", "alarmer CPU (all processes)"),
    ("detection, 20 alarms", "alarmer CPU per 1,000 measures"),
    ("memory of alarmer", "RSS, summed over the process tree"),
    ("memory of alarmer", "PSS, summed over the process tree"),
]
NUMBER = re.compile(r"^(-?[\d,]+(?:\.\d+)?)(?: \S+)?$")


def run_quick(tmp_path, *extra):
    """Run ``--quick`` with 20 alarms; check every row; the JSON result."""
    out = tmp_path / "result.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (ROOT, env.get("PYTHONPATH")) if p
    )
    proc = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "--quick",
            "--alarms",
            "20",
            "--crossings",
            "8",
            "--json",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    # The printed table: workload | figure | value | target | met?
    table: dict[tuple[str, str], tuple[str, str, str]] = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] not in {"workload", "---"}:
            table[(cells[0], cells[1])] = (cells[2], cells[3], cells[4])
    assert "load average at start" in proc.stdout
    for workload, figure in EXPECTED:
        found = [
            key
            for key in table
            if key[0].startswith(workload) and key[1] == figure
        ]
        assert found, f"row missing: {workload} | {figure}\n{proc.stdout}"
    for (workload, figure), (value, target, met) in table.items():
        assert NUMBER.match(value), f"{workload} | {figure}: {value!r}"
        assert met in {"-", "yes", "**no**"}
        assert (target == "-") == (met == "-")

    # The same figures as JSON, with the run's context.
    document = json.loads(out.read_text())
    assert document["info"]["cores"] == os.cpu_count()
    assert len(document["info"]["loadavg_start"]) == 3
    assert len(document["rows"]) == len(table)
    values = {(r["workload"], r["figure"]): r for r in document["rows"]}
    for row in values.values():
        assert isinstance(row["value"], int | float)
        assert math.isfinite(row["value"])
    created = values[("setup", EXPECTED[0][1])]
    assert created["value"] == 20
    crossings = next(
        r
        for k, r in values.items()
        if k[0].startswith("detection, 20 alarms") and k[1] == "crossings"
    )
    # An alarm the service never clears is retired, so fewer may run.
    assert 1 <= crossings["value"] <= 8
    return proc.stdout, document


@pytest.mark.slow
def test_quick_run_prints_every_row(tmp_path):
    stdout, document = run_quick(tmp_path)
    assert "# backend sqlite, " in stdout
    assert document["info"]["backend"] == "sqlite"


@pytest.mark.slow
@pytest.mark.postgresql
def test_quick_run_on_its_own_postgresql_database(tmp_path):
    require_server("PostgreSQL", POSTGRESQL_URL, 5432)
    stdout, document = run_quick(tmp_path, "--database", POSTGRESQL_URL)
    assert "# backend postgresql, " in stdout
    name = document["info"]["database"]
    assert name.startswith("alarmer_bench_")
    # The benchmark dropped the database it created.
    engine = sa.create_engine(POSTGRESQL_URL)
    try:
        with engine.connect() as conn:
            left = conn.execute(
                sa.text("SELECT count(*) FROM pg_database WHERE datname = :n"),
                {"n": name},
            ).scalar_one()
    finally:
        engine.dispose()
    assert left == 0
