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
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from alarmer import channel as channel_mod
from alarmer import runtime as runtime_mod
from alarmer import telemetry
from alarmer.alarms import counters, time_constraints, transitions
from alarmer.alarms.tables import Alarm
from alarmer.evaluator import composite, decide, evaluate
from alarmer.evaluator import reader as data
from alarmer.evaluator.coordination import Membership
from alarmer.evaluator.decide import Decision, Outcome
from alarmer.evaluator.registry import AlarmDef, Registry
from alarmer.evaluator.schedule import Schedule, slot_of
from alarmer.metrics.index import ResolutionCache

LOG = logging.getLogger(__name__)

SUPPORTED_TYPES = (*data.THRESHOLD_TYPES, data.COMPOSITE)
_LOAD_CHUNK = 500
_LAG_SAMPLES = 200_000


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
        self._pending_metrics: dict[str, None] = {}
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

    def on_metrics(self, metric_ids: list[str]) -> None:
        """Metric channel callback: queue the alarms reading these."""
        if self.cache is not None:
            self.cache.invalidate(metric_ids)
        with self._cv:
            registry = self.registry
            hit = False
            for metric_id in metric_ids:
                if registry.reads_any(metric_id):
                    self._pending_metrics[metric_id] = None
                    hit = True
            if hit:
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

        What a ``gnocchi_resources_threshold`` or by-metrics rule reads
        is resolved when the alarm is loaded and kept; a change of the
        index (a resource moved to another project, a metric deleted or
        detached) moves the change counter, and every such rule of the
        owned alarms is then resolved again for its alarm's project, in
        one batch (see :func:`alarmer.evaluator.reader.bulk_resolve`),
        here in the control thread: an evaluation costs what it did.  A
        reference its project may no longer see becomes unresolved.  A
        pass starts at most once per four times the last one lasted, so
        that a busy index cannot keep this thread resolving.
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
                if kind in (data.RESOURCES, data.BY_METRICS):
                    items.append((kind, rule))
                    where.append((alarm, position))
        try:
            with self.rt.db.read_session() as session:
                resolved = data.bulk_resolve(
                    self.rt.index,
                    session,
                    items,
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
                slot=slot_of(row.alarm_id, self.interval),
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

    def _take(
        self,
    ) -> tuple[list[AlarmDef], list[tuple[AlarmDef, float]], bool]:
        """Wait for work; return (event alarms, due alarms, from events).

        Events come first but never starve the schedule: each round also
        takes the slots already due.
        """
        with self._cv:
            while not self._stop.is_set():
                now = time.time()
                alarms: list[AlarmDef] = []
                from_events = False
                registry = self.registry
                if self._pending_metrics or self._urgent:
                    ids = registry.readers(self._pending_metrics)
                    from_events = bool(self._pending_metrics)
                    ids.update(self._urgent)
                    self._pending_metrics = {}
                    self._urgent = {}
                    alarms = [
                        alarm
                        for alarm in map(registry.get, ids)
                        if alarm is not None
                    ]
                due_items: list[tuple[AlarmDef, float]] = []
                schedule = self.schedule
                if schedule.has_due(now):
                    skipped = schedule.skipped
                    due_items = schedule.pop_due(now, registry.get, 256)
                    self.stats.skipped_slots += schedule.skipped - skipped
                if alarms or due_items:
                    return alarms, due_items, from_events
                if schedule.has_due(now):
                    continue  # only stale heap entries were popped
                self._cv.wait(schedule.wait_time(now, 0.5))
        return [], [], False

    def _work_step(self) -> None:
        event_alarms, due_items, from_events = self._take()
        for alarm in event_alarms:
            self.evaluate(alarm, event=from_events)
        lags = self.stats.lags
        for alarm, due in due_items:
            lag = time.time() - due
            lags.append(lag)
            self.rt.telemetry.schedule_lag.observe(max(lag, 0.0))
            self.evaluate(alarm)

    # -- evaluation ---------------------------------------------------------

    def evaluate(self, alarm: AlarmDef, *, event: bool = False) -> None:
        """Evaluate one alarm now and commit what changed."""
        started = time.perf_counter()
        outcome = telemetry.ERROR
        try:
            outcome = self._evaluate(alarm, event)
        finally:
            self.rt.telemetry.evaluated(
                alarm.type, outcome, event, time.perf_counter() - started
            )
        if self.results is not None and outcome != telemetry.FROZEN:
            self.results.add(alarm.alarm_id, alarm.project_id, alarm.state)

    def _evaluate(self, alarm: AlarmDef, event: bool) -> str:
        """Evaluate *alarm*; return its :mod:`alarmer.telemetry` outcome."""
        now_ns = time.time_ns()
        now_ts = now_ns / 1e9
        self.stats.evaluations += 1
        if event:
            self.stats.event_evaluations += 1
        if alarm.time_constraints and not self._within(alarm, now_ts):
            self.stats.frozen += 1
            return telemetry.FROZEN
        try:
            decision = self.decide(alarm, now_ns)
        except Exception:
            self.stats.errors += 1
            LOG.exception("alarm %s: evaluation failed", alarm.alarm_id)
            return telemetry.ERROR
        if decision.action == decide.NOTHING:
            return telemetry.UNCHANGED
        return self._commit(
            alarm, decision, dt.datetime.fromtimestamp(now_ts, dt.UTC)
        )

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
        return evaluate.evaluate(
            alarm,
            lambda index, kind, rule: self._outcome(
                alarm, index, kind, rule, now_ns
            ),
        )

    def _outcome(
        self,
        alarm: AlarmDef,
        index: int,
        alarm_type: str,
        rule: Mapping[str, Any],
        now_ns: int,
    ) -> Outcome:
        plan = alarm.plans[index]
        if not isinstance(plan, data.Plan):
            return decide.insufficient(
                f"alarm statistics retrieval failed: {plan}"
            )
        now_ts = now_ns / 1e9
        target = alarm.targets[index] if index < len(alarm.targets) else None
        if alarm_type == data.BY_RESOURCES or (
            not isinstance(target, list) and now_ts >= alarm.resolve_after
        ):
            target = self._resolve(alarm, index, alarm_type, rule, now_ts)
        if not isinstance(target, list):
            return decide.insufficient(str(target))
        try:
            return data.read_outcome(
                self.rt.series, plan, target, now_ns, cache=self.cache
            )
        except Exception as exc:
            LOG.warning(
                "alarm %s: statistics retrieval failed: %s",
                alarm.alarm_id,
                exc,
            )
            return decide.insufficient(
                f"alarm statistics retrieval failed: {exc}"
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
            )
            target = data.Unresolved(
                f"alarm statistics retrieval failed: {exc}"
            )
        with self._cv:
            self.registry.retarget(alarm, index, target)
        return target

    def _commit(
        self, alarm: AlarmDef, decision: Decision, now: dt.datetime
    ) -> str:
        """Commit *decision*; return its :mod:`alarmer.telemetry` outcome."""
        for _attempt in range(2):
            repeat = decision.action == decide.REPEAT
            if repeat and not alarm.has_actions(alarm.state):
                return telemetry.UNCHANGED
            try:
                with self.rt.db.session() as session:
                    if repeat:
                        done = transitions.record_repeat(
                            session,
                            alarm.alarm_id,
                            alarm.version,
                            decision.reason,
                            decision.reason_data,
                            now=now,
                            snapshot=alarm.snapshot(),
                        )
                    else:
                        done = transitions.record_transition(
                            session,
                            alarm.alarm_id,
                            alarm.version,
                            decision.state,
                            decision.reason,
                            decision.reason_data,
                            now=now,
                            snapshot=alarm.snapshot(),
                        )
                    session.commit()
            except Exception:
                self.stats.errors += 1
                LOG.exception(
                    "alarm %s: committing %s to %s failed; retried at the "
                    "next evaluation",
                    alarm.alarm_id,
                    decision.action,
                    decision.state,
                )
                return telemetry.ERROR
            if done:
                self._applied(alarm, decision, repeat)
                return telemetry.REPEAT if repeat else telemetry.TRANSITION
            self.stats.fence_conflicts += 1
            fresh = self._reload(alarm.alarm_id)
            if fresh is None:
                return telemetry.CONFLICT
            alarm = fresh
            try:
                decision = self.decide(alarm, time.time_ns())
            except Exception:
                LOG.exception("alarm %s: evaluation failed", alarm.alarm_id)
                return telemetry.ERROR
            if decision.action == decide.NOTHING:
                return telemetry.UNCHANGED
        return telemetry.CONFLICT

    def _applied(
        self, alarm: AlarmDef, decision: Decision, repeat: bool
    ) -> None:
        bump = alarm.has_actions(decision.state)
        with self._cv:
            self._own_bumps += 1
            self.registry.committed(alarm, decision.state, bump)
        if repeat:
            self.stats.repeats += 1
        else:
            self.stats.transitions += 1
            self.rt.telemetry.transitioned(decision.state)
        if bump and self._on_outbox is not None:
            self._on_outbox()

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
            LOG.exception("alarm %s: reloading failed", alarm_id)
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
