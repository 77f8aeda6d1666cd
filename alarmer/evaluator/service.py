"""The evaluator service: owns a share of the alarms and evaluates them.

Two threads:

* the *control* thread polls the group membership
  (:mod:`alarmer.evaluator.coordination`) and keeps the definitions of
  the owned alarms in memory (:mod:`alarmer.evaluator.registry`),
  refreshed incrementally: every ``refresh_interval`` a cheap aggregate
  (``count``, ``max(timestamp)``, ``sum(version)``) tells whether
  anything changed; only then are the ``(alarm_id, version)`` pairs
  compared and the changed rows loaded. Memory is bounded by the owned
  share.  The same read takes the index change counter; when it moved,
  the metrics the owned alarms read are resolved again in one batch, so
  that an alarm never keeps reading what its project may no longer see.
* the *worker* thread evaluates: first the alarms reading a metric that
  just received measures (the event-driven path, fed by the metric
  channel through an in-memory index metric id -> alarms), then the
  periodic evaluations (:mod:`alarmer.evaluator.schedule`).  Each owned
  alarm has a fixed slot in the ``evaluation_interval`` (a hash of its
  id), so evaluations are spread evenly; a slot missed by more than one
  interval is skipped, not queued, and the schedule lag (start - slot)
  is measured.

A decision that changes something is committed by
:func:`alarmer.alarms.transitions.record_transition` (or
``record_repeat``), fenced by the version the worker holds in memory.  A
fence failure means the worker's view is stale: it reloads the alarm and
decides again.  Engine errors turn into ``insufficient data`` as in Aodh;
database errors are logged with the alarm id and the alarm is retried at
its next evaluation; nothing stops the worker.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from alarmer import channel as channel_mod
from alarmer import runtime as runtime_mod
from alarmer import telemetry
from alarmer.alarms import (
    counters,
    silences,
    time_constraints,
    transitions,
)
from alarmer.alarms.tables import Alarm
from alarmer.evaluator import composite, decide, evaluate, lifecycle
from alarmer.evaluator import reader as data
from alarmer.evaluator.backlog import EventBacklog
from alarmer.evaluator.coordination import Membership
from alarmer.evaluator.decide import Decision, Outcome
from alarmer.evaluator.registry import AlarmDef, Registry
from alarmer.evaluator.schedule import Schedule, slot_of
from alarmer.metrics.index import ResolutionCache

LOG = logging.getLogger(__name__)

SUPPORTED_TYPES = (*data.THRESHOLD_TYPES, data.COMPOSITE)
_LOAD_CHUNK = 500
_LAG_SAMPLES = 200_000
#: The threshold rule types resolved again when the index changes.
_RESOLVED = (data.RESOURCES, data.BY_METRICS, data.BY_RESOURCES)


_MAX_DUE = 256
_MIN_DUE = 16
#: Most event jobs of one tick (the rest waits: :class:`EventBacklog`).
_CHUNK = 256


@dataclasses.dataclass(slots=True)
class Job:
    """One alarm to evaluate in a tick.

    :ivar event: taken because a metric it reads changed.
    :ivar announced: the earliest instant (ns) to assess it as of: when
        the first announcement that made it dirty arrived or, when
        earlier, just after the newest timestamp of the data it carried
        (see :func:`first_instant`); 0 when not from an announcement.
    :ivar stamp: the newest timestamp of that data (ns), 0 if unknown.
    """

    alarm: AlarmDef
    event: bool
    announced: int = 0
    stamp: int = 0


def _job_alarm_id(job: Job) -> str:
    return job.alarm.alarm_id


def _merge_jobs(waiting: Job, newer: Job) -> None:
    """Fold *newer* into the *waiting* job of the same alarm."""
    if newer.announced and (
        not waiting.announced or newer.announced < waiting.announced
    ):
        waiting.announced = newer.announced
    waiting.stamp = max(waiting.stamp, newer.stamp)
    waiting.event = waiting.event or newer.event
    waiting.alarm = newer.alarm


class Pending(NamedTuple):
    """A decision of a tick waiting for the tick's commit."""

    alarm: AlarmDef
    decision: Decision


def first_instant(received: int, stamp: int) -> int:
    """The earliest instant (ns) an announcement is assessed as of.

    The data's own time when the announcement carries it (*stamp*, the
    newest timestamp of the points written) and it is older than the
    announcement's arrival (*received*): just after it, so that the
    bucket of that point is the newest of the window, as it was when the
    point was taken.  A write that took long to store and announce,
    or a worker that ran late, then assesses the window the data was
    meant for, not one that has already moved past it.  A stamp ahead of
    the arrival (a client clock ahead) is not used.
    """
    if 0 < stamp < received:
        return stamp + 1
    return received


def as_of_instants(announced: int, now_ns: int, gran_ns: int) -> list[int]:
    """Instants (ns) to assess an alarm at when it was announced at
    *announced* and is evaluated at *now_ns*.

    Aodh's window moves with time: an evaluation that runs late may see
    the buckets of a crossing pushed out by newer ones.  When the worker
    reaches an announcement in the same bucket of the finest
    granularity *gran_ns* it arrived in, the window is the same and only
    *now_ns* is used; otherwise the announcement instant and every
    granularity step after it (at most 63), then *now_ns*: any bucket
    interval the crossing was the newest in gets one assessment.
    """
    if gran_ns <= 0 or announced >= now_ns:
        return [now_ns]
    if announced // gran_ns == now_ns // gran_ns:
        return [now_ns]
    instants: list[int] = []
    t = announced
    while t < now_ns and len(instants) < data.MAX_EXTRA_BUCKETS - 1:
        instants.append(t)
        t += gran_ns
    instants.append(now_ns)
    return instants


def _want(batch: data.BatchRead, alarm: AlarmDef, instants: list[int]) -> None:
    """Register *alarm*'s threshold rules in the tick's read."""
    if not batch.enabled:
        return
    for index, plan in enumerate(alarm.plans):
        target = alarm.targets[index] if index < len(alarm.targets) else None
        if isinstance(plan, data.Plan) and isinstance(target, list):
            batch.want(plan, target, instants)


