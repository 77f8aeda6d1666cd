"""The one door to the metric index: :class:`Indexer`.

As in Gnocchi the index (what exists, who owns it, which policy applies)
lives in the SQL database while the series data live in the engine's
storage driver.  Every read and write of the index tables by the rest
of alarmer goes through an :class:`Indexer`; the modules of this
package hold the statements, the indexer holds the transactions, the
policy cache and the error translation.

Two ways to call it:

* inside the caller's transaction: resource and type verbs take the
  caller's SQLAlchemy session first; policy, rule and metric verbs take
  it as ``session=``.  The indexer then flushes and never commits, so
  that a resource and its metrics are written in one transaction;
* on their own: policy, rule and metric verbs called without a session
  run in a transaction of their own (committed on return), which is
  what the views needing one call use.

Policies, rules and metrics come back as plain frozen objects
(:class:`~alarmer.metrics.index.metrics.MetricInfo`,
:class:`~alarmer.metrics.index.policies.Rule`,
:class:`~alarmer.metrics.policy.ArchivePolicy`); resources as rows of
the caller's session, to be shown with :meth:`Indexer.show_resources`.

Archive policies are few and read on every write of measures, so the
indexer keeps them in a small bounded cache that expires after
``policy_ttl`` seconds (a PATCH made by another process is seen at most
that late; one made by this process at once).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

from alarmer import db as db_mod
from alarmer import timeutils
from alarmer.metrics import policy as ap
from alarmer.metrics.index import groups, policies, resources, search, types
from alarmer.metrics.index import metrics as metrics_mod
from alarmer.metrics.index.access import Caller
from alarmer.metrics.index.errors import (
    ArchivePolicyAlreadyExists,
    ArchivePolicyInUse,
    ArchivePolicyRuleAlreadyExists,
    NamedMetricAlreadyExists,
    NoSuchArchivePolicy,
)
from alarmer.metrics.index.metrics import MetricFilter, MetricInfo
from alarmer.metrics.index.policies import Rule
from alarmer.metrics.index.schema import (
    ArchivePolicyRow,
    MeasureRefusalModel,
    ResourceModel,
    current_generation,
    record_refusals,
)
from alarmer.metrics.index.types import TypeDef

LOG = logging.getLogger(__name__)


class Indexer:
    """Reads and writes the metric index of a :class:`~alarmer.db.Database`.

    :param database: the database holding the index tables.
    :param policy_cache_size: archive policies kept in memory.
    :param policy_ttl: seconds a cached policy is trusted.
    """

    def __init__(
        self,
        database: db_mod.Database,
        *,
        policy_cache_size: int = 256,
        policy_ttl: float = 10.0,
    ) -> None:
        self.db = database
        self._policies = policies.PolicyCache(policy_cache_size, policy_ttl)

    # ------------------------------------------------ transactions --

    @contextlib.contextmanager
    def _writing(self, session: orm.Session | None) -> Iterator[orm.Session]:
        if session is None:
            with self.db.session() as own, own.begin():
                yield own
        else:
            yield session
            session.flush()

    @contextlib.contextmanager
    def _reading(self, session: orm.Session | None) -> Iterator[orm.Session]:
        if session is None:
            with self.db.read_session() as own:
                yield own
        else:
            yield session

    # ---------------------------------------------------- policies --

    def create_archive_policy(
        self, policy: ap.ArchivePolicy, *, session: orm.Session | None = None
    ) -> ap.ArchivePolicy:
        """Store a new policy.

        :raises ArchivePolicyAlreadyExists: when the name is taken.
        """
        try:
            with self._writing(session) as s:
                policies.insert_policy(s, policy)
        except sa_exc.IntegrityError as exc:
            raise ArchivePolicyAlreadyExists(policy.name) from exc
        LOG.info("archive policy %s created", policy.name)
        self._policies.put(policy.name, policy)
        return policy

    def list_archive_policies(
        self, *, session: orm.Session | None = None
    ) -> list[ap.ArchivePolicy]:
        """Every policy, by name."""
        with self._reading(session) as s:
            found = policies.select_policies(s)
        for policy in found:
            self._policies.put(policy.name, policy)
        return found

    def get_archive_policy(
        self, name: str, *, session: orm.Session | None = None
    ) -> ap.ArchivePolicy | None:
        """The policy called *name* (cached), or None."""
        cached = self._policies.get(name)
        if cached is not None:
            return cached
        with self._reading(session) as s:
            policy = policies.select_policy(s, name)
        if policy is not None:
            self._policies.put(name, policy)
        return policy

    def update_archive_policy(
        self,
        name: str,
        definition: Sequence[ap.PolicyItem] | None = None,
        back_window: int | None = None,
        *,
        session: orm.Session | None = None,
    ) -> ap.ArchivePolicy:
        """Change the points/timespan of a policy's items or its back window.

        Granularities cannot be added, removed or changed.

        :raises NoSuchArchivePolicy: unknown *name*.
        :raises UnsupportedArchivePolicyChange: granularities differ.
        """
        with self._writing(session) as s:
            updated = policies.update_policy(s, name, definition, back_window)
        LOG.info("archive policy %s updated", name)
        self._policies.put(name, updated)
        return updated

    def delete_archive_policy(
        self, name: str, *, session: orm.Session | None = None
    ) -> None:
        """Delete an unused policy.

        :raises NoSuchArchivePolicy: unknown *name*.
        :raises ArchivePolicyInUse: metrics or rules use it.
        """
        try:
            with self._writing(session) as s:
                policies.delete_policy(s, name)
        except sa_exc.IntegrityError as exc:
            # A metric or rule appeared between the check and the delete.
            raise ArchivePolicyInUse(name) from exc
        finally:
            self._policies.discard(name)
        LOG.info("archive policy %s deleted", name)

    # ------------------------------------------------------- rules --

    def create_archive_policy_rule(
        self,
        name: str,
        archive_policy_name: str,
        metric_pattern: str,
        *,
        session: orm.Session | None = None,
    ) -> Rule:
        """Store a new rule.

        :raises NoSuchArchivePolicy: the policy does not exist.
        :raises ArchivePolicyRuleAlreadyExists: the name is taken.
        """
        rule = Rule(name, archive_policy_name, metric_pattern)
        try:
            with self._writing(session) as s:
                policies.insert_rule(s, rule)
        except sa_exc.IntegrityError as exc:
            if self.get_archive_policy(archive_policy_name) is None:
                raise NoSuchArchivePolicy(archive_policy_name) from exc
            raise ArchivePolicyRuleAlreadyExists(name) from exc
        LOG.info("archive policy rule %s created", name)
        return rule

    def list_archive_policy_rules(
        self, *, session: orm.Session | None = None
    ) -> list[Rule]:
        """Every rule, in matching order (pattern desc, name asc)."""
        with self._reading(session) as s:
            return policies.select_rules(s)

    def get_archive_policy_rule(
        self, name: str, *, session: orm.Session | None = None
    ) -> Rule | None:
        """The rule called *name*, or None."""
        with self._reading(session) as s:
            return policies.select_rule(s, name)

    def rename_archive_policy_rule(
        self, name: str, new_name: str, *, session: orm.Session | None = None
    ) -> Rule:
        """Rename a rule.

        :raises NoSuchArchivePolicyRule: unknown *name*.
        :raises ArchivePolicyRuleAlreadyExists: *new_name* is taken.
        """
        try:
            with self._writing(session) as s:
                rule = policies.rename_rule(s, name, new_name)
        except sa_exc.IntegrityError as exc:
            raise ArchivePolicyRuleAlreadyExists(new_name) from exc
        LOG.info("archive policy rule %s renamed to %s", name, new_name)
        return rule

    def delete_archive_policy_rule(
        self, name: str, *, session: orm.Session | None = None
    ) -> None:
        """Delete a rule.

        :raises NoSuchArchivePolicyRule: unknown *name*.
        """
        with self._writing(session) as s:
            policies.delete_rule(s, name)
        LOG.info("archive policy rule %s deleted", name)

    def get_archive_policy_for_metric(
        self, metric_name: str | None, *, session: orm.Session | None = None
    ) -> str | None:
        """Name of the policy the rules give *metric_name*, or None."""
        rules = self.list_archive_policy_rules(session=session)
        rule = policies.match_rule(rules, metric_name)
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
        session: orm.Session | None = None,
    ) -> MetricInfo:
        """Create a metric; its policy comes from the rules when not given.

        Its creator is Gnocchi's ``user:project`` of *user_id* and
        *project_id* (see :func:`alarmer.metrics.index.access.creator_of`),
        whichever way the metric is created.

        :raises NoSuchArchivePolicy: the named policy does not exist.
        :raises NoArchivePolicyForMetric: no policy given, no rule matches.
        :raises NamedMetricAlreadyExists: the resource has a metric *name*.
        """
        metric_id = metric_id or str(uuid.uuid4())
        chosen = archive_policy_name
        try:
            with self._writing(session) as s:
                chosen = policies.choose(s, name, archive_policy_name)
                policy = self.get_archive_policy(chosen, session=s)
                if policy is None:
                    raise NoSuchArchivePolicy(chosen)
                row = metrics_mod.insert_metric(
                    s,
                    metric_id=metric_id,
                    archive_policy_name=chosen,
                    name=name,
                    unit=unit,
                    resource_id=resource_id,
                    user_id=user_id,
                    project_id=project_id,
                )
        except sa_exc.IntegrityError as exc:
            if chosen is not None and self.get_archive_policy(chosen) is None:
                raise NoSuchArchivePolicy(chosen) from exc
            raise NamedMetricAlreadyExists(name or metric_id) from exc
        LOG.info("metric %s created (policy %s)", row.id, policy.name)
        return metrics_mod.info_of(row, policy)

    def _infos(
        self, session: orm.Session, rows: Sequence[Any]
    ) -> list[MetricInfo]:
        result = []
        for row in rows:
            policy = self._policy_in(session, row.archive_policy_name)
            if policy is not None:
                result.append(metrics_mod.info_of(row, policy))
        return result

    def _policy_in(
        self, session: orm.Session, name: str
    ) -> ap.ArchivePolicy | None:
        """The policy *name*, from the cache or read in *session*."""
        policy = self._policies.get(name)
        if policy is None:
            prow = session.get(ArchivePolicyRow, name)
            if prow is None:  # pragma: no cover - FK RESTRICT
                return None
            policy = policies.policy_of_row(prow)
            self._policies.put(policy.name, policy)
        return policy

    def get_metric(
        self,
        metric_id: str,
        filters: MetricFilter | None = None,
        *,
        session: orm.Session | None = None,
    ) -> MetricInfo | None:
        """The metric *metric_id* if it exists and passes *filters*."""
        found = self.get_metrics([metric_id], filters, session=session)
        return found.get(metric_id)

    def get_metrics(
        self,
        metric_ids: Iterable[str],
        filters: MetricFilter | None = None,
        *,
        session: orm.Session | None = None,
    ) -> dict[str, MetricInfo]:
        """The metrics among *metric_ids* that exist and pass *filters*."""
        ids = list(dict.fromkeys(str(i) for i in metric_ids))
        if not ids:
            return {}
        with self._reading(session) as s:
            rows = metrics_mod.select_rows(
                s, ids, filters or MetricFilter(any_project=True)
            )
            return {info.id: info for info in self._infos(s, rows)}

    def get_metric_policies(
        self,
        metric_ids: Iterable[str],
        filters: MetricFilter | None = None,
        *,
        session: orm.Session | None = None,
    ) -> dict[str, ap.ArchivePolicy]:
        """The archive policy of each metric among *metric_ids* that
        exists and passes *filters*: what a write of measures needs,
        read without the rest of the metrics' rows (one query)."""
        ids = list(dict.fromkeys(str(i) for i in metric_ids))
        if not ids:
            return {}
        found: dict[str, ap.ArchivePolicy] = {}
        by_name: dict[str, ap.ArchivePolicy | None] = {}
        with self._reading(session) as s:
            for metric_id, name in metrics_mod.select_policy_names(
                s, ids, filters or MetricFilter(any_project=True)
            ):
                if name in by_name:
                    policy = by_name[name]
                else:
                    policy = by_name[name] = self._policy_in(s, name)
                if policy is not None:
                    found[metric_id] = policy
        return found

    def list_metrics(
        self,
        filters: MetricFilter,
        *,
        limit: int | None = None,
        marker: str | None = None,
        sorts: Sequence[tuple[str, str]] = (),
        session: orm.Session | None = None,
    ) -> list[MetricInfo]:
        """Metrics passing *filters*, sorted and paged like Gnocchi.

        :param sorts: ``(key, "asc"|"desc")`` pairs; ``id`` ascending is
            always added last so the order is total.
        :param marker: id of the last metric of the previous page.
        :raises NoSuchMetric: the marker is not a visible metric.
        :raises ValueError: unknown sort key or direction.
        """
        with self._reading(session) as s:
            rows = metrics_mod.list_rows(
                s, filters, limit=limit, marker=marker, sorts=sorts
            )
            return self._infos(s, rows)

    def delete_metric(
        self, metric_id: str, *, session: orm.Session | None = None
    ) -> bool:
        """Remove *metric_id* from the index; False if it did not exist."""
        with self._writing(session) as s:
            deleted = metrics_mod.delete_metrics(s, [metric_id]) > 0
        if deleted:
            LOG.info("metric %s deleted from the index", metric_id)
        return deleted

    def count_metrics(self, *, session: orm.Session | None = None) -> int:
        """Number of metrics in the index."""
        with self._reading(session) as s:
            return metrics_mod.count(s)

    def record_refusals(
        self,
        counts: Mapping[str, int],
        *,
        session: orm.Session | None = None,
    ) -> None:
        """Add late measures refused (by metric id) to the lasting counts."""
        if not any(count > 0 for count in counts.values()):
            return
        with self._writing(session) as s:
            record_refusals(s, counts, timeutils.utcnow())

    def refusal_report(self, *, top: int = 10) -> dict[str, Any]:
        """Late measures refused so far: the total and the *top* metrics.

        ``metrics`` lists the metrics with the most refusals first:
        ``{"metric_id", "refused", "last_refused_at"}``.
        """
        with self._reading(None) as s:
            total = s.scalar(
                sa.select(
                    sa.func.coalesce(
                        sa.func.sum(MeasureRefusalModel.refused), 0
                    )
                )
            )
            count = s.scalar(
                sa.select(sa.func.count()).select_from(MeasureRefusalModel)
            )
            rows = s.execute(
                sa.select(MeasureRefusalModel)
                .order_by(
                    MeasureRefusalModel.refused.desc(),
                    MeasureRefusalModel.metric_id,
                )
                .limit(top)
            ).scalars()
            return {
                "refused_late": int(total or 0),
                "metrics_with_refusals": int(count or 0),
                "metrics": [
                    {
                        "metric_id": row.metric_id,
                        "refused": int(row.refused),
                        "last_refused_at": timeutils.isoformat(
                            row.last_refused_at
                        ),
                    }
                    for row in rows
                ],
            }

    def existing_metric_ids(
        self, session: orm.Session, metric_ids: Iterable[str]
    ) -> set[str]:
        """Those of *metric_ids* that are in the index."""
        return metrics_mod.existing_ids(session, metric_ids)

    # ---------------------------------------------- resource types --

    def get_type(self, session: orm.Session, name: str) -> TypeDef:
        """Load one resource type.

        :raises NoSuchResourceType: when it does not exist.
        """
        return types.get_type(session, name)

    def list_types(self, session: orm.Session) -> list[TypeDef]:
        """Every resource type, by name."""
        return types.list_types(session)

    def create_type(
        self, session: orm.Session, definition: TypeDef
    ) -> TypeDef:
        """Store a new resource type.

        *definition* comes from
        :func:`alarmer.metrics.index.types.parse_type_definition`.

        :raises ResourceAlreadyExists: when the name is taken.
        """
        return types.create_type(session, definition)

    def patch_type(
        self, session: orm.Session, name: str, operations: Any
    ) -> TypeDef:
        """Add or remove attributes of a type with a JSON patch.

        :raises ResourceError: an invalid patch, naming the operation.
        :raises NoSuchResourceType: unknown *name*.
        """
        return types.patch_type(session, name, operations)

    def delete_type(self, session: orm.Session, name: str) -> None:
        """Delete a resource type that no resource uses.

        :raises ResourceTypeInUse: resources of the type exist.
        :raises NoSuchResourceType: unknown *name*.
        """
        types.delete_type(session, name)

    # --------------------------------------------------- resources --

    def create_resource(
        self,
        session: orm.Session,
        rtype: TypeDef,
        body: Mapping[str, Any],
        caller: Caller,
    ) -> ResourceModel:
        """Validate and insert a resource of *rtype* with its metrics.

        ``metrics`` in *body* creates or attaches the named metrics (see
        :meth:`attach_metrics`) in the same transaction.

        :raises ResourceError: bad input, naming the field.
        :raises ResourceAlreadyExists: the id is taken.
        :raises IndexerError: a metric cannot be created or attached.
        """
        row = resources.create_resource(session, rtype, body, caller)
        if "metrics" in body:
            self.attach_metrics(session, row.id, body["metrics"], caller)
        return row

    def import_resources(
        self,
        session: orm.Session,
        rtype: TypeDef,
        bodies: Iterable[Mapping[str, Any]],
        caller: Caller,
        *,
        chunk: int = 5000,
    ) -> list[str]:
        """Insert many resources of *rtype* at once (a bulk load).

        Each body is checked as :meth:`create_resource` checks one
        (without ``metrics``); rows go in with one multi-row insert per
        table and *chunk* resources.

        :returns: the stored ids, in order.
        :raises ResourceError: bad input, naming the field.
        """
        return resources.import_resources(
            session, rtype, bodies, caller, chunk=chunk
        )

    def find_resource(
        self,
        session: orm.Session,
        rtype: TypeDef,
        given_id: str,
        caller: Caller,
        *,
        for_update: bool = False,
    ) -> ResourceModel:
        """Find a resource of *rtype* by the id a client gave.

        :raises NoSuchResource: absent or of another type.
        :raises PermissionError: *caller* may not see it.
        """
        return resources.find_resource(
            session, rtype, given_id, caller, for_update=for_update
        )

    def update_resource(
        self,
        session: orm.Session,
        rtype: TypeDef,
        row: ResourceModel,
        body: Mapping[str, Any],
        caller: Caller,
    ) -> ResourceModel:
        """Apply a PATCH body to *row*; ``metrics`` replaces the metrics.

        :raises ResourceError: bad input, naming the field.
        """
        resources.update_resource(session, rtype, row, body)
        if "metrics" in body:
            self.attach_metrics(
                session, row.id, body["metrics"], caller, replace=True
            )
        return row

    def delete_resources(
        self, session: orm.Session, resource_ids: Sequence[str]
    ) -> list[str]:
        """Delete resources with their metrics; the deleted metric ids."""
        return resources.delete_resources(session, resource_ids)

    def search_resources(
        self,
        session: orm.Session,
        rtype: TypeDef,
        caller: Caller,
        query: Any = None,
        *,
        limit: int,
        marker: str | None = None,
        sorts: Sequence[tuple[str, str]] = resources.DEFAULT_SORT,
    ) -> list[ResourceModel]:
        """One page of the resources of *rtype* matching a JSON *query*.

        Only those *caller* may see; sorted by *sorts* then id, after
        the resource *marker*.

        :raises QueryError: invalid query.
        :raises ResourceError: unknown sort key or marker.
        """
        where = search.compile_query(query, rtype, caller.creator)
        return resources.list_resources(
            session,
            rtype,
            caller,
            where,
            limit=limit,
            marker=marker,
            sorts=sorts,
        )

    def delete_matching(
        self,
        session: orm.Session,
        rtype: TypeDef,
        caller: Caller,
        query: Any = None,
    ) -> tuple[int, list[str]]:
        """Delete the resources *caller* sees matching a JSON *query*.

        :returns: how many resources, and the ids of their metrics.
        :raises QueryError: invalid query.
        """
        where = search.compile_query(query, rtype, caller.creator)
        ids = resources.matching_ids(session, rtype, caller, where)
        return len(ids), resources.delete_resources(session, ids)

    def show_resources(
        self,
        session: orm.Session,
        rtype: TypeDef,
        rows: list[ResourceModel],
        *,
        details: bool,
    ) -> list[dict[str, Any]]:
        """Resources as the API shows them, with their named metrics."""
        return resources.show(session, rtype, rows, details=details)

    def metric_names(
        self, session: orm.Session, resource_ids: Sequence[str]
    ) -> dict[str, dict[str, str]]:
        """``{resource id: {metric name: metric id}}`` of *resource_ids*."""
        return metrics_mod.names_of(session, resource_ids)

    def attach_metrics(
        self,
        session: orm.Session,
        resource_id: str,
        metrics: Any,
        caller: Caller,
        *,
        replace: bool = False,
    ) -> None:
        """Create or attach the named metrics of a resource.

        See :func:`alarmer.metrics.index.metrics.attach_named`.
        """
        metrics_mod.attach_named(
            session, resource_id, metrics, caller, replace=replace
        )

    # ------------------------------------------ what alarms read --

    def resolve_group(
        self,
        session: orm.Session,
        resource_type: str,
        query: Any,
        metric_name: str,
        project_id: str | None = None,
        *,
        cache: groups.ResolutionCache | None = None,
    ) -> list[str]:
        """Ids of the metrics a by-resources rule reads now.

        See :func:`alarmer.metrics.index.groups.resolve_metric_ids`.

        :raises NoSuchResourceType: unknown type.
        :raises QueryError: invalid query.
        """
        return groups.resolve_metric_ids(
            session, resource_type, query, metric_name, project_id, cache=cache
        )

    def group_metrics(
        self,
        session: orm.Session,
        resource_type: str,
        query: Any,
        metric_name: str,
        *,
        project_id: str | None = None,
        creator: str | None = None,
    ) -> list[tuple[str, str, str]]:
        """``(resource id, metric name, metric id)`` of a search's matches.

        See :func:`alarmer.metrics.index.groups.resolve_resource_metrics`.

        :raises NoSuchResourceType: unknown type.
        :raises QueryError: invalid query.
        """
        return groups.resolve_resource_metrics(
            session,
            resource_type,
            query,
            metric_name,
            project_id=project_id,
            creator=creator,
        )

    def metric_of_resource(
        self,
        session: orm.Session,
        resource_id: str,
        metric_name: str,
        *,
        project_id: str | None = None,
        creator: str | None = None,
    ) -> str | None:
        """Id of metric *metric_name* of the resource a client names.

        See :func:`alarmer.metrics.index.groups.metric_of_resource`.
        """
        return groups.metric_of_resource(
            session,
            resource_id,
            metric_name,
            project_id=project_id,
            creator=creator,
        )

    def metrics_by_name(
        self, session: orm.Session, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """Metric ids of the ``(resource UUID, metric name)`` *pairs*."""
        return metrics_mod.by_resource_and_name(session, pairs)

    def named_metric_owners(
        self, session: orm.Session, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, groups.Owners]]:
        """Metric ids of ``(resource UUID, name)`` *pairs*, with owners.

        See :func:`alarmer.metrics.index.groups.named_metric_owners`.
        """
        return groups.named_metric_owners(session, pairs)

    def metric_owners(
        self, session: orm.Session, metric_ids: Iterable[str]
    ) -> dict[str, groups.Owners]:
        """The owners of each existing metric of *metric_ids*.

        See :func:`alarmer.metrics.index.groups.metric_owners`.
        """
        return groups.metric_owners(session, metric_ids)

    def visible_metric_ids(
        self,
        session: orm.Session,
        metric_ids: Iterable[str],
        project_id: str | None,
    ) -> set[str]:
        """Those of *metric_ids* that exist and *project_id* may read.

        See :func:`alarmer.metrics.index.groups.visible_metric_ids`.
        """
        return groups.visible_metric_ids(session, metric_ids, project_id)

    def invisible_references(
        self,
        session: orm.Session,
        project_id: str | None,
        *,
        resource_ids: Iterable[str] = (),
        metric_ids: Iterable[str] = (),
    ) -> tuple[set[str], set[str]]:
        """The existing resources and metrics *project_id* may not see.

        See :func:`alarmer.metrics.index.groups.invisible_references`.
        """
        return groups.invisible_references(
            session,
            project_id,
            resource_ids=resource_ids,
            metric_ids=metric_ids,
        )

    def generation(self, session: orm.Session) -> int:
        """The change counter of what alarms may read.

        It moves with every change that can alter what an alarm's rule
        resolves to: resources, their attributes and projects, metric
        attachments and deletions, resource types.
        """
        return current_generation(session)

    def check_rule_query(
        self, session: orm.Session, resource_type: str, query: str
    ) -> None:
        """Check a by-resources rule's query against its resource type.

        :raises QueryError: naming the culprit (an unknown type is
            accepted, as Aodh does).
        """
        groups.check_rule_query(session, resource_type, query)
