"""Delivery and stream ids are the uuid5 of their names, computed fast."""

from __future__ import annotations

import uuid

import pytest

from notifiers import tables


@pytest.mark.parametrize(
    "alarm_id, seq, target",
    [
        ("a1", 1, "http://h/x"),
        (str(uuid.UUID(int=0)), 0, ""),
        (str(uuid.UUID(int=2**128 - 1)), 2**40, "https://ü.test/é?q=✓"),
        ("x" * 300, 7, "log://"),
    ],
)
def test_ids_are_the_uuid5_of_their_names(alarm_id, seq, target):
    expected = uuid.uuid5(tables.NAMESPACE, f"{alarm_id}\n{seq}\n{target}")
    stream = uuid.uuid5(tables.NAMESPACE, f"{alarm_id}\n{target}")
    assert tables.delivery_id(alarm_id, seq, target) == str(expected)
    assert tables.stream_id(alarm_id, target) == str(stream)
    assert uuid.UUID(tables.delivery_id(alarm_id, seq, target)).version == 5


def test_ids_of_many_names_match():
    for n in range(2000):
        alarm_id = str(uuid.UUID(int=n * 7919))
        target = f"http://h{n % 13}/p{n}"
        assert tables.delivery_id(alarm_id, n, target) == str(
            uuid.uuid5(tables.NAMESPACE, f"{alarm_id}\n{n}\n{target}")
        )
