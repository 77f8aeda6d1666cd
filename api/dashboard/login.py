"""``/dashboard/login`` and ``/dashboard/logout``: a browser signs in.

In ``apikey`` mode the operator enters an API key, checked at once; in
``keystone`` mode a Keystone token, validated by Keystone's middleware
on the next page (a token expires: the pages then answer 401 with a
link back here).  The credential is kept in an HttpOnly,
``SameSite=Strict`` cookie, ``Secure`` when the page came over HTTPS;
:func:`api.identity.cookie_credentials` decides where it is accepted.
In ``noauth`` mode the identity comes from headers: there is nothing
to sign in to.

Signing in and out are ``POST`` forms: both need the request to come
from this site (``Origin``, else ``Referer``, names this host); signing
out also needs the page's CSRF token.
"""

from __future__ import annotations

import hmac
import urllib.parse

import flask
from flask.typing import ResponseReturnValue

from alarmer.identity import apikeys
from api import context, errors, identity
from api.dashboard.views import bp

#: What the form asks for, by ``[api] auth_mode``.
ASKED = {"apikey": "API key", "keystone": "Keystone token"}


def _mode() -> str:
    return str(context.runtime().conf.api.auth_mode)


def _same_site() -> None:
    """Refuse a form posted from another site."""
    request = flask.request
    sent = request.headers.get("Origin") or request.headers.get("Referer")
    if not sent:
        return  # old browsers send neither; SameSite guards the cookie
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


def _form(message: str = "", status: int = 200) -> tuple[str, int]:
    mode = _mode()
    page = flask.render_template(
        "dashboard/login.html",
        who=None,
        mode=mode,
        asked=ASKED.get(mode, ""),
        message=message,
    )
    return page, status


@bp.route("/login", methods=["GET"])
def login_form() -> tuple[str, int]:
    """The sign-in form (or why none is needed)."""
    return _form()


@bp.route("/login", methods=["POST"])
def login() -> ResponseReturnValue:
    """Check the key (``apikey`` mode) and keep it in the cookie."""
    _same_site()
    mode = _mode()
    if mode not in ASKED:
        return _form("This API identifies callers by headers", 400)
    credential = flask.request.form.get("credential", "").strip()
    if not credential:
        return _form(f"credential: enter your {ASKED[mode]}", 400)
    db = context.runtime().db
    if mode == "apikey" and apikeys.authenticate(db, credential) is None:
        return _form("The API key is unknown, revoked or expired", 401)
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
    """Forget the cookie (with the page's CSRF token)."""
    _same_site()
    cookie = flask.request.cookies.get(identity.DASHBOARD_COOKIE)
    if cookie:
        sent = flask.request.form.get("csrf", "")
        if not hmac.compare_digest(
            sent.encode(), identity.csrf_token(cookie).encode()
        ):
            raise errors.Forbidden("csrf: the form is not this page's")
    response = flask.redirect(flask.url_for("dashboard.login_form"), 303)
    response.delete_cookie(
        identity.DASHBOARD_COOKIE,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=flask.request.is_secure,
    )
    return response
