"""Keystone trusts behind ``trust+http(s)://`` alarm actions.

An action such as ``trust+https://heat.example/v1/signal`` asks alarmer
to call the URL with a Keystone token of the user who saved the alarm.
In ``[api] auth_mode = keystone``, saving such an action creates a
trust from that user (the trustor, with the request's token) to
alarmer's service user (the trustee, ``[service_credentials]``),
delegating the user's roles on the project with impersonation, and
stores the trust id in the URL's user information:
``trust+https://<trust id>:delete@heat.example/v1/signal``.  The
``:delete`` mark says that alarmer created the trust and deletes it
when the action or the alarm goes.  At delivery, the notifier exchanges
the service credentials and the trust id for a trust-scoped token.

The URL functions are pure; :class:`Keystone` talks to Keystone through
keystoneauth1 with the ``[service_credentials]`` options (Aodh's names:
``auth_type``, ``auth_url``, ``username``, ``password``,
``user_domain_id``, ``project_name``..., ``interface``,
``region_name``).
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from oslo_config import cfg

from alarmer.errors import AlarmerError

LOG = logging.getLogger(__name__)

#: The configuration section of alarmer's service user.
GROUP = "service_credentials"
#: URL schemes whose actions carry a trust.
SCHEMES = ("trust+http", "trust+https")
#: The password of a trust URL that marks a trust alarmer created.
OWNED = "delete"


class TrustError(AlarmerError):
    """Keystone refused or could not be reached.

    :ivar status: Keystone's HTTP status, None when it was not reached.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# -- URLs (pure) --------------------------------------------------------------


def is_trust_url(url: str) -> bool:
    """True for a ``trust+http(s)://`` action."""
    scheme = url.partition(":")[0].strip().lower()
    return scheme in SCHEMES


def _split(url: str) -> urllib.parse.SplitResult:
    return urllib.parse.urlsplit(url.strip())


def trust_id(url: str) -> str | None:
    """The trust id of a trust action, None when it names none."""
    if not is_trust_url(url):
        return None
    parts = _split(url)
    return urllib.parse.unquote(parts.username) if parts.username else None


def owned(url: str) -> bool:
    """True when alarmer created the trust of *url* (``:delete``)."""
    if trust_id(url) is None:
        return False
    return _split(url).password == OWNED


def _host_part(parts: urllib.parse.SplitResult) -> str:
    return parts.netloc.rpartition("@")[2]


def scrub(url: str) -> str:
    """*url* without its user information when it is a trust action.

    What the API shows of a stored trust action: the trust id is the
    trustor's delegation and is never shown.
    """
    if not is_trust_url(url):
        return url
    parts = _split(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=_host_part(parts)))


def with_trust(url: str, trust: str) -> str:
    """*url* carrying *trust*, marked as created by alarmer."""
    parts = _split(url)
    quoted = urllib.parse.quote(trust, safe="")
    netloc = f"{quoted}:{OWNED}@{_host_part(parts)}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def target(url: str) -> urllib.parse.SplitResult:
    """The plain ``http(s)`` URL a trust action posts to."""
    parts = _split(url)
    scheme = parts.scheme.lower().removeprefix("trust+")
    return parts._replace(scheme=scheme, netloc=_host_part(parts))


def owned_trusts(urls: Iterable[str]) -> set[str]:
    """The trust ids alarmer created among *urls*."""
    found = set()
    for url in urls:
        trust = trust_id(url)
        if trust is not None and owned(url):
            found.add(trust)
    return found


