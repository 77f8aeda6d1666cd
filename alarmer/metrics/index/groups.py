"""What an alarm reads: the metrics of a resource or of a group.

Aodh's Gnocchi rules name their metrics indirectly:
``gnocchi_resources_threshold`` by a resource id and a metric name
(:func:`metric_of_resource`), ``gnocchi_aggregation_by_resources_threshold``
by a resource type, a query and a metric name, the group being whatever
matches at evaluation time (:func:`resolve_metric_ids`, with
:class:`ResolutionCache` to skip the search while the resource index is
unchanged).  Given the alarm's project, each only finds what that
project may see (:func:`alarmer.metrics.index.access.seen_by`), and
:func:`invisible_references` tells which ids of a rule it may not name.
The functions run in the caller's (read) transaction;
:class:`alarmer.metrics.index.indexer.Indexer` is what the rest of
alarmer calls.
"""

from __future__ import annotations

import collections
import fnmatch
import json
import threading
import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from alarmer.metrics.index.access import (
    metric_scope,
    project_scope,
    seen_by,
)
from alarmer.metrics.index.errors import (
    NoSuchResourceType,
    QueryError,
    ResourceError,
)
from alarmer.metrics.index.metrics import CHUNK
from alarmer.metrics.index.resources import resource_uuid, type_clause
from alarmer.metrics.index.schema import (
    Metric,
    ResourceModel,
    current_generation,
)
from alarmer.metrics.index.search import (
    COMPARISONS,
    LOGICAL,
    MAX_DEPTH,
    compile_query,
    parse_query,
)
from alarmer.metrics.index.types import get_type

#: Key of a cached group: (type, query, metric name, project).
GroupKey = tuple[str, str, str, str | None]
#: The projects owning a metric (see
#: :func:`alarmer.metrics.index.access.seen_by`): its creator's project,
#: and the project and creator's project of its resource.
Owners = tuple[str | None, ...]


def resolve_resource_metrics(
    session: orm.Session,
    resource_type: str,
    query: Any,
    metric_name: str,
    *,
    project_id: str | None = None,
    creator: str | None = None,
) -> list[tuple[str, str, str]]:
    """Metrics named *metric_name* of the resources matching *query*.

    :param query: a JSON query (object, or the JSON text Aodh rules
        store); ``None`` or ``{}`` matches every resource of the type.
    :param metric_name: a metric name or an :mod:`fnmatch` pattern
        (``cpu*``), as Gnocchi's aggregates accept.
    :param project_id: when given, only resources of that project (its
        own or created for it) count, as a non-admin caller's search.
    :returns: ``(resource id, metric name, metric id)`` sorted by
        resource id then name.
    :raises NoSuchResourceType: unknown type.
    :raises alarmer.metrics.index.errors.QueryError: invalid query.
    """
    rtype = get_type(session, resource_type)
    where = compile_query(parse_query(query), rtype, creator)
    stmt = (
        sa.select(Metric.resource_id, Metric.name, Metric.id)
        .join(ResourceModel, ResourceModel.id == Metric.resource_id)
        .where(type_clause(rtype), where)
    )
    wildcard = any(c in metric_name for c in "*?[")
    if not wildcard:
        stmt = stmt.where(Metric.name == metric_name)
    if project_id is not None:
        stmt = stmt.where(project_scope(project_id))
    rows = [
        (str(rid), str(name), str(mid))
        for rid, name, mid in session.execute(stmt)
        if not wildcard or fnmatch.fnmatchcase(name or "", metric_name)
    ]
    rows.sort()
    return rows


