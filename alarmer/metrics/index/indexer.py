"""The metric index in SQL: archive policies, their rules and metrics.

As in Gnocchi the index (what exists, who owns it, which policy applies)
lives in the SQL database while the series data live in the engine's
storage driver.  :class:`Indexer` is the only door to these tables; it
returns plain frozen objects (:class:`MetricInfo`, :class:`Rule`,
:class:`~alarmer.metrics.policy.ArchivePolicy`), never ORM rows.

Archive policies are few and read on every write of measures, so the
indexer keeps them in a small bounded cache that expires after
``policy_ttl`` seconds (a PATCH made by another process is seen at most
that late; one made by this process at once).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

from alarmer import db as db_mod
from alarmer.db import Base, UTCDateTime
from alarmer.errors import AlarmerError
from alarmer.metrics import policy as ap

LOG = logging.getLogger(__name__)

NS = ap.NS


# --------------------------------------------------------------- models --


class ArchivePolicyRow(Base):
    """A named archive policy (Gnocchi's ``archive_policy`` table).

    ``definition`` is Gnocchi's JSON shape, durations in seconds:
    ``[{"granularity": 60, "points": 10080, "timespan": 604800}, ...]``.
    """

    __tablename__ = "archive_policy"

    name: orm.Mapped[str] = orm.mapped_column(sa.String(255), primary_key=True)
    back_window: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, nullable=False, default=0
    )
    definition: orm.Mapped[list[dict[str, Any]]] = orm.mapped_column(
        sa.JSON, nullable=False
    )
    aggregation_methods: orm.Mapped[list[str]] = orm.mapped_column(
        sa.JSON, nullable=False
    )


class ArchivePolicyRule(Base):
    """Which policy a metric created without one gets, by name pattern."""

    __tablename__ = "archive_policy_rule"

    name: orm.Mapped[str] = orm.mapped_column(sa.String(255), primary_key=True)
    archive_policy_name: orm.Mapped[str] = orm.mapped_column(
        sa.String(255),
        sa.ForeignKey("archive_policy.name", ondelete="RESTRICT"),
        nullable=False,
    )
    metric_pattern: orm.Mapped[str] = orm.mapped_column(
        sa.String(255), nullable=False
    )

    __table_args__ = (
        sa.Index(
            "ix_archive_policy_rule_archive_policy_name",
            "archive_policy_name",
        ),
    )


class Metric(Base):
    """A metric: its id, name, unit, policy, owner and resource."""

    __tablename__ = "metric"

    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), primary_key=True)
    archive_policy_name: orm.Mapped[str] = orm.mapped_column(
        sa.String(255),
        sa.ForeignKey("archive_policy.name", ondelete="RESTRICT"),
        nullable=False,
    )
    name: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True
    )
    unit: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(31), nullable=True
    )
    resource_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(36), nullable=True
    )
    creator: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True
    )
    created_by_user_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True
    )
    created_by_project_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True
    )
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        UTCDateTime, nullable=False, default=db_mod.now
    )

    __table_args__ = (
        sa.UniqueConstraint("resource_id", "name"),
        sa.Index("ix_metric_archive_policy_name", "archive_policy_name"),
        sa.Index("ix_metric_created_by_project_id", "created_by_project_id"),
    )


# ----------------------------------------------------------- errors --


class IndexerError(AlarmerError):
    """Base of the index errors; the message is meant for the client."""


class NoSuchArchivePolicy(IndexerError):
    """The named archive policy does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Archive policy {name} does not exist")
        self.name = name


class ArchivePolicyAlreadyExists(IndexerError):
    """An archive policy with this name exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Archive policy {name} already exists")
        self.name = name


class ArchivePolicyInUse(IndexerError):
    """The archive policy is used by metrics or rules."""

    def __init__(self, name: str, detail: str = "") -> None:
        message = f"Archive policy {name} is still in use"
        if detail:
            message += f" by {detail}"
        super().__init__(message)
        self.name = name


class UnsupportedArchivePolicyChange(IndexerError):
    """The requested change of a policy is not allowed."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(
            f"Archive policy {name} does not support change: {reason}"
        )
        self.name = name


class NoSuchArchivePolicyRule(IndexerError):
    """The named rule does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Archive policy rule {name} does not exist")
        self.name = name


class ArchivePolicyRuleAlreadyExists(IndexerError):
    """A rule with this name exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Archive policy rule {name} already exists")
        self.name = name


