"""Who is calling: the identity and roles of a request.

``[api] auth_mode`` chooses how a caller is identified:

* ``noauth`` (default): from the ``X-User-Id``, ``X-Project-Id`` and
  ``X-Roles`` headers (what aodhclient's ``aodh-noauth`` plugin and
  gnocchiclient's noauth mode send).  Anyone able to reach the API can
  claim any identity, so these requests are only accepted from loopback
  peers (the API listens on 127.0.0.1 by default) unless
  ``[api] noauth_allow_remote`` says a trusted proxy sets the headers.
* ``apikey``: from an API key (``alarmer apikey create``) sent as
  ``Authorization: Bearer <key>`` or ``X-Auth-Token: <key>``; the key is
  bound to a project, a user and roles.
* ``keystone``: from a Keystone token sent as ``X-Auth-Token``,
  validated by keystonemiddleware's ``auth_token`` (configured by its
  ``[keystone_authtoken]`` options, wrapped around the application by
  :func:`keystone_middleware`), which removes any identity header the
  client sent and sets the ones of the token it validated.  A request
  without a valid token is answered 401 in the dialect's envelope by the
  routes that need an identity; the discovery documents stay public.

A browser reaching ``/dashboard`` in ``apikey`` or ``keystone`` mode
signs in on ``/dashboard/login``: the key or token is kept in an
HttpOnly, ``SameSite=Strict`` cookie (``Secure`` over HTTPS) that
:func:`cookie_credentials` turns into ``X-Auth-Token`` only for the
dashboard's pages (``GET``) and for the API calls of its buttons
(``/v2/alarms/...``) carrying the page's CSRF token
(:func:`csrf_token`) in ``X-CSRF-Token``; anywhere else the cookie is
ignored.

Roles follow Aodh's default policy: ``reader`` reads, ``member`` reads and
writes, ``admin`` does everything and may act across projects.  The
identity of the request being served, and the role checks, are in
:mod:`api.context`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

import flask
from oslo_config import cfg
from werkzeug.http import parse_cookie

from alarmer.db import Database
from alarmer.identity import apikeys
from api import errors

READ_ROLES = frozenset({"reader", "member", "admin"})
WRITE_ROLES = frozenset({"member", "admin"})


@dataclasses.dataclass(frozen=True)
class Identity:
    """The caller of one request."""

    user_id: str | None
    project_id: str | None
    roles: frozenset[str]
    #: ``all`` for a Keystone system-scoped token, else None.
    system_scope: str | None = None

    @property
    def is_admin(self) -> bool:
        """True when the caller has the ``admin`` role."""
        return "admin" in self.roles

    def has_role(self, *roles: str) -> bool:
        """True when the caller has any of *roles* (admin has them all)."""
        return self.is_admin or bool(self.roles.intersection(roles))

    @property
    def can_read(self) -> bool:
        """True for ``reader``, ``member`` and ``admin``."""
        return bool(self.roles & READ_ROLES)

    @property
    def can_write(self) -> bool:
        """True for ``member`` and ``admin``."""
        return bool(self.roles & WRITE_ROLES)


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


def bearer_key(request: flask.Request) -> str | None:
    """Return the API key of *request* (bearer token or X-Auth-Token)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    token = request.headers.get("X-Auth-Token", "").strip()
    return token or None