class ResolutionCache:
    """Resolved groups, valid while the resource index is unchanged.

    Entries are keyed by (type, query, metric name, project) and tagged
    with the :func:`current_generation` read *before* resolving, so an
    entry is never newer than its tag and any change made since (in any
    process: the counter is in the database) makes it a miss.  At most
    *max_entries* are kept, least recently used out.  Thread-safe; one
    per evaluator process.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: collections.OrderedDict[
            GroupKey, tuple[int, tuple[str, ...]]
        ] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: GroupKey, generation: int) -> tuple[str, ...] | None:
        """The cached metric ids of *key* at *generation*, or None."""
        with self._lock:
            found = self._entries.get(key)
            if found is None or found[0] != generation:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found[1]

    def put(
        self,
        key: GroupKey,
        generation: int,
        metric_ids: tuple[str, ...],
    ) -> None:
        """Remember the metric ids of *key* resolved at *generation*."""
        with self._lock:
            self._entries[key] = (generation, metric_ids)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def resolve_metric_ids(
    session: orm.Session,
    resource_type: str,
    query: Any,
    metric_name: str,
    project_id: str | None = None,
    *,
    cache: ResolutionCache | None = None,
) -> list[str]:
    """Ids of the metrics a by-resources rule reads now.

    The group is evaluated at call time: resources created since count,
    resources deleted or no longer matching (e.g. ended, with Heat's
    ``ended_at = null`` clause) do not.  With *cache*, the answer is
    reused until the resource index changes (one primary-key read per
    call instead of the search).  Same parameters and errors as
    :func:`resolve_resource_metrics`.
    """
    key: GroupKey | None = None
    generation = 0
    if cache is not None:
        text = (
            query
            if isinstance(query, str)
            else json.dumps(query, sort_keys=True)
        )
        key = (resource_type, text, metric_name, project_id)
        generation = current_generation(session)
        found = cache.get(key, generation)
        if found is not None:
            return list(found)
    ids = [
        mid
        for _, _, mid in resolve_resource_metrics(
            session, resource_type, query, metric_name, project_id=project_id
        )
    ]
    if cache is not None and key is not None:
        cache.put(key, generation, tuple(ids))
    return ids


def scope_query(query: str, project_id: str) -> str:
    """Aodh's rewrite of a by-resources query for a non-admin project.

    The stored query becomes ``{"and": [<project filter>, <query>]}``
    where the project filter matches the resources the project created
    or that were created for it (Gnocchi's visibility rule).
    """
    scope = {
        "or": [
            {"=": {"created_by_project_id": project_id}},
            {"=": {"project_id": project_id}},
        ]
    }
    return json.dumps({"and": [scope, parse_query(query)]})


def check_rule_query(
    session: orm.Session, resource_type: str, query: str
) -> None:
    """Check a by-resources rule's query against its resource type.

    An unknown resource type is accepted (Aodh accepts Gnocchi's 404: the
    type may be declared later); an invalid query is not.

    :raises alarmer.metrics.index.errors.QueryError: naming the culprit.
    """
    try:
        rtype = get_type(session, resource_type)
    except NoSuchResourceType:
        return
    compile_query(parse_query(query), rtype)


def metric_of_resource(
    session: orm.Session,
    resource_id: str,
    metric_name: str,
    *,
    project_id: str | None = None,
    creator: str | None = None,
) -> str | None:
    """Id of metric *metric_name* of the resource a client calls *resource_id*.

    A UUID is the stored id.  Another string is first mapped with
    :func:`resource_uuid` for *creator* (when given), as the API does;
    failing that it is looked up by the original id the client used.
    With *project_id*, only a resource that project may see counts,
    whichever way it is named (a UUID is no secret: another project's
    resource is not found).  An original id that names several
    resources is ambiguous: None.
    """

    def named(ids: list[str]) -> str | None:
        stmt = sa.select(Metric.id).where(
            Metric.resource_id.in_(ids),
            Metric.name == metric_name,
        )
        if project_id is not None:
            stmt = stmt.join(
                ResourceModel, ResourceModel.id == Metric.resource_id
            ).where(project_scope(project_id))
        return session.scalar(stmt)

    try:
        return named([str(uuid.UUID(resource_id))])
    except (TypeError, ValueError):
        pass
    if creator is not None:
        try:
            found = named([resource_uuid(resource_id, creator)])
        except ResourceError:
            return None
        if found is not None:
            return found
    stmt = sa.select(ResourceModel.id).where(
        ResourceModel.original_resource_id == resource_id
    )
    if project_id is not None:
        stmt = stmt.where(project_scope(project_id))
    candidates = list(session.scalars(stmt.limit(2)))
    if len(candidates) != 1:
        return None
    return named(candidates)


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


def metric_owners(
    session: orm.Session, metric_ids: Iterable[str]
) -> dict[str, Owners]:
    """The owners of each of *metric_ids* that exists, one query a chunk.

    What :func:`alarmer.metrics.index.access.seen_by` takes: the
    metric's ``created_by_project_id``, and the ``project_id`` and
    ``created_by_project_id`` of its resource (None when detached).
    """
    found: dict[str, Owners] = {}
    for chunk in _chunks(list(dict.fromkeys(metric_ids))):
        rows = session.execute(
            sa.select(
                Metric.id,
                Metric.created_by_project_id,
                ResourceModel.project_id,
                ResourceModel.created_by_project_id,
            )
            .outerjoin(ResourceModel, ResourceModel.id == Metric.resource_id)
            .where(Metric.id.in_(chunk))
        )
        for mid, *owners in rows:
            found[str(mid)] = tuple(owners)
    return found


def named_metric_owners(
    session: orm.Session, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, Owners]]:
    """Metric id and resource owners of ``(resource UUID, name)`` *pairs*.

    One query a chunk; the owners are the ``project_id`` and
    ``created_by_project_id`` of the resource (who may read its named
    metrics).  Pairs without such a metric are left out.
    """
    wanted = list(dict.fromkeys(pairs))
    found: dict[tuple[str, str], tuple[str, Owners]] = {}
    for chunk in _chunks(wanted):
        rows = session.execute(
            sa.select(
                Metric.id,
                Metric.resource_id,
                Metric.name,
                ResourceModel.project_id,
                ResourceModel.created_by_project_id,
            )
            .join(ResourceModel, ResourceModel.id == Metric.resource_id)
            .where(Metric.resource_id.in_({rid for rid, _ in chunk}))
        )
        named = {
            (str(rid), str(name)): (str(mid), (project, creator))
            for mid, rid, name, project, creator in rows
        }
        for key in chunk:
            if key in named:
                found[key] = named[key]
    return found


def visible_metric_ids(
    session: orm.Session, metric_ids: Iterable[str], project_id: str | None
) -> set[str]:
    """Those of *metric_ids* that exist and *project_id* may read."""
    found: set[str] = set()
    for chunk in _chunks(list(dict.fromkeys(metric_ids))):
        found.update(
            str(mid)
            for mid in session.scalars(
                sa.select(Metric.id).where(
                    Metric.id.in_(chunk), metric_scope(project_id)
                )
            )
        )
    return found


def invisible_references(
    session: orm.Session,
    project_id: str | None,
    *,
    resource_ids: Iterable[str] = (),
    metric_ids: Iterable[str] = (),
) -> tuple[set[str], set[str]]:
    """The references an alarm of *project_id* may not make.

    :param resource_ids: resource ids as stored (UUIDs; other strings
        are no stored id and never match).
    :returns: the resource ids and the metric ids among those given
        that exist and *project_id* may not see (see
        :func:`alarmer.metrics.index.access.seen_by`).  What does not
        exist is not in them: an alarm may name what is created later,
        and resolving it only ever finds what its project may see.
    """
    resources: set[str] = set()
    for chunk in _chunks(list(dict.fromkeys(resource_ids))):
        rows = session.execute(
            sa.select(
                ResourceModel.id,
                ResourceModel.project_id,
                ResourceModel.created_by_project_id,
            ).where(ResourceModel.id.in_(chunk))
        )
        resources.update(
            str(rid)
            for rid, *owners in rows
            if not seen_by(project_id, *owners)
        )
    metrics = {
        mid
        for mid, owners in metric_owners(session, metric_ids).items()
        if not seen_by(project_id, *owners)
    }
    return resources, metrics


def query_resource_ids(query: Any) -> list[str]:
    """The resource UUIDs a resource query names (``id`` with ``=``/``in``).

    What a by-resources rule references by id, for
    :func:`invisible_references`; a query that is not JSON names none
    (it is refused elsewhere), nor does an id that is not a UUID (a name
    resolved for the alarm's project only).
    """
    try:
        root = parse_query(query)
    except QueryError:
        return []
    found: list[str] = []

    def walk(node: Any, depth: int) -> None:
        if depth > MAX_DEPTH or not isinstance(node, dict):
            return
        for op, arg in node.items():
            key = op.lower() if isinstance(op, str) else op
            if key in LOGICAL:
                for item in arg if isinstance(arg, list) else [arg]:
                    walk(item, depth + 1)
            elif COMPARISONS.get(key) in ("eq", "in") and isinstance(
                arg, dict
            ):
                value = arg.get("id")
                for item in value if isinstance(value, list) else [value]:
                    try:
                        found.append(str(uuid.UUID(str(item))))
                    except ValueError:
                        continue

    walk(root, 0)
    return found
