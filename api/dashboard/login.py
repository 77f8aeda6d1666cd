"""``/dashboard/login`` and ``/dashboard/logout``: a browser signs in.

In ``apikey`` mode the operator enters an API key, checked at once; in
``keystone`` mode a user name and password (with a project, else the
user's default project), exchanged at once with Keystone
(``[keystone_authtoken] www_authenticate_uri``) for a project token, or
a Keystone token itself, validated by Keystone's middleware on the next
page.  Only the key or token is kept, never the password: in an
HttpOnly, ``SameSite=Strict`` cookie, ``Secure`` when the page came over
HTTPS; :func:`api.identity.cookie_credentials` decides where it is
accepted.  A token expires or is revoked: the next page answers 401,
forgets the cookie and links back here (keystonemiddleware notices a
revocation once the token leaves its cache,
``[keystone_authtoken] token_cache_time``).  Signing out revokes the
token in Keystone.  In ``noauth`` mode the identity
comes from headers: there is nothing to sign in to.

Signing in and out are ``POST`` forms: both need the request to come
from this site (``Origin``, else ``Referer``, names this host; a sign-in
naming neither is refused); signing out also needs the page's CSRF
token.
"""

from __future__ import annotations

import hmac
import logging
import urllib.parse
from typing import Any

import flask
from flask.typing import ResponseReturnValue

from alarmer.identity import apikeys
from api import context, errors, identity
from api.dashboard.views import bp, forget_sign_in

LOG = logging.getLogger(__name__)

#: What the form asks for, by ``[api] auth_mode``.
ASKED = {"apikey": "API key", "keystone": "Keystone token"}
#: Seconds a password sign-in waits for Keystone.
KEYSTONE_TIMEOUT = 30.0
#: The Keystone domain of users and projects unless the form names one.
DEFAULT_DOMAIN = "Default"


def _mode() -> str:
    return str(context.runtime().conf.api.auth_mode)


def _same_site(*, required: bool = False) -> None:
    """Refuse a form posted from another site.

    Browsers send ``Origin`` with every ``POST`` (``Referer`` otherwise);
    when *required*, a post naming neither is refused too.  Signing in
    requires it: no cookie guards that form yet, and a page of another
    site must not sign a browser in to the other site's account.
    """
    request = flask.request
    sent = request.headers.get("Origin") or request.headers.get("Referer")
    if not sent:
        if required:
            raise errors.Forbidden(
                "Origin: a sign-in must come from this site's form "
                "(the request names no Origin nor Referer)"
            )
        return  # signing out needs the page's CSRF token besides
    if urllib.parse.urlsplit(sent).netloc != request.host:
        raise errors.Forbidden("The form was posted from another site")


@bp.app_context_processor
def _csrf() -> dict[str, str]:
    """``csrf``: the token of the signed-in browser (empty otherwise)."""
    cookie = flask.request.cookies.get(identity.DASHBOARD_COOKIE)
    return {
        "csrf": identity.csrf_token(cookie) if cookie else "",
        "signed_in": "yes" if cookie else "",
    }


def _keystone_url() -> str | None:
    """Where a password is exchanged for a token (keystone mode only)."""
    if _mode() != "keystone":
        return None
    conf = context.runtime().conf
    uri = conf.keystone_authtoken.www_authenticate_uri
    return str(uri) if uri else None


def _form(message: str = "", status: int = 200) -> tuple[str, int]:
    mode = _mode()
    form = flask.request.form
    page = flask.render_template(
        "dashboard/login.html",
        who=None,
        mode=mode,
        asked=ASKED.get(mode, ""),
        passwords=_keystone_url() is not None,
        message=message,
        # What was typed, but the secrets, is shown again.
        typed={
            name: form.get(name, "")
            for name in ("username", "project", "domain")
        },
        default_domain=DEFAULT_DOMAIN,
    )
    return page, status


class SignInRefused(Exception):
    """Keystone did not give a token for what the form sent."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _keystone_session(auth: Any = None) -> Any:
    """A keystoneauth session verifying TLS as the middleware does."""
    from keystoneauth1 import session as ks_session

    conf = context.runtime().conf.keystone_authtoken
    verify: bool | str = not conf.insecure
    if conf.cafile and verify:
        verify = str(conf.cafile)
    return ks_session.Session(
        auth=auth, verify=verify, timeout=KEYSTONE_TIMEOUT
    )


def _tokens_url(url: str) -> str:
    """Keystone's ``/v3/auth/tokens`` beside *url* (versioned or not)."""
    base = url.rstrip("/")
    if not base.endswith("/v3"):
        base += "/v3"
    return f"{base}/auth/tokens"