def _finest(alarm: AlarmDef) -> int:
    grans = [p.gran_ns for p in alarm.plans if isinstance(p, data.Plan)]
    return min(grans) if grans else 0


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat()


@dataclasses.dataclass
class Stats:
    """Counters of one evaluator process (read by benchmarks and tests)."""

    evaluations: int = 0
    event_evaluations: int = 0
    transitions: int = 0
    repeats: int = 0
    fence_conflicts: int = 0
    skipped_slots: int = 0
    errors: int = 0
    frozen: int = 0
    #: Passes re-resolving the owned alarms after the index changed.
    revalidations: int = 0
    #: Event jobs waiting behind the current tick.
    backlog: int = 0
    lags: collections.deque = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=_LAG_SAMPLES)
    )

    def lag_percentiles(self) -> dict[str, float]:
        """p50, p99 and max of the recorded schedule lags (seconds)."""
        values = sorted(self.lags)
        if not values:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        return {
            "p50": values[len(values) // 2],
            "p99": values[min(len(values) - 1, int(len(values) * 0.99))],
            "max": values[-1],
        }


class EvaluatorService:
    """The evaluator of one process (see the module documentation).

    :param rt: the process runtime (database, engine, metric channel).
    :param membership: the group membership; by default built from
        ``[coordination]``.
    :param api_in_process: the API runs in this process and announces
        every metric change on the (in-process) channel, so the bucket
        cache may be used with a local channel.
    :param on_outbox: called after each committed outbox row (a
        transition or repeat with actions), so that a notifier in the same
        process delivers at once instead of at its next look at the
        outbox.
    """

    name = "evaluator"

    def __init__(
        self,
        rt: runtime_mod.Runtime,
        *,
        membership: Membership | None = None,
        api_in_process: bool = False,
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        self.rt = rt
        self._on_outbox = on_outbox
        self.conf = rt.conf
        self.membership = membership or Membership(rt.conf)
        self.interval = float(rt.conf.evaluator.evaluation_interval)
        self.lag = float(rt.conf.additional_ingestion_lag)
        self.stats = Stats()
        #: Evaluation results per alarm and state (``/v2/metrics``), when
        #: ``[DEFAULT] enable_evaluation_results_metrics`` is set.
        self.results: counters.EvaluationCounts | None = None
        if rt.conf.enable_evaluation_results_metrics:
            self.results = counters.EvaluationCounts()
        #: By-resources groups, reused while the resource index is
        #: unchanged.
        self.resolution_cache = ResolutionCache()
        ttl = rt.conf.evaluator.series_cache_ttl
        announced = api_in_process or not isinstance(
            rt.channel, channel_mod.LocalChannel
        )
        self.cache: data.BucketCache | None = None
        if ttl > 0 and rt.conf.evaluator.event_driven and announced:
            self.cache = data.BucketCache(ttl)
        #: The owned alarms (guarded by ``_cv``).
        self.registry = Registry()
        #: When each owned alarm is due (guarded by ``_cv``).
        self.schedule = Schedule(self.interval)
        self._owner: dict[str, bool] = {}
        self._urgent: dict[str, None] = {}
        #: Dirty metrics: id -> (first instant to assess as of, ns;
        #: newest data, ns).
        self._pending_metrics: dict[str, tuple[int, int]] = {}
        #: When the oldest dirty metric was marked (monotonic), or None.
        self._dirty_since: float | None = None
        self.coalesce = float(rt.conf.evaluator.coalesce_interval)
        #: Event jobs taken but not yet evaluated (guarded by ``_cv``).
        self._backlog: EventBacklog[Job] = EventBacklog(
            _job_alarm_id, _merge_jobs, chunk=_CHUNK
        )
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._generation = -1
        self._fingerprint: tuple[Any, ...] | None = None
        #: The index change counter the owned alarms' metrics were last
        #: resolved at (None before the first load), and when the next
        #: re-resolution may start (monotonic).
        self._index_generation: int | None = None
        self._revalidate_after = 0.0
        #: Version bumps this worker committed and has not yet matched
        #: against the table fingerprint.
        self._own_bumps = 0
        self._loaded_once = False
        # One bound method, so that unsubscribe finds what subscribe got.
        self._callback = self.on_metrics
        #: Set after each completed definition sync (tests wait on it).
        self.synced = threading.Event()
        #: The silences in force, reread at most every refresh_interval.
        self.silences = silences.SilenceCache(
            rt.db, rt.conf.evaluator.refresh_interval
        )

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """Join the group, load the owned alarms, start the threads."""
        self.membership.start()
        self._control_step(force=True)
        if self.conf.evaluator.event_driven:
            self.rt.channel.subscribe(self._callback)
        for target, label in (
            (self._control_loop, "evaluator-control"),
            (self._work_loop, "evaluator-worker"),
        ):
            thread = threading.Thread(target=target, name=label, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.report()
        LOG.info(
            "evaluator started: %d alarms owned, interval %.0f s",
            len(self.registry),
            self.interval,
        )

    def stop(self) -> None:
        """Stop the threads and leave the group."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        self.rt.channel.unsubscribe(self._callback)
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        self.membership.stop()
        self.rt.telemetry.owned_alarms.set(0)
        if self.results is not None:
            self.results.flush(self.rt.db)

    # -- event-driven path --------------------------------------------------

    def on_metrics(
        self,
        metric_ids: list[str],
        newest: Mapping[str, int] | None = None,
    ) -> None:
        """Metric channel callback: mark these metrics dirty.

        Only marks: the worker evaluates, once per tick, every alarm
        reading a dirty metric.  Each dirty metric keeps the earliest
        instant to assess it as of since the worker last took it (its
        first announcement, or just after the timestamp of the data when
        that is older: :func:`first_instant`) and, when the announcements
        carry them (*newest*: metric id -> newest measure timestamp, ns),
        the newest timestamp of the data that made it dirty.
        """
        if newest is None:
            newest = getattr(metric_ids, "newest", None)
        if self.cache is not None:
            self.cache.invalidate(metric_ids)
        received = time.time_ns()
        with self._cv:
            registry = self.registry
            dirty = self._pending_metrics
            hit = False
            for metric_id in metric_ids:
                if not registry.reads_any(metric_id):
                    continue
                stamp = newest.get(metric_id, 0) if newest else 0
                first = first_instant(received, stamp)
                found = dirty.get(metric_id)
                if found is None:
                    dirty[metric_id] = (first, stamp)
                elif first < found[0] or stamp > found[1]:
                    dirty[metric_id] = (
                        min(first, found[0]),
                        max(stamp, found[1]),
                    )
                hit = True
            if hit:
                if self._dirty_since is None:
                    self._dirty_since = time.monotonic()
                self._cv.notify()

    # -- control: membership and definitions -------------------------------

    def _control_loop(self) -> None:
        period = min(
            self.conf.coordination.check_interval,
            self.conf.evaluator.refresh_interval,
        )
        next_refresh = time.monotonic()
        while not self._stop.wait(period):
            force: bool | None = False
            now = time.monotonic()
            if now >= next_refresh:
                next_refresh = now + self.conf.evaluator.refresh_interval
                force = None  # refresh if the fingerprint changed
            try:
                self._control_step(force=force)
                self.report()
            except Exception:
                LOG.exception("evaluator: refreshing alarm definitions failed")

    def report(self) -> None:
        """Set the gauges of :mod:`alarmer.telemetry` from this worker."""
        if self.results is not None:
            self.results.flush(self.rt.db)
        tel = self.rt.telemetry
        with self._cv:
            tel.owned_alarms.set(len(self.registry))
        tel.members.set(len(self.membership.members()))
        cache = self.cache
        if cache is not None:
            tel.cache_seen(cache.hits, cache.misses, len(cache))

    def _control_step(self, *, force: bool | None) -> None:
        """Poll membership; resync when ownership or alarms changed.

        *force*: True = always sync, None = sync if the table changed,
        False = sync only on an ownership change.
        """
        try:
            self.membership.poll()
        except Exception:
            LOG.exception("evaluator: coordination poll failed")
        generation = self.membership.generation
        owner_changed = generation != self._generation
        if owner_changed:
            self._generation = generation
            self._owner = {}
        if force is False and not owner_changed:
            return
        own = self._own_bumps
        fingerprint, index_generation = self._table_fingerprint()
        with self._cv:
            self._own_bumps -= own
        if force is None and not owner_changed:
            if fingerprint == self._fingerprint:
                self._revalidate(index_generation)
                return
            if self._only_own_writes(fingerprint, own):
                # Our own transitions explain the change: nothing to load.
                self._fingerprint = fingerprint
                self._revalidate(index_generation)
                return
        self._sync(fingerprint)
        self._revalidate(index_generation)

    def _only_own_writes(self, fingerprint: tuple[Any, ...], own: int) -> bool:
        """True when the table changed only by *own* version bumps.

        Versions only grow, so a sum that grew by exactly what this worker
        committed, with the same row count and newest definition
        timestamp, means nobody else wrote.
        """
        previous = self._fingerprint
        if previous is None or own <= 0:
            return False
        count, newest, total = fingerprint
        old_count, old_newest, old_total = previous
        return (
            count == old_count
            and newest == old_newest
            and total is not None
            and old_total is not None
            and int(total) - int(old_total) == own
        )

    def _table_fingerprint(self) -> tuple[tuple[Any, ...], int]:
        """The alarm table's fingerprint, and the index change counter.

        The counter is read first: whatever is resolved after this call
        is at least as new as it.
        """
        with self.rt.db.read_session() as session:
            index_generation = self.rt.index.generation(session)
            row = session.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.max(Alarm.timestamp),
                    sa.func.sum(Alarm.version),
                )
            ).one()
        return tuple(row), index_generation

    def _revalidate(self, index_generation: int) -> None:
        """Re-resolve what the owned alarms read once the index changed.

        What a threshold rule reads is resolved when the alarm is loaded
        and kept; a change of the index (a resource created, ended or
        moved to another project, a metric deleted or detached) moves
        the change counter, and every threshold rule of the owned alarms
        is then resolved again for its alarm's project, in one batch
        (see :func:`alarmer.evaluator.reader.bulk_resolve`), here in the
        control thread: an evaluation costs what it did.  A reference
        its project may no longer see becomes unresolved; a by-resources
        group gains the metrics of the resources that now match, so that
        their announcements reach the alarm.  An alarm that reads a
        metric it did not read before is evaluated at once: that
        metric's measures may have been announced before this pass,
        when no owned alarm read it.  A pass starts at most once per
        four times the last one lasted, so that a busy index cannot keep
        this thread resolving.
        """
        if self._index_generation is None:
            # The first load resolved every alarm after the counter read.
            self._index_generation = index_generation
            return
        if index_generation == self._index_generation:
            return
        started = time.monotonic()
        if started < self._revalidate_after:
            return
        with self._cv:
            alarms = list(self.registry.alarms.values())
        items: list[tuple[str, Mapping[str, Any]]] = []
        where: list[tuple[AlarmDef, int]] = []
        for alarm in alarms:
            for position, rule in enumerate(alarm.subrules):
                kind = (
                    str(rule.get("type"))
                    if alarm.type == data.COMPOSITE
                    else alarm.type
                )
                if kind in _RESOLVED:
                    items.append((kind, rule))
                    where.append((alarm, position))
        try:
            with self.rt.db.read_session() as session:
                resolved = data.bulk_resolve(
                    self.rt.index,
                    session,
                    items,
                    self.resolution_cache,
                    projects=[alarm.project_id for alarm, _ in where],
                )
        except Exception:
            LOG.exception("evaluator: re-resolving alarm metrics failed")
            return
        changed = 0
        with self._cv:
            registry = self.registry
            for (alarm, position), target in zip(where, resolved, strict=True):
                if registry.get(alarm.alarm_id) is not alarm:
                    continue  # reloaded meanwhile, with a newer resolution
                old = (
                    alarm.targets[position]
                    if position < len(alarm.targets)
                    else None
                )
                if isinstance(old, list) and old == target:
                    continue
                registry.retarget(alarm, position, target)
                changed += 1
                if isinstance(target, list) and not set(target).issubset(
                    old if isinstance(old, list) else ()
                ):
                    self._urgent[alarm.alarm_id] = None
            if self._urgent:
                self._cv.notify()
        self._index_generation = index_generation
        spent = time.monotonic() - started
        self._revalidate_after = time.monotonic() + 4 * spent
        self.stats.revalidations += 1
        LOG.debug(
            "evaluator: %d alarm rules re-resolved in %.3f s, %d changed",
            len(items),
            spent,
            changed,
        )

    def _owns(self, alarm_id: str) -> bool:
        owned = self._owner.get(alarm_id)
        if owned is None:
            owned = self.membership.owns(alarm_id)
            self._owner[alarm_id] = owned
        return owned

    def _sync(self, fingerprint: tuple[Any, ...]) -> None:
        """Bring the owned definitions up to date with the table."""
        with self.rt.db.read_session() as session:
            pairs = session.execute(
                sa.select(Alarm.alarm_id, Alarm.version)
            ).all()
        owned = {aid: ver for aid, ver in pairs if self._owns(aid)}
        if len(self._owner) > len(pairs) * 2:
            # Forget the ownership of deleted alarms.
            live = {aid for aid, _ in pairs}
            self._owner = {
                aid: own for aid, own in self._owner.items() if aid in live
            }
        with self._cv:
            known = dict(self.registry.versions)
        stale = [aid for aid, ver in owned.items() if known.get(aid) != ver]
        gone = [aid for aid in known if aid not in owned]
        loaded: list[AlarmDef] = []
        dropped: list[str] = list(gone)
        versions: dict[str, int] = {}
        with self.rt.db.read_session() as session:
            for start in range(0, len(stale), _LOAD_CHUNK):
                chunk = stale[start : start + _LOAD_CHUNK]
                rows = session.scalars(
                    sa.select(Alarm).where(Alarm.alarm_id.in_(chunk))
                ).all()
                found = {row.alarm_id for row in rows}
                dropped.extend(aid for aid in chunk if aid not in found)
                defs, skipped = self._build(session, rows)
                loaded.extend(defs)
                dropped.extend(skipped)
                versions.update((r.alarm_id, r.version) for r in rows)
        self._apply(loaded, dropped, versions)
        self._fingerprint = fingerprint
        self._loaded_once = True
        self.synced.set()
        if loaded or dropped:
            LOG.debug(
                "evaluator: %d alarms (re)loaded, %d dropped, %d owned",
                len(loaded),
                len(dropped),
                len(self.registry),
            )

    def _build(
        self, session: Any, rows: Iterable[Alarm]
    ) -> tuple[list[AlarmDef], list[str]]:
        """Turn rows into definitions; ids not to evaluate are returned."""
        defs: list[AlarmDef] = []
        skipped: list[str] = []
        pending: list[
            tuple[AlarmDef, list[tuple[str, Mapping[str, Any]]]]
        ] = []
        for row in rows:
            if not row.enabled or row.type not in SUPPORTED_TYPES:
                skipped.append(row.alarm_id)
                continue
            rule = dict(row.rule or {})
            alarm = AlarmDef(
                alarm_id=row.alarm_id,
                type=row.type,
                rule=rule,
                version=row.version,
                seq=row.seq,
                state=row.state,
                name=row.name,
                severity=row.severity,
                project_id=row.project_id,
                ok_actions=tuple(row.ok_actions or ()),
                alarm_actions=tuple(row.alarm_actions or ()),
                insufficient_data_actions=tuple(
                    row.insufficient_data_actions or ()
                ),
                repeat_actions=bool(row.repeat_actions),
                time_constraints=list(row.time_constraints or []),
                targets=[],
                subrules=[rule],
                plans=[],
                slot=slot_of(row.alarm_id, self._interval_of(row)),
                policy=lifecycle.Policy.of(row),
                memory=lifecycle.Memory.of(row),
                notified_state=row.notified_state,
                held=bool(row.held),
                interval=self._interval_of(row),
            )
            items: list[tuple[str, Mapping[str, Any]]] = [(row.type, rule)]
            if row.type == data.COMPOSITE:
                # The sub-rules are the very dicts inside the rule tree
                # (the composite evaluation hands them back by identity).
                alarm.subrules = list(composite.sub_rules(rule))
                items = [(str(s.get("type")), s) for s in alarm.subrules]
            pending.append((alarm, items))
        flat = [item for _, items in pending for item in items]
        projects = [
            alarm.project_id for alarm, items in pending for _ in items
        ]
        try:
            resolved = data.bulk_resolve(
                self.rt.index,
                session,
                flat,
                self.resolution_cache,
                projects=projects,
            )
        except Exception as exc:
            LOG.exception("evaluator: resolving alarm metrics failed")
            resolved = [
                data.Unresolved(f"alarm statistics retrieval failed: {exc}")
            ] * len(flat)
        position = 0
        for alarm, items in pending:
            alarm.plans = [self._plan(t, r) for t, r in items]
            alarm.targets = resolved[position : position + len(items)]
            position += len(items)
            defs.append(alarm)
        return defs, skipped

    def _interval_of(self, row: Alarm) -> float:
        """An alarm's own evaluation interval, bounded below by config."""
        own = row.evaluation_interval
        if not own:
            return self.interval
        return max(float(own), self.conf.evaluator.min_evaluation_interval)

    def _plan(
        self, alarm_type: str, rule: Mapping[str, Any]
    ) -> data.Plan | Exception:
        try:
            return data.Plan.of(alarm_type, rule, self.lag)
        except Exception as exc:
            return ValueError(f"invalid rule: {exc}")

    def _apply(
        self,
        loaded: list[AlarmDef],
        dropped: list[str],
        versions: Mapping[str, int],
    ) -> None:
        now = time.time()
        with self._cv:
            registry = self.registry
            for alarm_id in dropped:
                registry.drop(alarm_id)
            registry.note_versions(versions)
            for alarm in loaded:
                old = registry.put(alarm)
                if old is not None:
                    alarm.token = old.token
                    continue
                self.schedule.add(alarm, self.schedule.next_slot(alarm, now))
                if self._loaded_once:
                    # Created, enabled or taken over since the start:
                    # evaluate it now rather than at its slot.
                    self._urgent[alarm.alarm_id] = None
            if self._urgent:
                self._cv.notify()

    # -- worker -------------------------------------------------------------

    def _work_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._work_step()
            except Exception:
                self.stats.errors += 1
                LOG.exception("evaluator: worker step failed")
                time.sleep(0.1)

    def _take(self) -> tuple[list[Job], list[tuple[AlarmDef, float]]]:
        """Wait for work; return (event jobs, due alarms with their slot).

        Dirty metrics are taken once ``coalesce_interval`` has passed
        since the first of them was marked, all together: an alarm
        touched many times in a tick is evaluated once.  A tick holds at
        most ``_CHUNK`` event jobs; the rest waits in a backlog
        (:class:`~alarmer.evaluator.backlog.EventBacklog`): part of each
        tick goes to the freshest announcements, so that a fresh crossing
        never waits for a whole wave, the rest to the oldest waiting
        jobs, so that none starves.  The periodic slots due meanwhile
        are taken too, fewer while a backlog remains (a skipped slot is
        counted; a detection is never dropped).
        """
        with self._cv:
            while not self._stop.is_set():
                now = time.time()
                registry = self.registry
                fresh: list[Job] = []
                if self._pending_metrics and self._dirty_since is not None:
                    ripe = self._dirty_since + self.coalesce
                    wait = ripe - time.monotonic()
                    if wait > 0 and not self._urgent and not self._backlog:
                        self._cv.wait(wait)
                        continue
                    if wait <= 0 or self._urgent:
                        fresh = self._event_jobs(registry)
                elif self._urgent:
                    fresh = self._event_jobs(registry)
                jobs = self._next_chunk(fresh)
                due_items: list[tuple[AlarmDef, float]] = []
                schedule = self.schedule
                if schedule.has_due(now):
                    skipped = schedule.skipped
                    limit = (
                        _MIN_DUE
                        if self._backlog
                        else max(_MIN_DUE, _MAX_DUE - len(jobs))
                    )
                    due_items = schedule.pop_due(now, registry.get, limit)
                    self.stats.skipped_slots += schedule.skipped - skipped
                if jobs or due_items:
                    return jobs, due_items
                if schedule.has_due(now):
                    continue  # only stale heap entries were popped
                timeout = schedule.wait_time(now, 0.5)
                if self._dirty_since is not None:
                    timeout = min(
                        timeout,
                        max(
                            0.0,
                            self._dirty_since
                            + self.coalesce
                            - time.monotonic(),
                        ),
                    )
                self._cv.wait(timeout)
        return [], []

    def _next_chunk(self, fresh: list[Job]) -> list[Job]:
        """The next event jobs (:class:`EventBacklog` orders them)."""
        chunk = self._backlog.take(fresh)
        self.stats.backlog = len(self._backlog)
        return chunk

    def _event_jobs(self, registry: Registry) -> list[Job]:
        """Turn the dirty metrics and urgent alarms into jobs (locked)."""
        by_alarm: dict[str, tuple[int, int]] = {}
        by_metric = registry.by_metric
        for metric_id, (first, stamp) in self._pending_metrics.items():
            for alarm_id in by_metric.get(metric_id, ()):
                found = by_alarm.get(alarm_id)
                if found is None:
                    by_alarm[alarm_id] = (first, stamp)
                else:
                    by_alarm[alarm_id] = (
                        min(found[0], first),
                        max(found[1], stamp),
                    )
        urgent = [a for a in self._urgent if a not in by_alarm]
        self._pending_metrics = {}
        self._urgent = {}
        self._dirty_since = None
        jobs: list[Job] = []
        for alarm_id, (first, stamp) in by_alarm.items():
            alarm = registry.get(alarm_id)
            if alarm is not None:
                jobs.append(Job(alarm, True, first, stamp))
        for alarm_id in urgent:
            alarm = registry.get(alarm_id)
            if alarm is not None:
                jobs.append(Job(alarm, False))
        return jobs

    def _work_step(self) -> None:
        jobs, due_items = self._take()
        if jobs:
            self.evaluate_many(jobs)
        if due_items:
            lags = self.stats.lags
            started = time.time()
            observe = self.rt.telemetry.schedule_lag.observe
            for _, due in due_items:
                lags.append(started - due)
                observe(max(started - due, 0.0))
            self.evaluate_many([Job(alarm, False) for alarm, _ in due_items])

    # -- evaluation ---------------------------------------------------------

    def evaluate(self, alarm: AlarmDef, *, event: bool = False) -> None:
        """Evaluate one alarm now and commit what changed."""
        self.evaluate_many([Job(alarm, event)])

    def evaluate_many(self, jobs: Sequence[Job]) -> None:
        """Evaluate the alarms of one tick and commit what changed.

        One batched engine read serves every threshold rule of the tick
        (:class:`alarmer.evaluator.reader.BatchRead`).  An event job
        whose announcement the worker took late is assessed as of each
        granularity step since the announcement, then as of now (see
        :func:`as_of_instants`), so that a crossing held for the rule's
        evaluation periods is seen however late the worker is.  The
        transitions decided are committed together
        (:func:`alarmer.alarms.transitions.record_batch`).
        """
        started = time.perf_counter()
        now_ns = time.time_ns()
        now_ts = now_ns / 1e9
        stats = self.stats
        batch = data.BatchRead(self.rt.series) if len(jobs) > 1 else None
        work: list[tuple[Job, list[int]]] = []
        #: The telemetry outcome of each job, by position.
        outcomes = [telemetry.UNCHANGED] * len(jobs)
        for position, job in enumerate(jobs):
            alarm = job.alarm
            stats.evaluations += 1
            if job.event:
                stats.event_evaluations += 1
            if alarm.time_constraints and not self._within(alarm, now_ts):
                stats.frozen += 1
                outcomes[position] = telemetry.FROZEN
                continue
            self._silence(alarm, now_ts)
            instants = (
                as_of_instants(job.announced, now_ns, _finest(alarm))
                if job.announced
                else [now_ns]
            )
            self._prepare(alarm, now_ts)
            if batch is not None:
                _want(batch, alarm, instants)
            work.append((job, instants))
        if batch is not None:
            batch.run()
        changes: list[Pending] = []
        where = {id(job): position for position, job in enumerate(jobs)}
        for job, instants in work:
            try:
                decided = self._decisions(job, instants, now_ns, batch)
            except Exception:
                stats.errors += 1
                outcomes[where[id(job)]] = telemetry.ERROR
                LOG.exception(
                    "alarm %s: evaluation failed", job.alarm.alarm_id
                )
                continue
            if decided:
                last = decided[-1].decision.action
                outcomes[where[id(job)]] = (
                    telemetry.REPEAT
                    if last == decide.REPEAT
                    else telemetry.TRANSITION
                )
            changes.extend(decided)
        if changes:
            self._commit_many(changes)
        self._count(jobs, outcomes, time.perf_counter() - started)

    def _count(
        self, jobs: Sequence[Job], outcomes: list[str], seconds: float
    ) -> None:
        """Count a tick's evaluations (:mod:`alarmer.telemetry`).

        A tick reads and commits for all its alarms at once: each
        evaluation is given an equal share of the tick's duration.
        """
        if not jobs:
            return
        tel = self.rt.telemetry
        if len(jobs) == 1:
            job = jobs[0]
            tel.evaluated(job.alarm.type, outcomes[0], job.event, seconds)
        else:
            tel.evaluated_many(
                [
                    (job.alarm.type, outcome, job.event)
                    for job, outcome in zip(jobs, outcomes, strict=True)
                ],
                seconds / len(jobs),
            )
        results = self.results
        if results is not None:
            for job, outcome in zip(jobs, outcomes, strict=True):
                if outcome != telemetry.FROZEN:
                    alarm = job.alarm
                    results.add(alarm.alarm_id, alarm.project_id, alarm.state)

    def decide_many(
        self, alarms: Sequence[AlarmDef], now_ns: int
    ) -> list[Decision]:
        """The decisions of *alarms* at *now_ns*, from one batched read.

        What a tick decides for them; nothing is committed.
        """
        batch = data.BatchRead(self.rt.series)
        for alarm in alarms:
            self._prepare(alarm, now_ns / 1e9)
            _want(batch, alarm, [now_ns])
        batch.run()
        decisions: list[Decision] = []
        for alarm in alarms:

            def assess(
                index: int,
                kind: str,
                rule: Mapping[str, Any],
                alarm: AlarmDef = alarm,
            ) -> Outcome:
                return self._outcomes(alarm, index, [now_ns], batch)[0]

            decisions.append(
                evaluate.evaluate_at(alarm, assess, now_ns / 1e9)[0]
            )
        return decisions

    def _decisions(
        self,
        job: Job,
        instants: list[int],
        now_ns: int,
        batch: data.BatchRead | None,
    ) -> list[Pending]:
        """What *job*'s alarm decides at each instant, in order."""
        alarm = job.alarm
        memo: dict[int, list[Outcome]] = {}

        def outcome_at(
            i: int,
        ) -> Callable[[int, str, Mapping[str, Any]], Outcome]:
            def assess(
                index: int, kind: str, rule: Mapping[str, Any]
            ) -> Outcome:
                found = memo.get(index)
                if found is None:
                    found = memo[index] = self._outcomes(
                        alarm, index, instants, batch
                    )
                return found[i]

            return assess

        pending: list[Pending] = []
        view = alarm
        memory = alarm.memory
        for i, instant in enumerate(instants):
            decision, memory = evaluate.evaluate_at(
                view, outcome_at(i), instant / 1e9
            )
            if memory is not view.memory:
                view = dataclasses.replace(view, memory=memory)
            if decision.action == decide.NOTHING:
                continue
            if decision.action == decide.REPEAT and i < len(instants) - 1:
                continue  # re-notify once, as of now
            if instant != now_ns:
                decision = decision._replace(
                    reason_data={
                        **decision.reason_data,
                        "as_of": _iso(instant),
                        "evaluated_at": _iso(now_ns),
                        **(
                            {"data_timestamp": _iso(job.stamp)}
                            if job.stamp
                            else {}
                        ),
                    }
                )
            pending.append(Pending(alarm, decision))
            if decision.action == decide.TRANSITION and i < len(instants) - 1:
                view = dataclasses.replace(view, state=decision.state)
        if memory != alarm.memory:
            self._remember(alarm, memory)
        return pending

    def _prepare(self, alarm: AlarmDef, now_ts: float) -> None:
        """Resolve again what needs it before the tick's read."""
        for index, plan in enumerate(alarm.plans):
            if not isinstance(plan, data.Plan):
                continue
            kind = plan.alarm_type
            target = (
                alarm.targets[index] if index < len(alarm.targets) else None
            )
            if kind == data.BY_RESOURCES or (
                not isinstance(target, list) and now_ts >= alarm.resolve_after
            ):
                self._resolve(
                    alarm, index, kind, alarm.subrules[index], now_ts
                )

    def _outcomes(
        self,
        alarm: AlarmDef,
        index: int,
        instants: list[int],
        batch: data.BatchRead | None,
    ) -> list[Outcome]:
        """Outcomes of threshold rule *index* of *alarm* at *instants*."""
        plan = alarm.plans[index]
        if not isinstance(plan, data.Plan):
            return [
                decide.insufficient(
                    f"alarm statistics retrieval failed: {plan}"
                )
            ] * len(instants)
        target = alarm.targets[index] if index < len(alarm.targets) else None
        if not isinstance(target, list):
            return [decide.insufficient(str(target))] * len(instants)
        if batch is not None:
            found = batch.outcomes(plan, target, instants)
            if found is not None:
                return found
        try:
            return data.read_outcomes(
                self.rt.series, plan, target, instants, cache=self.cache
            )
        except Exception as exc:
            LOG.warning(
                "alarm %s: statistics retrieval failed: %s",
                alarm.alarm_id,
                exc,
                extra={
                    "alarm_id": alarm.alarm_id,
                    "metric_id": ",".join(map(str, target)),
                },
            )
            return [
                decide.insufficient(
                    f"alarm statistics retrieval failed: {exc}"
                )
            ] * len(instants)

    def _within(self, alarm: AlarmDef, now_ts: float) -> bool:
        if alarm.tc_until and now_ts < alarm.tc_until:
            return alarm.tc_inside
        now = dt.datetime.fromtimestamp(now_ts, dt.UTC)
        try:
            inside, until = time_constraints.status(
                alarm.time_constraints, now
            )
        except Exception as exc:
            LOG.warning(
                "alarm %s: invalid time constraint (%s); not evaluated",
                alarm.alarm_id,
                exc,
                extra={"alarm_id": alarm.alarm_id},
            )
            alarm.tc_inside, alarm.tc_until = False, now_ts + self.interval
            return False
        alarm.tc_inside = inside
        # Re-checked from "until" on (a window's end is included: the
        # check at that instant still answers inside).
        alarm.tc_until = until.timestamp() if until else 0
        if not inside:
            LOG.debug(
                "alarm %s: outside its time constraints, not evaluated",
                alarm.alarm_id,
            )
        return inside

    def decide(self, alarm: AlarmDef, now_ns: int) -> Decision:
        """The decision for *alarm* at *now_ns* (reads its data)."""
        self._prepare(alarm, now_ns / 1e9)
        decision, memory = evaluate.evaluate_at(
            alarm,
            lambda index, kind, rule: self._outcomes(
                alarm, index, [now_ns], None
            )[0],
            now_ns / 1e9,
        )
        if memory != alarm.memory:
            self._remember(alarm, memory)
        return decision

    # -- silences -------------------------------------------------------------

    def _silence(self, alarm: AlarmDef, now_ts: float) -> None:
        """Note which silences cover *alarm*; settle a silence's end."""
        alarm.silenced = ()
        if self.silences.current():
            active = self.silences.active(
                dt.datetime.fromtimestamp(now_ts, dt.UTC)
            )
            memo = alarm.silence_memo
            if memo is None or memo[0] is not active:
                covering = self.silences.covering(
                    active, alarm.silence_facts()
                )
                memo = alarm.silence_memo = (active, covering)
            alarm.silenced = memo[1]
        if alarm.held and not alarm.silenced:
            self._release(alarm, dt.datetime.fromtimestamp(now_ts, dt.UTC))

    @staticmethod
    def _held(alarm: AlarmDef, state: str, notified: bool) -> None:
        """Record in memory what a committed transition queued or held."""
        if notified:
            alarm.notified_state, alarm.held = state, False
        elif alarm.silenced and alarm.has_actions(state):
            alarm.held = True

    def _release(self, alarm: AlarmDef, now: dt.datetime) -> None:
        """Notify once what a silence held, if it is still news."""
        try:
            with self.rt.db.session() as session:
                done = transitions.record_release(
                    session,
                    alarm.alarm_id,
                    alarm.version,
                    now=now,
                    snapshot=alarm.snapshot(),
                )
                session.commit()
        except Exception:
            self.stats.errors += 1
            LOG.exception(
                "alarm %s: settling its silence failed",
                alarm.alarm_id,
                extra={"alarm_id": alarm.alarm_id},
            )
            return
        if done is None:
            return  # changed meanwhile: the next sync reloads it
        with self._cv:
            self._own_bumps += 1
            self.registry.committed(alarm, alarm.state, done)
            alarm.held = False
            if done:
                alarm.notified_state = alarm.state
        if done and self._on_outbox is not None:
            self._on_outbox()

    # -- lifecycle memory (pending_for, keep_firing_for) ----------------------

    def _remember(self, alarm: AlarmDef, memory: lifecycle.Memory) -> None:
        """Keep *memory* for *alarm*, in memory and in its row."""
        old, alarm.memory = alarm.memory, memory
        if (old.pending_since, old.clearing_since) == (
            memory.pending_since,
            memory.clearing_since,
        ):
            return
        try:
            with self.rt.db.session() as session:
                transitions.record_memory(
                    session,
                    alarm.alarm_id,
                    alarm.version,
                    pending_since=lifecycle.when(memory.pending_since),
                    clearing_since=lifecycle.when(memory.clearing_since),
                )
                session.commit()
        except Exception:
            LOG.exception(
                "alarm %s: storing its memory failed",
                alarm.alarm_id,
                extra={"alarm_id": alarm.alarm_id},
            )

    def _resolve(
        self,
        alarm: AlarmDef,
        index: int,
        alarm_type: str,
        rule: Mapping[str, Any],
        now_ts: float,
    ) -> list[str] | data.Unresolved:
        alarm.resolve_after = now_ts + min(self.interval, 60.0)
        try:
            with self.rt.db.read_session() as session:
                target: list[str] | data.Unresolved = data.resolve(
                    self.rt.index,
                    session,
                    alarm_type,
                    rule,
                    self.resolution_cache,
                    project_id=alarm.project_id,
                )
        except data.Unresolved as exc:
            target = exc
        except Exception as exc:
            LOG.warning(
                "alarm %s: resolving its metrics failed: %s",
                alarm.alarm_id,
                exc,
                extra={"alarm_id": alarm.alarm_id},
            )
            target = data.Unresolved(
                f"alarm statistics retrieval failed: {exc}"
            )
        with self._cv:
            self.registry.retarget(alarm, index, target)
        return target

    def _commit_many(self, pending: list[Pending]) -> None:
        """Commit the decisions of one tick together.

        Successive decisions of one alarm are chained (each fenced by the
        version the previous one leaves).  A change fenced out means the
        worker's view of that alarm is stale: it is reloaded and decided
        again as of now, on its own.
        """
        changes: list[transitions.Change] = []
        snaps: dict[str, transitions.AlarmSnapshot] = {}
        kept: list[Pending] = []
        now = dt.datetime.now(dt.UTC)
        chained: dict[str, int] = {}
        for item in pending:
            key = item.alarm.alarm_id
            chained[key] = chained.get(key, 0) + 1
        for item in pending:
            alarm, decision = item.alarm, item.decision
            previous = snaps.get(alarm.alarm_id)
            snap = previous or alarm.snapshot()
            repeat = decision.action == decide.REPEAT
            if repeat and not snap.actions_for(snap.state):
                continue
            change = transitions.Change(
                snapshot=snap,
                state=None if repeat else decision.state,
                reason=decision.reason,
                reason_data=decision.reason_data,
                # Successive changes of one alarm keep their order in
                # the history (ordered by timestamp).
                now=now
                if previous is None
                else now
                + dt.timedelta(microseconds=snap.version - alarm.version),
            )
            if chained.get(alarm.alarm_id, 0) > 1:
                snaps[alarm.alarm_id] = change.after()
            changes.append(change)
            kept.append(item)
        if not changes:
            return
        results = transitions.record_batch(self.rt.db.session, changes)
        notified = False
        stale: dict[str, AlarmDef] = {}
        for item, change, ok in zip(kept, changes, results, strict=True):
            alarm, decision = item.alarm, item.decision
            if ok is None:
                self.stats.errors += 1
                LOG.error(
                    "alarm %s: committing %s to %s failed; retried at the "
                    "next evaluation",
                    alarm.alarm_id,
                    decision.action,
                    decision.state,
                    extra={"alarm_id": alarm.alarm_id},
                )
                continue
            if not ok:
                stale.setdefault(alarm.alarm_id, alarm)
                continue
            notified |= self._applied(alarm, change, decision)
        if notified and self._on_outbox is not None:
            self._on_outbox()
        for alarm_id in stale:
            self.stats.fence_conflicts += 1
            self._retry_stale(alarm_id)

    def _retry_stale(self, alarm_id: str) -> None:
        fresh = self._reload(alarm_id)
        if fresh is None:
            return
        try:
            decision = self.decide(fresh, time.time_ns())
        except Exception:
            LOG.exception(
                "alarm %s: evaluation failed",
                alarm_id,
                extra={"alarm_id": alarm_id},
            )
            return
        if decision.action == decide.NOTHING:
            return
        snap = fresh.snapshot()
        repeat = decision.action == decide.REPEAT
        if repeat and not snap.actions_for(snap.state):
            return
        change = transitions.Change(
            snapshot=snap,
            state=None if repeat else decision.state,
            reason=decision.reason,
            reason_data=decision.reason_data,
            now=dt.datetime.now(dt.UTC),
        )
        (ok,) = transitions.record_batch(self.rt.db.session, [change])
        if ok:
            if self._applied(fresh, change, decision) and self._on_outbox:
                self._on_outbox()
        elif ok is None:
            self.stats.errors += 1
        else:
            self.stats.fence_conflicts += 1

    def _applied(
        self,
        alarm: AlarmDef,
        change: transitions.Change,
        decision: Decision,
    ) -> bool:
        """Record a committed change in memory; True if it notified."""
        repeat = change.state is None
        state = alarm.state if repeat else decision.state
        bump = alarm.has_actions(state) and not alarm.silenced
        with self._cv:
            self._own_bumps += 1
            self.registry.committed(alarm, state, bump)
            self._held(alarm, state, bump)
            alarm.memory = alarm.memory.after_commit(
                repeat=repeat, notified=bump, now=time.time()
            )
        if repeat:
            self.stats.repeats += 1
        else:
            self.stats.transitions += 1
            self.rt.telemetry.transitioned(state)
        return bump

    def _reload(self, alarm_id: str) -> AlarmDef | None:
        """Reload one alarm after a fence failure; None if not to evaluate."""
        try:
            with self.rt.db.read_session() as session:
                row = session.get(Alarm, alarm_id)
                if row is None:
                    defs: list[AlarmDef] = []
                    dropped = [alarm_id]
                    versions: dict[str, int] = {}
                else:
                    defs, dropped = self._build(session, [row])
                    versions = {alarm_id: row.version}
        except Exception:
            LOG.exception(
                "alarm %s: reloading failed",
                alarm_id,
                extra={"alarm_id": alarm_id},
            )
            return None
        if not self._owns(alarm_id):
            return None
        self._apply(defs, dropped, versions)
        return defs[0] if defs else None

    # -- introspection ------------------------------------------------------

    def owned(self) -> list[str]:
        """Ids of the alarms this worker evaluates."""
        with self._cv:
            return sorted(self.registry.alarms)

    def wait_synced(self, timeout: float = 10.0) -> bool:
        """Wait for the next definition sync (tests)."""
        self.synced.clear()
        return self.synced.wait(timeout)
