"""The Aodh types are fully resolved once imported (thread safety)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_alarm_bodies_parse_from_many_threads_of_a_fresh_process():
    """WSME resolves attribute types lazily and not atomically; a fresh
    process parsing alarm bodies from many threads at once must not see
    a half-resolved type."""
    script = textwrap.dedent(
        """
        import concurrent.futures, threading
        from api.v2 import types
        barrier = threading.Barrier(16)
        values = {
            "name": "a", "type": "gnocchi_aggregation_by_metrics_threshold",
            "alarm_actions": ["log://"],
            "time_constraints": [{"name": "t", "start": "0 0 * * *",
                                  "duration": 60}],
            "rule": {
                "metrics": ["m"], "threshold": 1.0,
                "aggregation_method": "max"},
        }
        def one(_):
            barrier.wait()
            return types.alarm_values(types.alarm_from_values(values))
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            done = list(pool.map(one, range(16)))
        assert all(d["name"] == "a" for d in done)
        print("ok")
        """
    )
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ok"


def test_every_attribute_type_is_resolved_at_import():
    from wsme import types as wtypes

    from api.v2 import types

    complex_types = [
        value
        for value in vars(types).values()
        if isinstance(value, type) and issubclass(value, wtypes.Base)
    ]
    assert types.Alarm in complex_types
    for datatype in complex_types:
        for attr in wtypes.list_attributes(datatype):
            # WSME keeps a (name,) tuple until the type is resolved.
            assert not isinstance(attr._datatype, tuple), (datatype, attr)
