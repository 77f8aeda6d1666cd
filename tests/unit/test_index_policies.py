"""Archive policy rules of the index (no database)."""

from __future__ import annotations

from alarmer.metrics.index import policies


def test_rule_matching_order_is_gnocchis():
    rules = [
        policies.Rule("default", "low", "*"),
        policies.Rule("b", "high", "disk.*"),
        policies.Rule("a", "medium", "disk.*"),
        policies.Rule("io", "bool", "disk.io.*"),
    ]
    assert policies.match_rule(rules, "disk.io.x").name == "io"
    assert policies.match_rule(rules, "disk.free").name == "a"
    assert policies.match_rule(rules, None).name == "default"
    assert policies.match_rule(rules[1:], "cpu") is None
