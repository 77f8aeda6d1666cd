"""The metric index in SQL: archive policies, metrics, resources, search.

One door: every read and write of the index tables by the rest of
alarmer goes through an :class:`Indexer` (one per process, built with
the runtime as ``rt.index``).  What callers may use besides it is named
here: the value types it takes and returns, its errors and a few pure
functions.  The modules behind it, one job each, bottom to top:

* :mod:`~alarmer.metrics.index.schema`: every table of the index and
  the change counter of the resource index;
* :mod:`~alarmer.metrics.index.errors`: what the index raises;
* :mod:`~alarmer.metrics.index.access`: who may see what (``Caller``,
  Gnocchi's creator string, visibility clauses);
* :mod:`~alarmer.metrics.index.policies`: archive policies, their rules
  and the policy cache;
* :mod:`~alarmer.metrics.index.metrics`: metrics, and the named metrics
  of resources;
* :mod:`~alarmer.metrics.index.types`: resource types and attribute
  values;
* :mod:`~alarmer.metrics.index.resources`: resources (ids, create,
  find, page, update, show, delete);
* :mod:`~alarmer.metrics.index.search`: the JSON query language,
  compiled to SQL;
* :mod:`~alarmer.metrics.index.groups`: what an alarm reads (the metric
  of a resource, the metrics of a group, and the cache of groups);
* :mod:`~alarmer.metrics.index.indexer`: the door (transactions, policy
  cache, error translation).
"""

from alarmer.metrics.index.access import Caller, creator_of, seen_by
from alarmer.metrics.index.errors import (
    ArchivePolicyAlreadyExists,
    ArchivePolicyInUse,
    ArchivePolicyRuleAlreadyExists,
    IndexerError,
    NamedMetricAlreadyExists,
    NoArchivePolicyForMetric,
    NoSuchArchivePolicy,
    NoSuchArchivePolicyRule,
    NoSuchMetric,
    NoSuchResource,
    NoSuchResourceType,
    QueryError,
    ResourceAlreadyExists,
    ResourceError,
    ResourceTypeInUse,
    UnsupportedArchivePolicyChange,
)
from alarmer.metrics.index.groups import (
    ResolutionCache,
    check_rule_query,
    invisible_references,
    query_resource_ids,
    scope_query,
)
from alarmer.metrics.index.indexer import Indexer
from alarmer.metrics.index.metrics import (
    METRIC_SORT_KEYS,
    MetricFilter,
    MetricInfo,
    check_name,
)
from alarmer.metrics.index.policies import Rule
from alarmer.metrics.index.resources import (
    DEFAULT_SORT,
    SORT_KEYS,
    resource_uuid,
)
from alarmer.metrics.index.search import parse_query
from alarmer.metrics.index.types import (
    GENERIC,
    STRING_MAX,
    AttributeDef,
    TypeDef,
    parse_type_definition,
)

__all__ = [
    "DEFAULT_SORT",
    "GENERIC",
    "METRIC_SORT_KEYS",
    "SORT_KEYS",
    "STRING_MAX",
    "ArchivePolicyAlreadyExists",
    "ArchivePolicyInUse",
    "ArchivePolicyRuleAlreadyExists",
    "AttributeDef",
    "Caller",
    "Indexer",
    "IndexerError",
    "MetricFilter",
    "MetricInfo",
    "NamedMetricAlreadyExists",
    "NoArchivePolicyForMetric",
    "NoSuchArchivePolicy",
    "NoSuchArchivePolicyRule",
    "NoSuchMetric",
    "NoSuchResource",
    "NoSuchResourceType",
    "QueryError",
    "ResolutionCache",
    "ResourceAlreadyExists",
    "ResourceError",
    "ResourceTypeInUse",
    "Rule",
    "TypeDef",
    "UnsupportedArchivePolicyChange",
    "check_name",
    "check_rule_query",
    "creator_of",
    "invisible_references",
    "parse_query",
    "parse_type_definition",
    "query_resource_ids",
    "resource_uuid",
    "scope_query",
    "seen_by",
]