# -- Keystone -----------------------------------------------------------------


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register ``[service_credentials]``'s authentication options.

    The plugin's own options (``username``, ``password``...) are
    registered by keystoneauth1 once ``auth_type`` is read.
    """
    from keystoneauth1 import loading

    loading.register_auth_conf_options(conf, GROUP)
    loading.register_session_conf_options(conf, GROUP)


def _status(exc: Exception) -> int | None:
    status = getattr(exc, "http_status", None)
    return status if isinstance(status, int) else None


class Keystone:
    """alarmer's service user at Keystone.

    One instance per process part (the API's requests share none; the
    notifier plugin keeps one): it holds the service session and a
    bounded cache of trust-scoped authentications, each of which keeps
    its token until shortly before it expires.

    :param conf: a configuration with ``[service_credentials]`` options
        (see :mod:`alarmer.conf.service_credentials`).
    :param cache_size: trusts whose tokens are kept.
    """

    def __init__(self, conf: cfg.ConfigOpts, cache_size: int = 1024) -> None:
        from keystoneauth1 import exceptions, loading

        self.conf = conf
        register_opts(conf)
        try:
            self._auth = loading.load_auth_from_conf_options(conf, GROUP)
        except exceptions.ClientException as exc:
            raise TrustError(
                f"[service_credentials] cannot be used: {exc}"
            ) from exc
        if self._auth is None:
            raise TrustError(
                "[service_credentials] auth_type is not set: alarmer needs "
                "its service user's credentials for trust+ actions"
            )
        self._session = loading.load_session_from_conf_options(
            conf, GROUP, auth=self._auth
        )
        self._trusted: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def _options(self) -> Any:
        return getattr(self.conf, GROUP)

    def _option(self, name: str) -> Any:
        return getattr(self._options, name, None)

    def _filter(self) -> dict[str, Any]:
        return {
            "service_type": "identity",
            "interface": self._option("interface") or "public",
            "region_name": self._option("region_name"),
            "version": (3, 0),
        }

    def service_user_id(self) -> str:
        """The id of alarmer's service user (the trustee)."""
        from keystoneauth1 import exceptions

        try:
            user: str | None = self._session.get_user_id()
        except exceptions.ClientException as exc:
            raise TrustError(
                f"Keystone refused alarmer's service credentials: {exc}",
                _status(exc),
            ) from exc
        if not user:
            raise TrustError("Keystone named no service user")
        return user

    def create_trust(
        self,
        user_token: str,
        trustor_user_id: str,
        project_id: str,
        roles: Sequence[str],
    ) -> str:
        """Create a trust from the caller to the service user; its id.

        :param user_token: the caller's token (the trustor's).
        :param roles: role names delegated on *project_id*.
        :raises TrustError: Keystone refused or was not reached.
        """
        from keystoneauth1 import exceptions

        body = {
            "trust": {
                "trustor_user_id": trustor_user_id,
                "trustee_user_id": self.service_user_id(),
                "project_id": project_id,
                "impersonation": True,
                "roles": [{"name": role} for role in sorted(roles)],
            }
        }
        try:
            response = self._session.post(
                "/OS-TRUST/trusts",
                json=body,
                headers={"X-Auth-Token": user_token},
                authenticated=False,
                endpoint_filter=self._filter(),
                raise_exc=True,
            )
        except exceptions.ClientException as exc:
            raise TrustError(
                f"Keystone did not create the trust: {exc}", _status(exc)
            ) from exc
        created: str = response.json()["trust"]["id"]
        LOG.info(
            "trust created for user %s on project %s",
            trustor_user_id,
            project_id,
        )
        return created

    def get_trust(self, user_token: str, trust: str) -> dict[str, Any]:
        """What Keystone shows *user_token*'s user of *trust*.

        Keystone shows a trust to its trustor and its trustee only.

        :raises TrustError: Keystone refused or was not reached.
        """
        from keystoneauth1 import exceptions

        try:
            response = self._session.get(
                f"/OS-TRUST/trusts/{urllib.parse.quote(trust, safe='')}",
                headers={"X-Auth-Token": user_token},
                authenticated=False,
                endpoint_filter=self._filter(),
                raise_exc=True,
            )
        except exceptions.ClientException as exc:
            raise TrustError(
                f"Keystone did not show the trust: {exc}", _status(exc)
            ) from exc
        found: dict[str, Any] = response.json()["trust"]
        return found

    def _trust_auth(self, trust: str) -> Any:
        """The trust-scoped authentication of *trust* (cached)."""
        from keystoneauth1.identity import v3

        with self._lock:
            auth = self._trusted.get(trust)
            if auth is not None:
                self._trusted.move_to_end(trust)
                return auth
            auth = v3.Password(
                auth_url=self._option("auth_url"),
                username=self._option("username"),
                user_id=self._option("user_id"),
                password=self._option("password"),
                user_domain_id=self._option("user_domain_id"),
                user_domain_name=self._option("user_domain_name"),
                trust_id=trust,
            )
            self._trusted[trust] = auth
            while len(self._trusted) > self._cache_size:
                self._trusted.popitem(last=False)
            return auth

    def trust_token(self, trust: str) -> str:
        """A trust-scoped token of the service user for *trust*.

        The token is reused until keystoneauth1 finds it about to expire.

        :raises TrustError: Keystone refused or was not reached.
        """
        from keystoneauth1 import exceptions

        auth = self._trust_auth(trust)
        try:
            token: str | None = auth.get_token(self._session)
        except exceptions.ClientException as exc:
            with self._lock:
                self._trusted.pop(trust, None)
            raise TrustError(
                f"Keystone gave no trust-scoped token: {exc}", _status(exc)
            ) from exc
        if not token:
            raise TrustError("Keystone gave no trust-scoped token")
        return token

    def delete_trust(self, trust: str) -> None:
        """Delete *trust* with a token scoped to it (the trustor's, by
        impersonation); a trust already gone is no error.

        :raises TrustError: Keystone refused or was not reached.
        """
        from keystoneauth1 import exceptions

        try:
            token = self.trust_token(trust)
            self._session.delete(
                f"/OS-TRUST/trusts/{urllib.parse.quote(trust, safe='')}",
                headers={"X-Auth-Token": token},
                authenticated=False,
                endpoint_filter=self._filter(),
                raise_exc=True,
            )
        except TrustError as exc:
            if exc.status in (401, 404):
                LOG.info("trust already gone at Keystone")
                return
            raise
        except exceptions.NotFound:
            LOG.info("trust already gone at Keystone")
            return
        except exceptions.ClientException as exc:
            raise TrustError(
                f"Keystone did not delete the trust: {exc}", _status(exc)
            ) from exc
        finally:
            with self._lock:
                self._trusted.pop(trust, None)
        LOG.info("trust deleted")
