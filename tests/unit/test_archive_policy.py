"""Archive policy parsing and Gnocchi's default policies."""

from __future__ import annotations

import pytest

from alarmer.metrics import policy as ap

NS = ap.NS


@pytest.mark.parametrize(
    ("item", "granularity", "points"),
    [
        ({"granularity": 60, "points": 10}, 60, 10),
        ({"granularity": "1 minute", "timespan": "1 hour"}, 60, 60),
        ({"points": 24, "timespan": "1d"}, 3600, 24),
        ({"granularity": "1h30m", "points": 2}, 5400, 2),
        ({"granularity": 0.5, "points": 4}, 0.5, 4),
        ({"granularity": "60s", "points": 5, "timespan": 300}, 60, 5),
    ],
)
def test_any_two_of_three(item, granularity, points):
    parsed = ap.parse_item(item, 0)
    assert parsed.granularity == round(granularity * NS)
    assert parsed.points == points
    assert parsed.timespan == parsed.granularity * points


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"points": 60}, "give two of"),
        ({"granularity": 60, "points": 5, "timespan": 301}, "times points"),
        ({"granularity": -1, "points": 5}, "definition[0].granularity"),
        ({"granularity": "soon", "points": 5}, "unable to parse"),
        ({"granularity": 60, "points": 0}, "points: must be positive"),
        ({"granularity": 60, "points": 1.5}, "points: must be an integer"),
        ({"granularity": 60, "points": 5, "x": 1}, "unknown key"),
    ],
)
def test_bad_items_name_the_field(item, message):
    with pytest.raises(ap.PolicyError, match="definition\\[0\\]") as exc:
        ap.parse_item(item, 0)
    assert message in str(exc.value)


def test_granularity_alone_keeps_every_bucket():
    item = ap.parse_item({"granularity": 60}, 0)
    assert item.points is None
    assert item.timespan is None


def test_method_edits_apply_to_the_defaults():
    assert ap.resolve_methods(["+median", "-std"]) == (
        "count",
        "max",
        "mean",
        "median",
        "min",
        "sum",
    )
    assert ap.resolve_methods(None) == tuple(sorted(ap.DEFAULT_METHODS))
    assert ap.resolve_methods(["*"]) == tuple(sorted(ap.BASIC_METHODS))
    assert ap.resolve_methods(["95pct", "rate:mean"]) == ("95pct", "rate:mean")


@pytest.mark.parametrize(
    "spec",
    [
        ["bogus"],
        ["mean", "+max"],
        ["100pct"],
        ["-mean", "-min", "-max", "-sum", "-std", "-count"],
    ],
)
def test_bad_methods_are_refused(spec):
    with pytest.raises(ap.PolicyError, match="aggregation_methods"):
        ap.resolve_methods(spec)


def test_duplicate_granularity_is_refused():
    with pytest.raises(ap.PolicyError, match="same granularity"):
        ap.ArchivePolicy.from_request(
            {
                "name": "x",
                "definition": [
                    {"granularity": 60, "points": 1},
                    {"granularity": "1m", "points": 2},
                ],
            }
        )


def test_default_policies_match_gnocchi():
    policies = {n: p.to_dict() for n, p in ap.default_policies().items()}
    assert policies["low"]["definition"] == [
        {"granularity": 300, "points": 8640, "timespan": 2592000}
    ]
    assert policies["medium"]["definition"] == [
        {"granularity": 60, "points": 10080, "timespan": 604800},
        {"granularity": 3600, "points": 8760, "timespan": 31536000},
    ]
    assert [d["granularity"] for d in policies["high"]["definition"]] == [
        1,
        60,
        3600,
    ]
    assert policies["bool"] == {
        "name": "bool",
        "back_window": 3600,
        "definition": [
            {"granularity": 1, "points": 31536000, "timespan": 31536000}
        ],
        "aggregation_methods": ["last"],
    }
    assert policies["low"]["aggregation_methods"] == [
        "count",
        "max",
        "mean",
        "min",
        "std",
        "sum",
    ]


def test_capabilities_list_every_method():
    methods = ap.capability_methods()
    for name in ("mean", "95pct", "rate:last", "1pct", "99pct"):
        assert name in methods
    assert all(ap.is_valid_method(m) for m in methods)
    assert not ap.is_valid_method("0pct")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"granularity": 1e-10, "points": 5}, "granularity"),
        ({"granularity": 1e12, "points": 5}, "granularity"),
        ({"granularity": 10**9, "points": 10**9}, "definition\\[0\\]"),
    ],
)
def test_spans_outside_the_int64_range_are_refused(body, field):
    with pytest.raises(ap.PolicyError, match=field):
        ap.ArchivePolicy.from_request({"name": "x", "definition": [body]})


def test_back_window_is_bounded():
    with pytest.raises(ap.PolicyError, match="back_window"):
        ap.ArchivePolicy.from_request(
            {
                "name": "x",
                "back_window": 10**12,
                "definition": [{"granularity": 1, "points": 1}],
            }
        )
