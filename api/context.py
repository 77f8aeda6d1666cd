"""What a view needs about the request it serves: runtime, caller, index.

The application built by :func:`api.app.create_app` keeps its
:class:`~alarmer.runtime.Runtime` in ``app.extensions`` (:func:`bind`);
views reach it, its metric index and the identity of the caller only
through the functions of this module.

The caller is identified on first use in a request (the routes that
need no identity never authenticate) and remembered for the rest of it.
Every other route is authorized by :func:`require`: the oslo.policy
rule of the route (:mod:`api.policy`: Gnocchi's and Aodh's default
policies, ``reader`` reads, ``member`` writes, ``admin`` administers,
overridable in ``policy.yaml``); a request naming no user and no project
is answered 401 in both dialects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flask
from oslo_policy import policy as oslo_policy

from alarmer.metrics import index as idx
from alarmer.runtime import Runtime
from api import errors, identity, policy

#: Key of the :class:`~alarmer.runtime.Runtime` in ``app.extensions``.
RUNTIME = "alarmer"


def bind(app: flask.Flask, rt: Runtime) -> None:
    """Make *rt* the runtime of *app*'s requests, with its policy."""
    app.extensions[RUNTIME] = rt
    app.extensions[policy.ENFORCER] = policy.make_enforcer(rt.conf)


def enforcer() -> oslo_policy.Enforcer:
    """The policy enforcer of the application serving this request."""
    found: oslo_policy.Enforcer = flask.current_app.extensions[policy.ENFORCER]
    return found


def runtime() -> Runtime:
    """The runtime of the application serving this request."""
    rt: Runtime = flask.current_app.extensions[RUNTIME]
    return rt


def index() -> idx.Indexer:
    """The metric index of the application serving this request."""
    return runtime().index


def caller() -> identity.Identity:
    """The identity of the caller of this request.

    :raises api.errors.APIError: 401 without valid credentials.
    """
    found = flask.g.get("identity")
    if found is None:
        rt = runtime()
        found = identity.authenticate(flask.request, rt.conf, rt.db)
        flask.g.identity = found
    return found


#: The roles a route may require, least first (see
#: :mod:`api.identity`): ``reader`` reads, ``member`` also writes,
#: ``admin`` also administers.
READER = "reader"
MEMBER = "member"
ADMIN = "admin"
ROLES = (READER, MEMBER, ADMIN)


def _identified(who: identity.Identity, project_needed: bool) -> None:
    if who.user_id is None and who.project_id is None:
        raise errors.Unauthorized(
            "Unable to determine current user: the request names no user "
            "and no project (X-User-Id, X-Project-Id)"
        )
    if project_needed and who.project_id is None and not who.is_admin:
        raise errors.Unauthorized(
            "The request names no project (X-Project-Id)"
        )


def require(role: str, *, project_needed: bool = True) -> identity.Identity:
    """The caller if the policy of this route allows it, else 401/403.

    Every view that needs an identity starts with this (or one of the
    three functions below), before reading the request body.  The rule
    enforced is the route's (:data:`api.policy.ROUTES`), else the
    default rule of *role* (:data:`api.policy.BY_ROLE`).

    :param role: :data:`READER`, :data:`MEMBER` or :data:`ADMIN`: the
        least role the view needs under the default policy.
    :param project_needed: a non-admin caller must name a project (the
        v2 dialect: alarms belong to projects); the v1 dialect, as
        Gnocchi, also serves a caller that names only its user.
    :raises api.errors.APIError: 401 when the request names no user and
        no project (or no project where one is needed), 403 when the
        caller lacks *role*.
    :raises ValueError: an unknown *role* (a programming error).
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    who = caller()
    _identified(who, project_needed and role != ADMIN)
    rule = policy.rule_for(flask.request.endpoint, role)
    if not policy.allowed(enforcer(), rule, who):
        raise errors.Forbidden()
    return who


def allows(rule: str, target: Mapping[str, Any]) -> bool:
    """True when *rule* allows the caller on an object.

    :param target: the object's attributes (see
        :func:`api.policy.object_target`).
    """
    return policy.allowed(enforcer(), rule, caller(), target)


def authorize(target: Mapping[str, Any]) -> None:
    """Check this route's rule against the object it acts on.

    :func:`require` checked the route against the caller's own objects;
    this checks the object found, with its owners (Gnocchi's
    ``creator``, ``resource_owner`` and ``metric_owner`` rules).

    :raises api.errors.APIError: 403 when the rule refuses.
    """
    rule = policy.rule_for(flask.request.endpoint, MEMBER)
    if not allows(rule, target):
        raise errors.Forbidden()


def require_reader(*, project_needed: bool = True) -> identity.Identity:
    """The caller if it may read, else 401/403 (see :func:`require`)."""
    return require(READER, project_needed=project_needed)


def require_member(*, project_needed: bool = True) -> identity.Identity:
    """The caller if it may write, else 401/403 (see :func:`require`)."""
    return require(MEMBER, project_needed=project_needed)


def require_admin() -> identity.Identity:
    """The caller if it is an administrator, else 401/403."""
    return require(ADMIN)
