"""The alarms one evaluator owns, and which metric each of them reads.

:class:`Registry` holds the in-memory definitions (:class:`AlarmDef`) of
the owned alarms, the version each was loaded at, and the index metric
id -> alarm ids that the event-driven path looks up when measures
arrive.  It does no I/O and takes no lock: the service calls it under
its own condition variable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from alarmer.alarms import model, silences, transitions
from alarmer.evaluator import lifecycle, reader


@dataclasses.dataclass(slots=True, eq=False)
class AlarmDef:
    """One owned alarm as the worker keeps it in memory."""

    alarm_id: str
    type: str
    rule: dict[str, Any]
    version: int
    seq: int
    state: str
    name: str
    severity: str
    project_id: str
    ok_actions: tuple[str, ...]
    alarm_actions: tuple[str, ...]
    insufficient_data_actions: tuple[str, ...]
    repeat_actions: bool
    time_constraints: list[dict[str, Any]]
    #: Metric ids read, per threshold (sub-)rule, or why unresolved.
    targets: list[list[str] | reader.Unresolved]
    subrules: list[Mapping[str, Any]]
    #: Evaluation plan per threshold (sub-)rule, or why it has none.
    plans: list[reader.Plan | Exception]
    slot: float
    token: int = 0
    tc_inside: bool = True
    tc_until: float = 0.0
    resolve_after: float = 0.0
    #: Lifecycle options, and what is remembered to apply them.
    policy: lifecycle.Policy = lifecycle.AODH
    memory: lifecycle.Memory = lifecycle.FORGOTTEN
    #: The silences covering the alarm at its last evaluation.
    silenced: tuple[str, ...] = ()
    #: The state of its last queued notification.
    notified_state: str | None = None
    #: A silence held back a notification (owed once unsilenced).
    held: bool = False
    #: Its own evaluation interval in seconds (0: the service's).
    interval: float = 0.0
    #: What silence matchers test (see :meth:`silence_facts`).
    facts: dict[str, list[str]] | None = None
    #: The list of silences in force last checked (by identity) and the
    #: ids of those covering the alarm: checked again only when the list
    #: changes.
    silence_memo: tuple[object, tuple[str, ...]] | None = None

    def metric_ids(self) -> set[str]:
        """Every metric this alarm reads."""
        return {m for t in self.targets if isinstance(t, list) for m in t}

    def snapshot(self) -> transitions.AlarmSnapshot:
        """The transition snapshot at the version held."""
        return transitions.AlarmSnapshot.from_row(self)

    def silence_facts(self) -> dict[str, list[str]]:
        """The values silence matchers test, built once.

        They are those of the definition (a changed alarm is loaded
        again as a new :class:`AlarmDef`).
        """
        if self.facts is None:
            self.facts = silences.facts(self)
        return self.facts

    def has_actions(self, state: str) -> bool:
        """True when *state* has notification actions."""
        if state == model.ALARM:
            return bool(self.alarm_actions)
        if state == model.OK:
            return bool(self.ok_actions)
        return bool(self.insufficient_data_actions)


class Registry:
    """Owned alarm definitions and the metric -> alarms index."""

    def __init__(self) -> None:
        self.alarms: dict[str, AlarmDef] = {}
        #: Version of each owned alarm as last loaded or committed.
        self.versions: dict[str, int] = {}
        self._by_metric: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self.alarms)

    def __contains__(self, alarm_id: object) -> bool:
        return alarm_id in self.alarms

    def get(self, alarm_id: str) -> AlarmDef | None:
        """The definition of *alarm_id*, if owned."""
        return self.alarms.get(alarm_id)

    @property
    def by_metric(self) -> Mapping[str, set[str]]:
        """The index metric id -> ids of the owned alarms reading it."""
        return self._by_metric

    def reads_any(self, metric_id: str) -> bool:
        """True when an owned alarm reads *metric_id*."""
        return metric_id in self._by_metric

    def readers(self, metric_ids: Iterable[str]) -> dict[str, None]:
        """Ids of the owned alarms reading any of *metric_ids* (ordered)."""
        ids: dict[str, None] = {}
        by_metric = self._by_metric
        for metric_id in metric_ids:
            for alarm_id in by_metric.get(metric_id, ()):
                ids[alarm_id] = None
        return ids

    def drop(self, alarm_id: str) -> None:
        """Forget *alarm_id* (deleted, disabled or no longer owned)."""
        self.versions.pop(alarm_id, None)
        old = self.alarms.pop(alarm_id, None)
        if old is not None:
            self._unindex(old)

    def put(self, alarm: AlarmDef) -> AlarmDef | None:
        """Hold *alarm*, replacing (and returning) any older definition."""
        old = self.alarms.get(alarm.alarm_id)
        if old is not None:
            self._unindex(old)
        self.alarms[alarm.alarm_id] = alarm
        self._index(alarm)
        return old

    def note_versions(self, versions: Mapping[str, int]) -> None:
        """Record the versions the definitions were loaded at."""
        self.versions.update(versions)

    def retarget(
        self,
        alarm: AlarmDef,
        index: int,
        target: list[str] | reader.Unresolved,
    ) -> None:
        """Set what sub-rule *index* of *alarm* reads, and reindex it."""
        if alarm.alarm_id not in self.alarms:
            return
        self._unindex(alarm)
        while len(alarm.targets) <= index:
            alarm.targets.append(reader.Unresolved(""))
        alarm.targets[index] = target
        self._index(alarm)

    def committed(self, alarm: AlarmDef, state: str, notified: bool) -> None:
        """Record a transition this worker committed for *alarm*."""
        alarm.version += 1
        alarm.seq += 1 if notified else 0
        alarm.state = state
        if self.versions.get(alarm.alarm_id) == alarm.version - 1:
            self.versions[alarm.alarm_id] = alarm.version

    def _index(self, alarm: AlarmDef) -> None:
        for metric_id in alarm.metric_ids():
            self._by_metric.setdefault(metric_id, set()).add(alarm.alarm_id)

    def _unindex(self, alarm: AlarmDef) -> None:
        for metric_id in alarm.metric_ids():
            ids = self._by_metric.get(metric_id)
            if ids is not None:
                ids.discard(alarm.alarm_id)
                if not ids:
                    del self._by_metric[metric_id]