class NoArchivePolicyForMetric(IndexerError):
    """No policy given and no rule matches the metric name."""

    def __init__(self, metric_name: str | None) -> None:
        super().__init__(
            "No archive policy name specified and no archive policy rule "
            f"found matching the metric name {metric_name}"
        )
        self.metric_name = metric_name


class NoSuchMetric(IndexerError):
    """The metric does not exist (or is not visible to the caller)."""

    def __init__(self, metric_id: str) -> None:
        super().__init__(f"Metric {metric_id} does not exist")
        self.metric_id = metric_id


class NamedMetricAlreadyExists(IndexerError):
    """The resource already has a metric of this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Named metric {name} already exists")
        self.name = name


# ---------------------------------------------------------- values --


@dataclasses.dataclass(frozen=True)
class Rule:
    """An archive policy rule."""

    name: str
    archive_policy_name: str
    metric_pattern: str

    def to_dict(self) -> dict[str, str]:
        """Gnocchi's JSON shape of a rule."""
        return {
            "name": self.name,
            "archive_policy_name": self.archive_policy_name,
            "metric_pattern": self.metric_pattern,
        }


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    """One row of the metric index, with its archive policy."""

    id: str
    archive_policy: ap.ArchivePolicy
    name: str | None
    unit: str | None
    resource_id: str | None
    creator: str | None
    created_by_user_id: str | None
    created_by_project_id: str | None
    created_at: dt.datetime

    @property
    def archive_policy_name(self) -> str:
        """Name of the metric's archive policy."""
        return self.archive_policy.name

    def to_dict(self) -> dict[str, Any]:
        """Gnocchi's JSON shape, with the policy expanded."""
        return {
            "id": self.id,
            "creator": self.creator,
            "created_by_user_id": self.created_by_user_id,
            "created_by_project_id": self.created_by_project_id,
            "name": self.name,
            "unit": self.unit,
            "resource_id": self.resource_id,
            "archive_policy_name": self.archive_policy.name,
            "archive_policy": self.archive_policy.to_dict(),
        }


@dataclasses.dataclass(frozen=True)
class MetricFilter:
    """Filters of :meth:`Indexer.list_metrics` (None: no filter).

    ``project_id`` restricts to metrics created by that project;
    ``any_project`` (admins) lifts the restriction.
    """

    any_project: bool = False
    project_id: str | None = None
    ids: Sequence[str] | None = None
    name: str | None = None
    unit: str | None = None
    archive_policy_name: str | None = None
    creator: str | None = None
    user_id: str | None = None
    resource_id: str | None = None


#: Columns a metric listing can be sorted by.
METRIC_SORT_KEYS = (
    "id",
    "name",
    "unit",
    "archive_policy_name",
    "creator",
    "resource_id",
    "created_by_user_id",
    "created_by_project_id",
    "created_at",
)


def policy_to_row(policy: ap.ArchivePolicy) -> dict[str, Any]:
    """Column values storing *policy*."""
    return {
        "name": policy.name,
        "back_window": policy.back_window,
        "definition": [item.to_dict() for item in policy.definition],
        "aggregation_methods": sorted(policy.aggregation_methods),
    }


def policy_from_row(
    name: str,
    back_window: int,
    definition: Sequence[Mapping[str, Any]],
    methods: Sequence[str],
) -> ap.ArchivePolicy:
    """Rebuild an :class:`ArchivePolicy` from its stored columns."""
    items = tuple(
        ap.PolicyItem(
            granularity=round(float(item["granularity"]) * NS),
            points=(
                None if item.get("points") is None else int(item["points"])
            ),
        )
        for item in definition
    )
    return ap.ArchivePolicy(
        name=name,
        definition=items,
        aggregation_methods=tuple(methods),
        back_window=int(back_window),
    )


def match_rule(rules: Iterable[Rule], metric_name: str | None) -> Rule | None:
    """The first rule matching *metric_name* in Gnocchi's order.

    Rules are tried by ``metric_pattern`` descending then ``name``
    ascending, with :func:`fnmatch.fnmatch`; a metric without a name is
    matched as the empty string.
    """
    ordered = sorted(rules, key=lambda r: r.name)
    ordered.sort(key=lambda r: r.metric_pattern, reverse=True)
    name = metric_name or ""
    for rule in ordered:
        if fnmatch.fnmatch(name, rule.metric_pattern):
            return rule
    return None


