"""The JSON query compiler and the resource id mapping (no database)."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alarmer.metrics.index import errors, schema, types
from alarmer.metrics.index import resources as res
from alarmer.metrics.index import search as srch

INSTANCE = types.TypeDef(
    "instance",
    "active",
    {
        "server_group": types.AttributeDef(
            "server_group", "string", False, {}, id=7
        ),
        "vcpus": types.AttributeDef("vcpus", "number", False, {}, id=8),
        "pinned": types.AttributeDef("pinned", "bool", False, {}, id=9),
    },
)


def sql(query) -> str:
    clause = srch.compile_query(query, INSTANCE, "u:p")
    return str(
        sa.select(schema.ResourceModel.id)
        .where(clause)
        .compile(
            dialect=postgresql.dialect(),
            compile_kwargs={"literal_binds": True},
        )
    )


def test_resource_uuid_matches_gnocchi():
    # Values computed with gnocchi.utils.ResourceUUID (gnocchi 4.7.1).
    assert res.resource_uuid("vm1", "alice:pa") == (
        "891404e6-a1d6-5a4e-b201-a34f6bcf688d"
    )
    assert res.resource_uuid("vm1") == "a0bfc953-1288-50a6-a671-673cc0d26b80"
    raw = uuid.uuid4()
    assert res.resource_uuid(str(raw).upper(), "x") == str(raw)
    assert res.resource_uuid(raw.hex) == str(raw)
    for bad in ("", "a/b", "x" * 256):
        with pytest.raises(errors.ResourceError):
            res.resource_uuid(bad)


def test_empty_query_matches_everything():
    assert "true" in sql({}).lower()


def test_typed_attribute_uses_the_value_index():
    text = sql({"=": {"server_group": "g1"}})
    assert "resource_attribute.attribute_id = 7" in text
    assert "resource_attribute.value_str = 'g1'" in text


def test_null_is_the_absence_of_a_row():
    text = sql({"=": {"server_group": None}})
    assert "NOT IN" in text
    assert "value_str" not in text.split("WHERE", 2)[-1]


def test_bool_is_stored_as_a_number():
    assert "value_num = 1.0" in sql({"=": {"pinned": True}})


def test_generic_columns_and_id_mapping():
    text = sql({"and": [{"=": {"ended_at": None}}, {"=": {"id": "vm1"}}]})
    assert "resource.ended_at IS NULL" in text
    assert res.resource_uuid("vm1", "u:p") in text


def test_spellings_are_equivalent():
    for spelling in ("=", "==", "eq", "EQ"):
        assert sql({spelling: {"vcpus": 2}}) == sql({"=": {"vcpus": 2}})
    assert sql({"≥": {"vcpus": 2}}) == sql({"ge": {"vcpus": 2}})
    assert sql({"\u2228": [{"=": {"vcpus": 1}}]}) == sql(
        {"or": [{"=": {"vcpus": 1}}]}
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"between": {"vcpus": [1, 2]}}, "Invalid operator: between"),
        ({"=": {"colour": "red"}}, "instance has no attribute colour"),
        ({"=": {"vcpus": True}}, "attribute vcpus"),
        ({"=": {"vcpus": float("nan")}}, "vcpus"),
        ({"like": {"vcpus": "1%"}}, "like applies to string"),
        ({">": {"server_group": None}}, "null only compares"),
        ({"in": {"vcpus": list(range(10_001))}}, "at most"),
        ({"and": "x"}, "non-empty list"),
        ({"=": {"id": 5}}, "attribute id"),
        ({"=": {"id": "a/b"}}, "'/'"),
        (None, None),
    ],
)
def test_errors_name_the_culprit(query, message):
    if message is None:
        assert srch.compile_query(query, INSTANCE) is not None
        return
    with pytest.raises(errors.QueryError) as info:
        srch.compile_query(query, INSTANCE)
    assert message in str(info.value)


def test_type_clause():
    generic = types.TypeDef("generic", "active", {})
    assert (
        res.type_clause(generic) is sa.true()
        or str(res.type_clause(generic)) == "true"
    )
    assert "resource.type" in str(res.type_clause(INSTANCE))
