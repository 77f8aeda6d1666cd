"""Errors of the metric index; every message is meant for the client.

Two families, as the API answers them differently:

* :class:`IndexerError` and its subclasses: archive policies, their
  rules and metrics (Gnocchi's ``/v1/archive_policy*`` and
  ``/v1/metric``);
* :class:`ResourceError` (a bad request, also a :class:`ValueError`),
  :class:`NoSuchResourceType` and :class:`NoSuchResource` (also
  :class:`LookupError`), :class:`ResourceTypeInUse` and
  :class:`ResourceAlreadyExists` (also :class:`RuntimeError`): resource
  types, resources and their search (:class:`QueryError`).
"""

from __future__ import annotations

from alarmer.errors import AlarmerError

# ------------------------------------------------ policies and metrics --


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


# ------------------------------------------------------------ resources --


class ResourceError(AlarmerError, ValueError):
    """A request on resources that is wrong: answered with a 400."""


class QueryError(ResourceError):
    """A resource query is invalid; the message names the culprit."""


class NoSuchResourceType(AlarmerError, LookupError):
    """The named resource type does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Resource type {name} does not exist")
        self.name = name


class NoSuchResource(AlarmerError, LookupError):
    """The resource does not exist."""

    def __init__(self, resource_id: str) -> None:
        super().__init__(f"Resource {resource_id} does not exist")
        self.resource_id = resource_id


class ResourceTypeInUse(AlarmerError, RuntimeError):
    """A resource type still has resources and cannot be deleted."""


class ResourceAlreadyExists(AlarmerError, RuntimeError):
    """A resource with this id exists already."""