def _check_token(url: str, token: str) -> None:
    """Refuse a token Keystone does not know (a token checks itself).

    :raises SignInRefused: unknown, revoked, expired or not of a project.
    """
    from keystoneauth1 import exceptions as ks_exc

    try:
        answer = _keystone_session().get(
            _tokens_url(url),
            headers={"X-Auth-Token": token, "X-Subject-Token": token},
            authenticated=False,
            log=False,
        )
    except (ks_exc.Unauthorized, ks_exc.NotFound):
        raise SignInRefused(
            "The Keystone token is unknown, revoked or expired", 401
        ) from None
    except ks_exc.ClientException as exc:
        raise _unreachable(url, exc) from None
    if "project" not in answer.json().get("token", {}):
        raise SignInRefused(
            "credential: the token is not scoped to a project", 400
        )


def _unreachable(url: str, exc: Exception) -> SignInRefused:
    LOG.warning(
        "Keystone at %s did not answer a sign-in: %s",
        url,
        type(exc).__name__,
    )
    return SignInRefused("Keystone cannot be reached: try again later", 503)


def _revoke(url: str, token: str) -> None:
    """Ask Keystone to revoke *token* (it revokes its own), at sign-out.

    Another copy of the cookie is refused once keystonemiddleware's
    cache forgets the token (``[keystone_authtoken] token_cache_time``).
    A failure is logged (without the token) and the browser is signed
    out anyway.
    """
    from keystoneauth1 import exceptions as ks_exc

    try:
        _keystone_session().delete(
            _tokens_url(url),
            headers={"X-Auth-Token": token, "X-Subject-Token": token},
            authenticated=False,
            log=False,
        )
    except ks_exc.ClientException as exc:
        LOG.warning(
            "Keystone at %s did not revoke a signed-out token: %s",
            url,
            type(exc).__name__,
        )


def _keystone_token(
    url: str, username: str, password: str, project: str, domain: str
) -> str:
    """A token of *username* on *project* (else its default project).

    The password goes to Keystone only (keystoneauth does not log the
    authentication request); it is neither kept nor logged here.

    :raises SignInRefused: wrong credentials, or Keystone unreachable.
    """
    from keystoneauth1 import exceptions as ks_exc
    from keystoneauth1.identity import v3

    scope: dict[str, Any] = {}
    if project:
        scope = {"project_name": project, "project_domain_name": domain}
    auth = v3.Password(
        auth_url=url,
        username=username,
        password=password,
        user_domain_name=domain,
        **scope,
    )
    session = _keystone_session(auth)
    try:
        token = auth.get_token(session)
        scoped = auth.get_access(session).project_id
    except ks_exc.Unauthorized:
        raise SignInRefused(
            "The user name, password or project is wrong", 401
        ) from None
    except ks_exc.ClientException as exc:
        raise _unreachable(url, exc) from None
    if not token or not scoped:
        raise SignInRefused(
            "project: name the project to sign in to (this user has no "
            "default project)",
            400,
        )
    return str(token)


def _credential(mode: str) -> str:
    """The key or token the form gives (exchanged for a password)."""
    form = flask.request.form
    credential = form.get("credential", "").strip()
    url = _keystone_url()
    username = form.get("username", "").strip()
    if credential or url is None or not username:
        if not credential:
            wanted = "your user name and password, or " if url else ""
            raise SignInRefused(
                f"credential: enter {wanted}your {ASKED[mode]}", 400
            )
        if mode == "apikey":
            db = context.runtime().db
            if apikeys.authenticate(db, credential) is None:
                raise SignInRefused(
                    "The API key is unknown, revoked or expired", 401
                )
        elif url is not None:
            _check_token(url, credential)
        return credential
    password = form.get("password", "")
    if not password:
        raise SignInRefused("password: enter your password", 400)
    domain = form.get("domain", "").strip() or DEFAULT_DOMAIN
    project = form.get("project", "").strip()
    return _keystone_token(url, username, password, project, domain)


@bp.route("/login", methods=["GET"])
def login_form() -> tuple[str, int]:
    """The sign-in form (or why none is needed)."""
    return _form()


@bp.route("/login", methods=["POST"])
def login() -> ResponseReturnValue:
    """Check the key, or get a token for a password; keep it in the cookie."""
    _same_site(required=True)
    mode = _mode()
    if mode not in ASKED:
        return _form("This API identifies callers by headers", 400)
    try:
        credential = _credential(mode)
    except SignInRefused as refused:
        return _form(refused.message, refused.status)
    response = flask.redirect(flask.url_for("dashboard.alarms"), 303)
    response.set_cookie(
        identity.DASHBOARD_COOKIE,
        credential,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=flask.request.is_secure,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    """Forget the cookie (with the page's CSRF token).

    In keystone mode the token is revoked too: signing out ends it.
    """
    _same_site()
    cookie = flask.request.cookies.get(identity.DASHBOARD_COOKIE)
    if cookie:
        sent = flask.request.form.get("csrf", "")
        if not hmac.compare_digest(
            sent.encode(), identity.csrf_token(cookie).encode()
        ):
            raise errors.Forbidden("csrf: the form is not this page's")
        url = _keystone_url()
        if url is not None:
            _revoke(url, cookie)
    response = flask.redirect(flask.url_for("dashboard.login_form"), 303)
    forget_sign_in(response)
    return response