class _TTLCache:
    """A small bounded mapping whose entries expire (thread-safe)."""

    def __init__(self, maxsize: int, ttl: float) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        now = time.monotonic()
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            if entry[0] < now:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return entry[1]

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + self.ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def discard(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)


def _is_integrity(error: sa_exc.DBAPIError) -> bool:
    return isinstance(error, sa_exc.IntegrityError)


class Indexer:
    """Reads and writes the metric index through a :class:`Database`."""

    def __init__(
        self,
        database: db_mod.Database,
        *,
        policy_cache_size: int = 256,
        policy_ttl: float = 10.0,
    ) -> None:
        self.db = database
        self._policies = _TTLCache(policy_cache_size, policy_ttl)

    # ---------------------------------------------------- policies --

    def create_archive_policy(
        self, policy: ap.ArchivePolicy
    ) -> ap.ArchivePolicy:
        """Store a new policy.

        :raises ArchivePolicyAlreadyExists: when the name is taken.
        """
        try:
            with self.db.session() as session, session.begin():
                if session.get(ArchivePolicyRow, policy.name) is not None:
                    raise ArchivePolicyAlreadyExists(policy.name)
                session.add(ArchivePolicyRow(**policy_to_row(policy)))
        except sa_exc.IntegrityError as exc:
            raise ArchivePolicyAlreadyExists(policy.name) from exc
        LOG.info("archive policy %s created", policy.name)
        self._policies.put(policy.name, policy)
        return policy

    def list_archive_policies(self) -> list[ap.ArchivePolicy]:
        """Every policy, by name."""
        with self.db.read_session() as session:
            rows = session.scalars(
                sa.select(ArchivePolicyRow).order_by(ArchivePolicyRow.name)
            ).all()
            return [self._policy_of_row(row) for row in rows]

    def get_archive_policy(self, name: str) -> ap.ArchivePolicy | None:
        """The policy called *name* (cached), or None."""
        cached = self._policies.get(name)
        if cached is not None:
            return cached
        with self.db.read_session() as session:
            row = session.get(ArchivePolicyRow, name)
            if row is None:
                return None
            return self._policy_of_row(row)

    def _policy_of_row(self, row: ArchivePolicyRow) -> ap.ArchivePolicy:
        policy = policy_from_row(
            row.name, row.back_window, row.definition, row.aggregation_methods
        )
        self._policies.put(policy.name, policy)
        return policy

    def update_archive_policy(
        self,
        name: str,
        definition: Sequence[ap.PolicyItem] | None = None,
        back_window: int | None = None,
    ) -> ap.ArchivePolicy:
        """Change the points/timespan of a policy's items or its back window.

        Granularities cannot be added, removed or changed.

        :raises NoSuchArchivePolicy: unknown *name*.
        :raises UnsupportedArchivePolicyChange: granularities differ.
        """
        with self.db.session() as session, session.begin():
            row = session.get(ArchivePolicyRow, name, with_for_update=True)
            if row is None:
                raise NoSuchArchivePolicy(name)
            current = policy_from_row(
                row.name,
                row.back_window,
                row.definition,
                row.aggregation_methods,
            )
            items = current.definition
            if definition is not None:
                old = sorted(current.granularities)
                new = sorted(item.granularity for item in definition)
                if old != new:
                    raise UnsupportedArchivePolicyChange(
                        name,
                        "granularities cannot be added, removed or changed",
                    )
                items = tuple(definition)
            updated = ap.ArchivePolicy(
                name=name,
                definition=items,
                aggregation_methods=current.aggregation_methods,
                back_window=(
                    current.back_window if back_window is None else back_window
                ),
            )
            values = policy_to_row(updated)
            row.definition = values["definition"]
            row.back_window = values["back_window"]
        LOG.info("archive policy %s updated", name)
        self._policies.put(name, updated)
        return updated

    def delete_archive_policy(self, name: str) -> None:
        """Delete an unused policy.

        :raises NoSuchArchivePolicy: unknown *name*.
        :raises ArchivePolicyInUse: metrics or rules use it.
        """
        try:
            with self.db.session() as session, session.begin():
                row = session.get(ArchivePolicyRow, name)
                if row is None:
                    raise NoSuchArchivePolicy(name)
                rules = session.scalars(
                    sa.select(ArchivePolicyRule.name)
                    .where(ArchivePolicyRule.archive_policy_name == name)
                    .order_by(ArchivePolicyRule.name)
                ).all()
                if rules:
                    raise ArchivePolicyInUse(
                        name, "archive policy rule(s) " + ", ".join(rules)
                    )
                used = session.scalar(
                    sa.select(Metric.id)
                    .where(Metric.archive_policy_name == name)
                    .limit(1)
                )
                if used is not None:
                    raise ArchivePolicyInUse(name)
                session.delete(row)
        except sa_exc.IntegrityError as exc:
            # A metric or rule appeared between the check and the delete.
            raise ArchivePolicyInUse(name) from exc
        finally:
            self._policies.discard(name)
        LOG.info("archive policy %s deleted", name)

    # ------------------------------------------------------- rules --

    def create_archive_policy_rule(
        self, name: str, archive_policy_name: str, metric_pattern: str
    ) -> Rule:
        """Store a new rule.

        :raises NoSuchArchivePolicy: the policy does not exist.
        :raises ArchivePolicyRuleAlreadyExists: the name is taken.
        """
        rule = Rule(name, archive_policy_name, metric_pattern)
        try:
            with self.db.session() as session, session.begin():
                if session.get(ArchivePolicyRow, archive_policy_name) is None:
                    raise NoSuchArchivePolicy(archive_policy_name)
                if session.get(ArchivePolicyRule, name) is not None:
                    raise ArchivePolicyRuleAlreadyExists(name)
                session.add(ArchivePolicyRule(**rule.to_dict()))
        except sa_exc.IntegrityError as exc:
            if self.get_archive_policy(archive_policy_name) is None:
                raise NoSuchArchivePolicy(archive_policy_name) from exc
            raise ArchivePolicyRuleAlreadyExists(name) from exc
        LOG.info("archive policy rule %s created", name)
        return rule

    def list_archive_policy_rules(self) -> list[Rule]:
        """Every rule, in matching order (pattern desc, name asc)."""
        with self.db.read_session() as session:
            rows = session.execute(
                sa.select(
                    ArchivePolicyRule.name,
                    ArchivePolicyRule.archive_policy_name,
                    ArchivePolicyRule.metric_pattern,
                )
            ).all()
        return _rule_order([Rule(*row) for row in rows])

    def get_archive_policy_rule(self, name: str) -> Rule | None:
        """The rule called *name*, or None."""
        with self.db.read_session() as session:
            row = session.get(ArchivePolicyRule, name)
            if row is None:
                return None
            return Rule(row.name, row.archive_policy_name, row.metric_pattern)

    def rename_archive_policy_rule(self, name: str, new_name: str) -> Rule:
        """Rename a rule.

        :raises NoSuchArchivePolicyRule: unknown *name*.
        :raises ArchivePolicyRuleAlreadyExists: *new_name* is taken.
        """
        try:
            with self.db.session() as session, session.begin():
                row = session.get(ArchivePolicyRule, name)
                if row is None:
                    raise NoSuchArchivePolicyRule(name)
                if new_name == name:
                    return Rule(
                        row.name, row.archive_policy_name, row.metric_pattern
                    )
                if session.get(ArchivePolicyRule, new_name) is not None:
                    raise ArchivePolicyRuleAlreadyExists(new_name)
                session.execute(
                    sa.update(ArchivePolicyRule)
                    .where(ArchivePolicyRule.name == name)
                    .values(name=new_name)
                )
                rule = Rule(
                    new_name, row.archive_policy_name, row.metric_pattern
                )
        except sa_exc.IntegrityError as exc:
            raise ArchivePolicyRuleAlreadyExists(new_name) from exc
        LOG.info("archive policy rule %s renamed to %s", name, new_name)
        return rule

    def delete_archive_policy_rule(self, name: str) -> None:
        """Delete a rule.

        :raises NoSuchArchivePolicyRule: unknown *name*.
        """
        with self.db.session() as session, session.begin():
            result = session.execute(
                sa.delete(ArchivePolicyRule).where(
                    ArchivePolicyRule.name == name
                )
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise NoSuchArchivePolicyRule(name)
        LOG.info("archive policy rule %s deleted", name)

    def get_archive_policy_for_metric(
        self, metric_name: str | None
    ) -> str | None:
        """Name of the policy the rules give *metric_name*, or None."""
        rule = match_rule(self.list_archive_policy_rules(), metric_name)
        return None if rule is None else rule.archive_policy_name

    # ----------------------------------------------------- metrics --

    def create_metric(
        self,
        *,
        archive_policy_name: str | None,
        name: str | None = None,
        unit: str | None = None,
        resource_id: str | None = None,
        user_id: str | None = None,
        project_id: str | None = None,
        metric_id: str | None = None,
    ) -> MetricInfo:
        """Create a metric; its policy comes from the rules when not given.

        :raises NoSuchArchivePolicy: the named policy does not exist.
        :raises NoArchivePolicyForMetric: no policy given, no rule matches.
        :raises NamedMetricAlreadyExists: the resource has a metric *name*.
        """
        if archive_policy_name is None:
            archive_policy_name = self.get_archive_policy_for_metric(name)
            if archive_policy_name is None:
                raise NoArchivePolicyForMetric(name)
        policy = self.get_archive_policy(archive_policy_name)
        if policy is None:
            raise NoSuchArchivePolicy(archive_policy_name)
        creator = None
        if user_id is not None or project_id is not None:
            creator = f"{user_id or ''}:{project_id or ''}"
        row = Metric(
            id=metric_id or str(uuid.uuid4()),
            archive_policy_name=archive_policy_name,
            name=name,
            unit=unit,
            resource_id=resource_id,
            creator=creator,
            created_by_user_id=user_id,
            created_by_project_id=project_id,
            created_at=db_mod.now(),
        )
        try:
            with self.db.session() as session, session.begin():
                if session.get(ArchivePolicyRow, archive_policy_name) is None:
                    raise NoSuchArchivePolicy(archive_policy_name)
                if resource_id is not None and name is not None:
                    taken = session.scalar(
                        sa.select(Metric.id).where(
                            Metric.resource_id == resource_id,
                            Metric.name == name,
                        )
                    )
                    if taken is not None:
                        raise NamedMetricAlreadyExists(name)
                session.add(row)
                if resource_id is not None:
                    from alarmer.metrics.index import resources

                    resources.bump_generation(session)
        except sa_exc.IntegrityError as exc:
            if self.get_archive_policy(archive_policy_name) is None:
                raise NoSuchArchivePolicy(archive_policy_name) from exc
            raise NamedMetricAlreadyExists(name or row.id) from exc
        LOG.info("metric %s created (policy %s)", row.id, archive_policy_name)
        return self._info(row, policy)

    def _info(self, row: Any, policy: ap.ArchivePolicy) -> MetricInfo:
        return MetricInfo(
            id=row.id,
            archive_policy=policy,
            name=row.name,
            unit=row.unit,
            resource_id=row.resource_id,
            creator=row.creator,
            created_by_user_id=row.created_by_user_id,
            created_by_project_id=row.created_by_project_id,
            created_at=row.created_at,
        )

    def _infos(
        self, session: orm.Session, rows: Sequence[Any]
    ) -> list[MetricInfo]:
        result = []
        for row in rows:
            policy = self._policies.get(row.archive_policy_name)
            if policy is None:
                prow = session.get(ArchivePolicyRow, row.archive_policy_name)
                if prow is None:  # pragma: no cover - FK RESTRICT
                    continue
                policy = self._policy_of_row(prow)
            result.append(self._info(row, policy))
        return result

    def get_metric(
        self, metric_id: str, filters: MetricFilter | None = None
    ) -> MetricInfo | None:
        """The metric *metric_id* if it exists and passes *filters*."""
        found = self.get_metrics([metric_id], filters)
        return found.get(metric_id)

    def get_metrics(
        self, metric_ids: Iterable[str], filters: MetricFilter | None = None
    ) -> dict[str, MetricInfo]:
        """The metrics among *metric_ids* that exist and pass *filters*."""
        ids = list(dict.fromkeys(str(i) for i in metric_ids))
        if not ids:
            return {}
        query = sa.select(*_METRIC_COLUMNS).where(Metric.id.in_(ids))
        query = _filtered(query, filters or MetricFilter(any_project=True))
        with self.db.read_session() as session:
            rows = session.execute(query).all()
            return {info.id: info for info in self._infos(session, rows)}

    def list_metrics(
        self,
        filters: MetricFilter,
        *,
        limit: int | None = None,
        marker: str | None = None,
        sorts: Sequence[tuple[str, str]] = (),
    ) -> list[MetricInfo]:
        """Metrics passing *filters*, sorted and paged like Gnocchi.

        :param sorts: ``(key, "asc"|"desc")`` pairs; ``id`` ascending is
            always added last so the order is total.
        :param marker: id of the last metric of the previous page.
        :raises NoSuchMetric: the marker is not a visible metric.
        :raises ValueError: unknown sort key or direction.
        """
        keys = _sort_keys(sorts)
        query = _filtered(sa.select(*_METRIC_COLUMNS), filters)
        with self.db.read_session() as session:
            if marker is not None:
                mark = session.scalar(
                    _filtered(
                        sa.select(Metric).where(Metric.id == marker), filters
                    )
                )
                if mark is None:
                    raise NoSuchMetric(marker)
                query = query.where(_after(keys, mark))
            query = query.order_by(
                *(
                    _sort_expr(key).desc()
                    if direction == "desc"
                    else _sort_expr(key).asc()
                    for key, direction in keys
                )
            )
            if limit is not None:
                query = query.limit(limit)
            rows = session.execute(query).all()
            return self._infos(session, rows)

    def delete_metric(self, metric_id: str) -> bool:
        """Remove *metric_id* from the index; False if it did not exist."""
        with self.db.session() as session, session.begin():
            result = session.execute(
                sa.delete(Metric).where(Metric.id == metric_id)
            )
            deleted = bool(result.rowcount)  # type: ignore[attr-defined]
        if deleted:
            LOG.info("metric %s deleted from the index", metric_id)
        return deleted

    def count_metrics(self) -> int:
        """Number of metrics in the index."""
        with self.db.read_session() as session:
            return int(
                session.scalar(sa.select(sa.func.count()).select_from(Metric))
                or 0
            )


#: The metric columns, selected without building ORM objects (faster).
_METRIC_COLUMNS = tuple(Metric.__table__.columns)


def _rule_order(rules: list[Rule]) -> list[Rule]:
    ordered = sorted(rules, key=lambda r: r.name)
    ordered.sort(key=lambda r: r.metric_pattern, reverse=True)
    return ordered


def _filtered(query: sa.Select, filters: MetricFilter) -> sa.Select:
    if not filters.any_project:
        if filters.project_id is None:
            query = query.where(Metric.created_by_project_id.is_(None))
        else:
            query = query.where(
                Metric.created_by_project_id == filters.project_id
            )
    if filters.ids is not None:
        query = query.where(Metric.id.in_(list(filters.ids)))
    for column, value in (
        (Metric.name, filters.name),
        (Metric.unit, filters.unit),
        (Metric.archive_policy_name, filters.archive_policy_name),
        (Metric.creator, filters.creator),
        (Metric.created_by_user_id, filters.user_id),
        (Metric.resource_id, filters.resource_id),
    ):
        if value is not None:
            query = query.where(column == value)
    return query


def _sort_keys(sorts: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    for key, direction in sorts:
        if key not in METRIC_SORT_KEYS:
            raise ValueError(f"unknown sort key {key!r}")
        if direction not in ("asc", "desc"):
            raise ValueError(f"unknown sort direction {direction!r}")
        if key not in (k for k, _ in keys):
            keys.append((key, direction))
    if "id" not in (k for k, _ in keys):
        keys.append(("id", "asc"))
    return keys


def _sort_expr(key: str) -> Any:
    column = getattr(Metric, key)
    if key in ("id", "created_at", "archive_policy_name"):
        return column
    # NULL sorts differently per backend: order it as the empty string.
    return sa.func.coalesce(column, "")


def _after(keys: Sequence[tuple[str, str]], mark: Metric) -> Any:
    """Keyset condition: rows strictly after *mark* in the sort order."""
    clauses = []
    for i, (key, direction) in enumerate(keys):
        value = getattr(mark, key)
        if key not in ("id", "created_at", "archive_policy_name"):
            value = "" if value is None else value
        expr = _sort_expr(key)
        step = expr < value if direction == "desc" else expr > value
        equal = [
            _sort_expr(k)
            == (
                getattr(mark, k)
                if k in ("id", "created_at", "archive_policy_name")
                else (getattr(mark, k) or "")
            )
            for k, _ in keys[:i]
        ]
        clauses.append(sa.and_(*equal, step))
    return sa.or_(*clauses)