def _is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _from_api_key(request: flask.Request, db: Database) -> Identity:
    key = bearer_key(request)
    if key is None:
        raise errors.APIError(
            "Authentication required: send an API key as "
            "'Authorization: Bearer <key>' or 'X-Auth-Token: <key>'",
            401,
            headers={"WWW-Authenticate": 'Bearer realm="alarmer"'},
        )
    info = apikeys.authenticate(db, key)
    if info is None:
        raise errors.APIError(
            "The API key is unknown, revoked or expired",
            401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return Identity(
        user_id=info.user_id,
        project_id=info.project_id,
        roles=frozenset(info.roles),
    )


def _from_keystone(request: flask.Request, conf: cfg.ConfigOpts) -> Identity:
    headers = request.headers
    if headers.get("X-Identity-Status") != "Confirmed":
        uri = conf.keystone_authtoken.www_authenticate_uri or ""
        raise errors.APIError(
            "The request you have made requires authentication: send a "
            "valid Keystone token as X-Auth-Token",
            401,
            headers={"WWW-Authenticate": f"Keystone uri='{uri}'"},
        )
    system = headers.get("OpenStack-System-Scope") or None
    return Identity(
        user_id=headers.get("X-User-Id") or None,
        project_id=headers.get("X-Project-Id") or None,
        roles=_split_roles(headers.get("X-Roles", "")),
        system_scope=system,
    )


def keystone_middleware(app: Any, conf: cfg.ConfigOpts) -> Any:
    """Wrap the WSGI *app* in keystonemiddleware's ``auth_token``.

    The decision is delayed to the application (``delay_auth_decision``)
    so that the public documents need no token and refusals come in the
    dialect's envelope; tokens are cached in process (or in the
    ``memcached_servers`` configured) as ``[keystone_authtoken]`` says.
    """
    from keystonemiddleware import auth_token

    return auth_token.AuthProtocol(
        app, {"oslo_config_config": conf, "delay_auth_decision": "true"}
    )


def authenticate(
    request: flask.Request, conf: cfg.ConfigOpts, db: Database
) -> Identity:
    """Identify the caller of *request* according to ``[api] auth_mode``.

    :param conf: the configuration of the process.
    :param db: the database holding the API keys.
    :raises api.errors.APIError: 401 without valid credentials.
    """
    if conf.api.auth_mode == "apikey":
        return _from_api_key(request, db)
    if conf.api.auth_mode == "keystone":
        return _from_keystone(request, conf)
    if not conf.api.noauth_allow_remote and not _is_loopback(
        request.remote_addr
    ):
        raise errors.Unauthorized(
            "noauth mode only accepts requests from the local host; "
            "use auth_mode = apikey or set noauth_allow_remote behind a "
            "trusted proxy"
        )
    return from_headers(request)


#: The cookie holding a signed-in browser's API key or token.
DASHBOARD_COOKIE = "alarmer_dashboard"
#: The header (and form field) carrying the page's CSRF token.
CSRF_HEADER = "X-CSRF-Token"
#: Where the cookie identifies reads (``GET``, ``HEAD``).
DASHBOARD_PATH = "/dashboard"
#: What the dashboard's buttons call (with the CSRF token).
BUTTONS_PATH = "/v2/alarms/"

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def csrf_token(credential: str) -> str:
    """The CSRF token of the pages shown to the holder of *credential*.

    Derived from the credential, which the cookie hides from scripts
    (HttpOnly): a page of another site can neither read the cookie nor
    compute the token, and sends no cookie anyway (``SameSite=Strict``).
    """
    digest = hashlib.sha256(b"alarmer-dashboard-csrf\0" + credential.encode())
    return digest.hexdigest()


def dashboard_credential(environ: dict[str, Any]) -> str | None:
    """The cookie's credential, if this request may be identified by it.

    Never when the request sends its own credentials; for the
    dashboard's reads; for any other dashboard request and the buttons'
    API calls only with the right :data:`CSRF_HEADER`.
    """
    if environ.get("HTTP_AUTHORIZATION") or environ.get("HTTP_X_AUTH_TOKEN"):
        return None
    value = parse_cookie(environ.get("HTTP_COOKIE", "")).get(DASHBOARD_COOKIE)
    if not value:
        return None
    path = environ.get("PATH_INFO", "")
    on_dashboard = path == DASHBOARD_PATH or path.startswith(
        DASHBOARD_PATH + "/"
    )
    if on_dashboard and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
        return value
    if not on_dashboard and not path.startswith(BUTTONS_PATH):
        return None
    sent = environ.get("HTTP_X_CSRF_TOKEN", "")
    if hmac.compare_digest(sent.encode(), csrf_token(value).encode()):
        return value
    return None


def cookie_credentials(app: Wsgi) -> Wsgi:
    """Wrap *app*: the dashboard's cookie becomes ``X-Auth-Token`` where
    :func:`dashboard_credential` allows (outside Keystone's middleware,
    which then validates it as any token)."""

    def wrapped(
        environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        found = dashboard_credential(environ)
        if found is not None:
            environ["HTTP_X_AUTH_TOKEN"] = found
        return app(environ, start_response)

    return wrapped
