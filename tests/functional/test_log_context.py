"""Log lines name their alarm, metric and delivery as fields.

A real delivery (the notifier's worker against a closed loopback port)
is logged through alarmer's handlers; the JSON line is parsed back and
the text line read.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from alarmer import logformat
from notifiers import deliver
from notifiers.base import Message
from notifiers.jobs import Job
from notifiers.retry import RetryPolicy


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def logged() -> Iterator[dict[str, io.StringIO]]:
    """What ``notifiers.deliver`` writes, in JSON and in text."""
    logger = logging.getLogger("notifiers.deliver")
    streams = {"json": io.StringIO(), "text": io.StringIO()}
    handlers = []
    for fmt, stream in streams.items():
        h = logformat.handler(fmt)
        h.setStream(stream)  # type: ignore[attr-defined]
        handlers.append(h)
        logger.addHandler(h)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield streams
    finally:
        logger.setLevel(level)
        for h in handlers:
            logger.removeHandler(h)


def test_failed_delivery_lines_carry_alarm_and_delivery_ids(sqlite_rt, logged):
    conf = sqlite_rt.conf
    conf.set_override("allowed_networks", ["127.0.0.0/8"], group="notifier")
    alarm_id = str(uuid.uuid4())
    job = Job(
        id=str(uuid.uuid4()),
        token="t",
        target=f"http://127.0.0.1:{closed_port()}/hook",
        stream="s",
        attempts=0,
        dead_after=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        message=Message(
            delivery_id="d1",
            alarm_id=alarm_id,
            seq=1,
            alarm_name="cpu",
            severity="low",
            previous="ok",
            current="alarm",
            reason="because",
            reason_data={},
        ),
    )
    worker = deliver.Deliverer(
        conf, RetryPolicy.from_conf(conf.notifier), threading.Event()
    )
    try:
        outcome = worker.deliver(job)
    finally:
        worker.close()
    assert outcome.status in ("pending", "dead")
    lines = [
        json.loads(line) for line in logged["json"].getvalue().splitlines()
    ]
    assert lines, "the failed delivery was not logged"
    line = lines[-1]
    assert line["alarm_id"] == alarm_id
    assert line["delivery_id"] == job.id
    assert line["logger"] == "notifiers.deliver"
    assert alarm_id in line["message"]
    # The text line shows each id once: both are in the message already.
    text = logged["text"].getvalue().splitlines()[-1]
    assert text.count(alarm_id) == 1
    assert text.count(job.id) == 1


def test_text_lines_show_the_context_the_message_lacks():
    out = io.StringIO()
    h = logformat.handler("text")
    h.setStream(out)  # type: ignore[attr-defined]
    logger = logging.getLogger("alarmer.tests.context")
    logger.addHandler(h)
    logger.propagate = False
    try:
        logger.warning(
            "alarm %s: statistics retrieval failed: %s",
            "a1",
            "timeout",
            extra={"alarm_id": "a1", "metric_id": "m1,m2"},
        )
        logger.warning("no context here")
    finally:
        logger.removeHandler(h)
        logger.propagate = True
    first, second = out.getvalue().splitlines()
    assert first.endswith(
        "alarm a1: statistics retrieval failed: timeout {metric_id=m1,m2}"
    )
    assert second.endswith("no context here")


def test_repeated_messages_are_held_back_then_counted():
    limit = logformat.RepeatLimit(burst=10, interval=0.2)

    def record(alarm: str) -> logging.LogRecord:
        return logging.LogRecord(
            "alarmer.evaluator.service",
            logging.WARNING,
            "",
            0,
            "alarm %s: statistics retrieval failed: %s",
            (alarm, "down"),
            None,
        )

    passed = [limit.filter(record(f"a{n}")) for n in range(100)]
    assert passed.count(True) == 10
    # Another message has its own burst.
    other = logging.LogRecord(
        "notifiers.deliver", logging.INFO, "", 0, "delivered %s", ("x",), None
    )
    assert limit.filter(other)
    time.sleep(0.25)  # the window ends
    late = record("a100")
    assert limit.filter(late)
    assert late.getMessage().endswith("(and 90 similar held back in 0 s)")


def test_a_command_s_logging_holds_repeats_back():
    root = logging.getLogger()
    kept = (list(root.handlers), root.level)
    filters = {
        name: list(logging.getLogger(name).filters)
        for name in logformat.REPEATING
    }
    try:
        logformat.configure("INFO", "json")
        for name in logformat.REPEATING:
            assert any(
                isinstance(f, logformat.RepeatLimit)
                for f in logging.getLogger(name).filters
            )
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in kept[0]:
            root.addHandler(h)
        root.setLevel(kept[1])
        for name, old in filters.items():
            logging.getLogger(name).filters[:] = old
