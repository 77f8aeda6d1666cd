"""``http://`` and ``https://``: POST Aodh's JSON body to the action URL.

Headers: ``Content-Type: application/json``, ``User-Agent: alarmer/<v>``,
``webhook-id`` (the delivery id, stable across retries; also sent as
``X-OpenStack-Request-Id: req-<id>``), ``webhook-timestamp`` (Unix
seconds of this attempt), ``X-Alarmer-Sequence`` (the alarm's
notification sequence number) and, when a secret is configured,
``webhook-signature`` (see :mod:`notifiers.signing`).

Connections are reused (one :class:`requests.Session` per process),
every request has a connect and a read timeout, redirects are not
followed (a redirect could lead to an internal address), and the target
address is checked again before each attempt.  The host name is resolved
once per attempt and the connection goes to an address that was checked
(never to the name, which a second resolution could answer differently):
the ``Host`` header, and for https the TLS server name (SNI) and the
certificate verification, keep the name of the URL.  Pools are kept per
address, name, port and scheme.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
import urllib.parse

import requests
import requests.adapters
import requests.utils
import urllib3
import urllib3.connectionpool
import urllib3.exceptions
import urllib3.util
from oslo_config import cfg

from alarmer import __version__, timeutils
from notifiers import base, signing

LOG = logging.getLogger(__name__)

USER_AGENT = f"alarmer/{__version__}"
#: Aodh's per-URL override of TLS verification.
SSL_VERIFY_PARAM = "aodh-alarm-ssl-verify"
#: Bytes of a response body kept for the delivery log.
MAX_BODY = 1024


def parse_retry_after(value: str | None) -> float | None:
    """Return the seconds of a ``Retry-After`` value (delay or date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    when = timeutils.as_utc(when)
    return max(0.0, (when - timeutils.utcnow()).total_seconds())


def _query_flag(action: urllib.parse.SplitResult, name: str) -> bool | None:
    for key, value in urllib.parse.parse_qsl(action.query):
        if key == name:
            return value.strip().lower() not in ("0", "false", "no", "off")
    return None


class HttpNotifier(base.Notifier):
    """Webhook plugin for ``http`` and ``https``."""

    def __init__(
        self, conf: cfg.ConfigOpts, resolver: base.Resolver | None = None
    ) -> None:
        super().__init__(conf)
        #: Resolves target names (default :func:`notifiers.base.resolve`);
        #: the only resolution of a delivery.
        self.resolver = resolver
        self.session = requests.Session()
        # Never read proxies or .netrc credentials from the environment:
        # a webhook must not receive an operator's credentials.
        self.session.trust_env = False
        pool = max(10, conf.notifier.workers)
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=pool, pool_maxsize=pool, max_retries=0
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._adapter = adapter
        self._networks = base.allowed_networks(conf)
        self._timeout = urllib3.Timeout(
            connect=conf.notifier.connect_timeout,
            read=conf.notifier.read_timeout,
        )

    @classmethod
    def validate(
        cls,
        action: urllib.parse.SplitResult,
        conf: cfg.ConfigOpts,
        identity: object = None,
    ) -> None:
        """Refuse URLs without a host or targeting internal addresses."""
        base.check_target(action, conf, unresolvable_ok=True)

    def _verify(self, action: urllib.parse.SplitResult) -> bool | str:
        opts = self.conf.notifier
        verify = opts.rest_notifier_ssl_verify
        override = _query_flag(action, SSL_VERIFY_PARAM)
        if override is not None:
            verify = override
        if verify and opts.rest_notifier_ca_bundle_certificate_path:
            return opts.rest_notifier_ca_bundle_certificate_path
        return verify

    def _cert(self) -> str | tuple[str, str] | None:
        opts = self.conf.notifier
        if opts.rest_notifier_certificate_file:
            if opts.rest_notifier_certificate_key:
                return (
                    opts.rest_notifier_certificate_file,
                    opts.rest_notifier_certificate_key,
                )
            return opts.rest_notifier_certificate_file
        return None

    def headers(self, message: base.Message, body: bytes) -> dict[str, str]:
        """Return the request headers of one attempt."""
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": message.delivery_id,
            "webhook-timestamp": str(timestamp),
            "X-OpenStack-Request-Id": f"req-{message.delivery_id}",
            "X-Alarmer-Sequence": str(message.seq),
        }
        if message.secrets:
            headers["webhook-signature"] = signing.sign(
                message.secrets, message.delivery_id, timestamp, body
            )
        return headers

    def notify(
        self, action: urllib.parse.SplitResult, message: base.Message
    ) -> base.Result:
        """POST *message*; classify the answer for the retry policy."""
        start = time.monotonic()
        try:
            addresses = base.check_target(
                action,
                self.conf,
                unresolvable_ok=False,
                networks=self._networks,
                resolver=self.resolver,
            )
        except base.InvalidAction as exc:
            return base.Result(
                delivered=False,
                retryable=False,
                error=exc.message,
                duration=time.monotonic() - start,
            )
        body = json.dumps(message.payload()).encode("utf-8")
        target = action.path or "/"
        if action.query:
            target += "?" + action.query
        headers = self.headers(message, body)
        # What a client connecting by name sends: the URL's host and port.
        headers["Host"] = action.netloc.rpartition("@")[2]
        if action.username is not None:
            # Credentials in the URL: HTTP basic auth, as requests does.
            headers["Authorization"] = urllib3.util.make_headers(
                basic_auth=f"{urllib.parse.unquote(action.username)}:"
                f"{urllib.parse.unquote(action.password or '')}"
            )["authorization"]
        for index, address in enumerate(addresses):
            last = index == len(addresses) - 1
            try:
                response = self._send(action, address, target, body, headers)
            except urllib3.exceptions.NewConnectionError as exc:
                if not last:
                    LOG.debug("cannot connect to %s: %s", address, exc)
                    continue
                return self._failure(
                    start, f"connection error: {exc}", retryable=True
                )
            except urllib3.exceptions.TimeoutError as exc:
                return self._failure(start, f"timeout: {exc}", retryable=True)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                return self._failure(
                    start, f"connection error: {exc}", retryable=True
                )
            except ValueError as exc:
                return self._failure(start, f"request error: {exc}")
            return self._answer(start, response)
        return self._failure(start, "no address to connect to")

    def _send(
        self,
        action: urllib.parse.SplitResult,
        address: base.IPAddress,
        target: str,
        body: bytes,
        headers: dict[str, str],
    ) -> urllib3.BaseHTTPResponse:
        """POST to *address*, a checked address of the action's host."""
        # Straight to a urllib3 pool of the session's adapter: the session
        # has no cookies, auth, proxies or environment settings to merge
        # (trust_env is off), and this saves most of the per-request work
        # of requests.
        pool = self._pool(action, address)
        return pool.urlopen(
            "POST",
            target,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            assert_same_host=False,
            timeout=self._timeout,
            preload_content=False,
            decode_content=False,
            release_conn=False,
        )

    def _answer(
        self, start: float, response: urllib3.BaseHTTPResponse
    ) -> base.Result:
        """Classify *response* for the retry policy."""
        try:
            text = self._read_body(response)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            response.release_conn()
            return self._failure(
                start,
                f"error reading the response: {exc}",
                retryable=True,
                status=response.status,
            )
        status = response.status
        duration = time.monotonic() - start
        if 200 <= status < 300:
            return base.Result(
                delivered=True, status_code=status, duration=duration
            )
        retryable = status == 429 or status >= 500
        error = f"HTTP {status} {response.reason or ''}".rstrip()
        if text:
            error += f": {text}"
        retry_after = None
        if retryable:
            retry_after = parse_retry_after(
                response.headers.get("Retry-After")
            )
        return base.Result(
            delivered=False,
            retryable=retryable,
            status_code=status,
            error=error,
            retry_after=retry_after,
            duration=duration,
        )

    @staticmethod
    def _read_body(response: urllib3.BaseHTTPResponse) -> str:
        """Read at most :data:`MAX_BODY` bytes; keep the connection if
        the body was read to its end."""
        data = response.read(MAX_BODY, decode_content=True) or b""
        if len(data) < MAX_BODY or not response.read(1):
            response.release_conn()
        else:
            response.close()
            response.release_conn()
        return data.decode("utf-8", "replace").strip()

    def _pool(
        self, action: urllib.parse.SplitResult, address: base.IPAddress
    ) -> urllib3.connectionpool.HTTPConnectionPool:
        """Return the connection pool to *address* for *action*."""
        scheme = action.scheme.lower()
        kwargs: dict[str, object] | None = None
        if scheme == "https":
            verify = self._verify(action)
            kwargs = {"cert_reqs": "CERT_REQUIRED" if verify else "CERT_NONE"}
            if verify:
                kwargs["ca_certs"] = (
                    verify
                    if isinstance(verify, str)
                    else requests.utils.DEFAULT_CA_BUNDLE_PATH
                )
            cert = self._cert()
            if isinstance(cert, tuple):
                kwargs["cert_file"], kwargs["key_file"] = cert
            elif cert is not None:
                kwargs["cert_file"] = cert
            name = action.hostname or ""
            if verify and name and name != str(address):
                # The name of the URL, not the address connected to, in
                # the TLS handshake and the certificate check.
                kwargs["server_hostname"] = name
                kwargs["assert_hostname"] = name
        return self._adapter.poolmanager.connection_from_host(
            str(address),
            action.port,
            scheme=scheme,
            pool_kwargs=kwargs,
        )

    @staticmethod
    def _failure(
        start: float,
        error: str,
        *,
        retryable: bool = False,
        status: int | None = None,
    ) -> base.Result:
        return base.Result(
            delivered=False,
            retryable=retryable,
            status_code=status,
            error=error,
            duration=time.monotonic() - start,
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()
