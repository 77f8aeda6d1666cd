"""Who is calling: identity and roles of a request.

In ``noauth`` mode the identity comes from the ``X-User-Id``,
``X-Project-Id`` and ``X-Roles`` headers (what aodhclient's
``aodh-noauth`` plugin and gnocchiclient's noauth mode send); alarmer
must then run behind a trusted proxy.
"""

from __future__ import annotations

import dataclasses

import flask


@dataclasses.dataclass(frozen=True)
class Identity:
    """The caller of one request."""

    user_id: str | None
    project_id: str | None
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        """True when the caller has the ``admin`` role."""
        return "admin" in self.roles

    def has_role(self, *roles: str) -> bool:
        """True when the caller has any of *roles* (admin has them all)."""
        return self.is_admin or bool(self.roles.intersection(roles))


def _split_roles(value: str) -> frozenset[str]:
    return frozenset(r.strip().lower() for r in value.split(",") if r.strip())


def from_headers(request: flask.Request) -> Identity:
    """Read the identity from the noauth headers of *request*."""
    headers = request.headers
    return Identity(
        user_id=headers.get("X-User-Id") or None,
        project_id=headers.get("X-Project-Id") or None,
        roles=_split_roles(headers.get("X-Roles", "")),
    )


def current() -> Identity:
    """Return the identity of the request being served."""
    identity = flask.g.get("identity")
    if identity is None:
        identity = from_headers(flask.request)
        flask.g.identity = identity
    return identity
