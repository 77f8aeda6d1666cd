"""Retention: old history, deliveries, attempts and outbox rows removed
in batches, on every database backend, by the function, the command and
the running notifier."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid

import sqlalchemy as sa

from alarmer import runtime, timeutils
from alarmer.alarms.tables import AlarmHistory, Notification, Silence
from notifiers import retention
from notifiers import tables as models
from notifiers.service import NotifierService
from tests.functional.notifier_helpers import wait_for

DAY = dt.timedelta(days=1)


def _seed(rt, now: dt.datetime, tag: str) -> dict[str, int]:
    """Old and young rows of every kind; returns what should go."""
    old, young = now - 10 * DAY, now - dt.timedelta(minutes=5)
    with rt.db.session() as session, session.begin():
        for i in range(23):
            when = old if i < 17 else young
            session.add(
                AlarmHistory(
                    event_id=str(uuid.uuid4()),
                    alarm_id=f"{tag}-a",
                    type="state transition",
                    detail=json.dumps({"state": "ok"}),
                    on_behalf_of="p1",
                    timestamp=when,
                )
            )
        statuses = [
            # (status, updated, notification created, attempts)
            (models.DELIVERED, old, old, 2),
            (models.DELIVERED, old, old, 1),
            (models.DELIVERED, young, old, 1),
            (models.DEAD, old, old, 3),
            (models.DEAD, young, young, 1),
            (models.PENDING, old, old, 0),
        ]
        for seq, (status, updated, created, tries) in enumerate(
            statuses, start=1
        ):
            note = Notification(
                alarm_id=f"{tag}-a",
                seq=seq,
                alarm_name="n",
                severity="low",
                previous="ok",
                current="alarm",
                reason="r",
                reason_data={},
                actions=["http://h/"],
                project_id="p1",
                created_at=created,
            )
            session.add(note)
            session.flush()
            delivery_id = models.delivery_id(note.alarm_id, seq, "http://h/")
            session.add(
                models.NotificationExpansion(
                    notification_id=note.id, expanded_at=created
                )
            )
            session.add(
                models.Delivery(
                    id=delivery_id,
                    notification_id=note.id,
                    alarm_id=note.alarm_id,
                    seq=seq,
                    stream=models.stream_id(note.alarm_id, "http://h/"),
                    target="http://h/",
                    status=status,
                    attempts=tries,
                    next_attempt_at=updated,
                    dead_after=created + DAY,
                    created_at=created,
                    updated_at=updated,
                    delivered_at=updated
                    if status == models.DELIVERED
                    else None,
                )
            )
            session.flush()
            for n in range(tries):
                session.add(
                    models.DeliveryAttempt(
                        delivery_id=delivery_id,
                        attempted_at=updated,
                        status_code=200,
                        duration_ms=1.0,
                        outcome="delivered",
                        worker=f"w{n}",
                    )
                )
        # An old outbox row with no target at all.
        session.add(
            Notification(
                alarm_id=f"{tag}-b",
                seq=1,
                alarm_name="n",
                severity="low",
                previous="ok",
                current="alarm",
                reason="r",
                reason_data={},
                actions=[],
                project_id="p1",
                created_at=old,
            )
        )
    return {"history": 17, "delivered": 2, "dead": 1, "attempts": 6}


def _silences(rt, now: dt.datetime) -> None:
    """Silences ended 40 days ago, ended now, and never ending."""
    with rt.db.session() as session, session.begin():
        for ends in (now - 40 * DAY, now, None):
            session.add(
                Silence(
                    silence_id=str(uuid.uuid4()),
                    project_id="p1",
                    comment="",
                    matchers=[{"field": "name", "op": "=", "value": "x"}],
                    starts_at=now - 50 * DAY,
                    ends_at=ends,
                    recurrence=None
                    if ends
                    else {"start": "0 * * * *", "duration": 60},
                    created_at=now - 50 * DAY,
                    updated_at=now - 50 * DAY,
                )
            )


def _seeded(data, tag: str) -> runtime.Runtime:
    """A runtime on the data directory *data*, seeded with every kind."""
    from alarmer import conf as aconf

    rt = runtime.build(
        aconf.make_conf(overrides={"DEFAULT": {"data_dir": str(data)}}),
        migrate=True,
    )
    try:
        now = timeutils.utcnow()
        _seed(rt, now, tag)
        _silences(rt, now)
    except BaseException:
        rt.close()
        raise
    return rt


def _counts(rt) -> dict[str, int]:
    with rt.db.read_session() as session:

        def count(table, *where):
            query = sa.select(sa.func.count()).select_from(table)
            return int(session.scalar(query.where(*where)))

        return {
            "history": count(AlarmHistory),
            "delivered": count(
                models.Delivery,
                models.Delivery.status == models.DELIVERED,
            ),
            "dead": count(
                models.Delivery, models.Delivery.status == models.DEAD
            ),
            "pending": count(
                models.Delivery, models.Delivery.status == models.PENDING
            ),
            "attempts": count(models.DeliveryAttempt),
            "notifications": count(Notification),
            "expansions": count(models.NotificationExpansion),
        }


AGES = retention.Ages(
    history=7 * 86400, delivered=7 * 86400, dead_letters=None, unexpanded=3600
)


def test_expire_removes_what_is_old_in_batches(rt):
    now = timeutils.utcnow()
    _seed(rt, now, "x")
    before = _counts(rt)
    assert before == {
        "history": 23,
        "delivered": 3,
        "dead": 2,
        "pending": 1,
        "attempts": 8,
        "notifications": 7,
        "expansions": 6,
    }
    removed = retention.expire(rt.db, AGES, batch_size=4, now=now)
    assert removed == retention.Removed(
        history=17, delivered=2, dead_letters=0, attempts=3, notifications=3
    )
    assert _counts(rt) == {
        "history": 6,
        "delivered": 1,
        "dead": 2,  # kept until purged
        "pending": 1,  # never removed, however old
        "attempts": 5,
        "notifications": 4,
        "expansions": 4,
    }
    # A second pass finds nothing more.
    assert retention.expire(rt.db, AGES, batch_size=4, now=now).total() == 0
    # Dead letters: by their own age, then by an explicit purge.
    aged = retention.Ages(dead_letters=86400, unexpanded=3600)
    got = retention.expire(rt.db, aged, batch_size=4, now=now)
    assert (got.dead_letters, got.attempts) == (1, 3)
    got = retention.expire(
        rt.db, AGES, batch_size=4, now=now, purge_dead_letters=True
    )
    assert (got.dead_letters, got.attempts, got.notifications) == (1, 1, 1)
    assert _counts(rt)["dead"] == 0


def test_ended_silences_are_kept_for_their_retention(rt):
    now = timeutils.utcnow()
    _silences(rt, now)
    ages = retention.Ages(silences=30 * 86400)
    assert retention.expire(rt.db, ages, now=now).silences == 1
    with rt.db.read_session() as session:
        left = session.scalars(sa.select(Silence.ends_at)).all()
    assert sorted(e is None for e in left) == [False, True]


def test_an_unexpanded_outbox_row_is_never_removed(rt):
    now = timeutils.utcnow()
    with rt.db.session() as session, session.begin():
        session.add(
            Notification(
                alarm_id="fresh",
                seq=1,
                alarm_name="n",
                severity="low",
                previous="ok",
                current="alarm",
                reason="r",
                reason_data={},
                actions=["http://h/"],
                project_id="p1",
                created_at=now - dt.timedelta(hours=2),
            )
        )
    short = retention.Ages(delivered=60, unexpanded=86400)
    assert retention.expire(rt.db, short, now=now).notifications == 0
    assert _counts(rt)["notifications"] == 1


def test_a_stop_request_ends_the_pass_between_batches(rt):
    now = timeutils.utcnow()
    _seed(rt, now, "s")
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 1

    removed = retention.expire(rt.db, AGES, batch_size=5, now=now, stop=stop)
    assert removed.history == 5


def test_the_expire_command_prints_its_counts(tmp_path):
    data = tmp_path / "data"
    config = tmp_path / "alarmer.conf"
    config.write_text(
        "[database]\nalarm_history_time_to_live = 86400\n"
        "[notifier]\ndelivered_time_to_live = 86400\n"
        "max_age = 3600\n",
        encoding="utf-8",
    )
    _seeded(data, "c").close()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alarmer.cli",
            "expire",
            "--data-dir",
            str(data),
            "--config-file",
            str(config),
            "--batch-size",
            "3",
            "--purge-dead-letters",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "history: 17",
        "delivered: 2",
        "dead_letters: 2",
        "attempts: 7",
        "notifications: 4",
        "silences: 1",
    ]


def test_the_notifier_service_expires_while_running(make_conf):
    rt = runtime.build(
        make_conf(
            database={"alarm_history_time_to_live": 86400},
            notifier={"expire_interval": 0.2, "expire_batch_size": 2},
        ),
        migrate=True,
    )
    service = NotifierService(rt)
    try:
        _seed(rt, timeutils.utcnow(), "n")
        service.start()
        wait_for(lambda: service.removed.history == 17, timeout=30)
        wait_for(lambda: service.removed.delivered == 2, timeout=30)
        assert _counts(rt)["history"] == 6
    finally:
        service.stop()
        rt.close()


def test_expire_on_mariadb(mysql_url, make_conf):
    rt = runtime.build(
        make_conf(database={"connection": mysql_url}), migrate=True
    )
    try:
        now = timeutils.utcnow()
        _seed(rt, now, "m")
        _silences(rt, now)
        ages = retention.Ages(
            history=7 * 86400,
            delivered=7 * 86400,
            silences=30 * 86400,
            unexpanded=3600,
        )
        removed = retention.expire(rt.db, ages, batch_size=4, now=now)
        assert removed == retention.Removed(
            history=17,
            delivered=2,
            attempts=3,
            notifications=3,
            silences=1,
        )
        assert _counts(rt)["history"] == 6
    finally:
        rt.close()


def _removed_on_metrics(serve) -> dict[str, float]:
    """``alarmer_retention_removed_rows_total`` by kind, as scraped."""
    from prometheus_client.parser import text_string_to_metric_families

    r = serve.get("/metrics")
    assert r.status_code == 200, r.text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name == "alarmer_retention_removed_rows_total":
                out[s.labels["kind"]] = s.value
            elif s.name == "alarmer_retention_passes_total":
                out["passes"] = s.value
    return out


def test_removed_counts_are_on_metrics_from_service_and_command(tmp_path):
    """A real ``alarmer serve`` runs retention; ``alarmer expire`` given
    the same ``PROMETHEUS_MULTIPROC_DIR`` adds its counts; the scrape
    shows exactly the rows that left the database."""
    from tests.functional.serve_helpers import Serve

    serve = Serve(
        tmp_path,
        database={"alarm_history_time_to_live": 86400},
        notifier={
            "delivered_time_to_live": 86400,
            "max_age": 3600,
            "expire_interval": 0.5,
        },
    )
    data = tmp_path / "data"
    rt = _seeded(data, "m")
    try:
        # No delivery the running notifier would try.
        with rt.db.session() as session, session.begin():
            session.execute(
                sa.delete(models.Delivery).where(
                    models.Delivery.status == models.PENDING
                )
            )
        before = _counts(rt)
        serve.start()
        try:
            serve.wait_ready()
            wait_for(
                lambda: _removed_on_metrics(serve).get("history") == 17,
                timeout=60,
            )
            by_service = _removed_on_metrics(serve)
            assert by_service["dead_letters"] == 0  # kept until purged
            assert by_service["silences"] == 1  # ended 40 days ago
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "alarmer.cli",
                    "expire",
                    "--config-file",
                    str(serve.conf_path),
                    "--purge-dead-letters",
                ],
                capture_output=True,
                text=True,
                check=False,
                env={
                    **os.environ,
                    "PROMETHEUS_MULTIPROC_DIR": str(
                        data / "run" / "prometheus"
                    ),
                },
                timeout=120,
            )
            assert result.returncode == 0, result.stderr
            printed = dict(
                line.split(": ") for line in result.stdout.splitlines()
            )
            assert printed["dead_letters"] == "2"
            # The command's counts join the service's on the scrape.
            wait_for(
                lambda: _removed_on_metrics(serve).get("dead_letters") == 2,
                timeout=30,
            )
            after = _counts(rt)
            scraped = _removed_on_metrics(serve)
        finally:
            assert serve.stop() == 0
    finally:
        rt.close()
    assert scraped["passes"] > by_service["passes"] >= 1
    assert scraped["history"] == before["history"] - after["history"] == 17
    assert scraped["delivered"] == before["delivered"] - after["delivered"]
    assert scraped["dead_letters"] == before["dead"] - after["dead"] == 2
    assert scraped["attempts"] == before["attempts"] - after["attempts"]
    assert (
        scraped["notifications"]
        == before["notifications"] - after["notifications"]
        > 0
    )
    assert scraped["silences"] == 1
