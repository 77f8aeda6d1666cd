"""``http://`` and ``https://``: POST Aodh's JSON body to the action URL.

Headers: ``Content-Type: application/json``, ``User-Agent: alarmer/<v>``,
``webhook-id`` (the delivery id, stable across retries; also sent as
``X-OpenStack-Request-Id: req-<id>``), ``webhook-timestamp`` (Unix
seconds of this attempt), ``X-Alarmer-Sequence`` (the alarm's
notification sequence number) and, when a secret is configured,
``webhook-signature`` (see :mod:`notifiers.signing`).

Connections are kept alive and reused (:mod:`notifiers.wire`: one pool
per address, port and TLS setting, in each plugin instance), every
request has a connect and a read timeout, redirects are not
followed (a redirect could lead to an internal address), and the target
address is checked again before each attempt.  The host name is resolved
once per attempt and the connection goes to an address that was checked
(never to the name, which a second resolution could answer differently):
the ``Host`` header, and for https the TLS server name (SNI) and the
certificate verification, keep the name of the URL.  No proxy and no
``.netrc`` credentials are read from the environment: a webhook must
not receive an operator's credentials.
"""

from __future__ import annotations

import email.utils
import json
import logging
import ssl
import threading
import time
import urllib.parse

import requests.utils
import urllib3.util
from oslo_config import cfg

from alarmer import __version__, timeutils
from notifiers import base, signing, wire

LOG = logging.getLogger(__name__)

USER_AGENT = f"alarmer/{__version__}"
#: Aodh's per-URL override of TLS verification.
SSL_VERIFY_PARAM = "aodh-alarm-ssl-verify"
#: Bytes of a response body kept for the delivery log.
MAX_BODY = 1024
#: Checked literal addresses kept by a plugin (all forgotten past it).
MAX_LITERALS = 4096


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
        # Idle connections kept per pool: one per worker.
        self._pool_size = max(10, conf.notifier.workers)
        self._pools: dict[tuple[object, ...], wire.Pool] = {}
        self._pools_lock = threading.Lock()
        # Checked addresses written in URLs (see _addresses).
        self._literals: dict[
            tuple[str | None, int | None], list[base.IPAddress]
        ] = {}
        self._networks = base.allowed_networks(conf)
        self._connect_timeout = conf.notifier.connect_timeout
        self._read_timeout = conf.notifier.read_timeout

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
            addresses = self._addresses(action)
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
        headers["Accept-Encoding"] = "identity"
        if action.username is not None:
            # Credentials in the URL: HTTP basic auth, as requests does.
            headers["Authorization"] = urllib3.util.make_headers(
                basic_auth=f"{urllib.parse.unquote(action.username)}:"
                f"{urllib.parse.unquote(action.password or '')}"
            )["authorization"]
        try:
            head = wire.request_head(target, headers, len(body))
        except ValueError as exc:
            return self._failure(start, f"request error: {exc}")
        for index, address in enumerate(addresses):
            last = index == len(addresses) - 1
            try:
                response = self._pool(action, address).post(head, body)
            except wire.ConnectError as exc:
                if not last:
                    LOG.debug("cannot connect to %s: %s", address, exc)
                    continue
                return self._failure(
                    start, f"connection error: {exc}", retryable=True
                )
            except TimeoutError as exc:
                return self._failure(start, f"timeout: {exc}", retryable=True)
            except OSError as exc:
                return self._failure(
                    start, f"connection error: {exc}", retryable=True
                )
            except ValueError as exc:
                return self._failure(start, f"request error: {exc}")
            return self._answer(start, response)
        return self._failure(start, "no address to connect to")

    def _addresses(
        self, action: urllib.parse.SplitResult
    ) -> list[base.IPAddress]:
        """The checked addresses of *action*'s host (see
        :func:`notifiers.base.check_target`).

        A name is resolved and checked at each attempt; the check of an
        address written in the URL (no resolution) is kept, as its
        answer cannot change.
        """
        key = (action.hostname, action.port)
        found = self._literals.get(key)
        if found is not None:
            return found
        addresses = base.check_target(
            action,
            self.conf,
            unresolvable_ok=False,
            networks=self._networks,
            resolver=self.resolver,
        )
        if (
            self.resolver is None
            and len(addresses) == 1
            and str(addresses[0]) == action.hostname
        ):
            if len(self._literals) >= MAX_LITERALS:
                self._literals.clear()
            self._literals[key] = addresses
        return addresses

    def _answer(self, start: float, response: wire.Response) -> base.Result:
        """Classify *response* for the retry policy."""
        status = response.status
        if response.body_error is not None:
            return self._failure(
                start,
                f"error reading the response: {response.body_error}",
                retryable=True,
                status=status,
            )
        text = response.body.decode("utf-8", "replace").strip()
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
                response.headers.get("retry-after")
            )
        return base.Result(
            delivered=False,
            retryable=retryable,
            status_code=status,
            error=error,
            retry_after=retry_after,
            duration=duration,
        )

    def _pool(
        self, action: urllib.parse.SplitResult, address: base.IPAddress
    ) -> wire.Pool:
        """Return the connection pool to *address* for *action*."""
        scheme = action.scheme.lower()
        port = action.port or (443 if scheme == "https" else 80)
        verify: bool | str = False
        cert: str | tuple[str, str] | None = None
        name = None
        if scheme == "https":
            verify = self._verify(action)
            cert = self._cert()
            hostname = action.hostname or ""
            if verify and hostname and hostname != str(address):
                # The name of the URL, not the address connected to, in
                # the TLS handshake and the certificate check.
                name = hostname
        key = (str(address), port, scheme, verify, cert, name)
        pool = self._pools.get(key)
        if pool is not None:
            return pool
        with self._pools_lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = wire.Pool(
                    str(address),
                    port,
                    connect_timeout=self._connect_timeout,
                    read_timeout=self._read_timeout,
                    context=self._context(verify, cert)
                    if scheme == "https"
                    else None,
                    server_name=name,
                    verify=bool(verify),
                    maxsize=self._pool_size,
                    max_body=MAX_BODY,
                )
                self._pools[key] = pool
            return pool

    def _context(
        self, verify: bool | str, cert: str | tuple[str, str] | None
    ) -> ssl.SSLContext:
        """The TLS context verifying with *verify* (a CA bundle, the
        default one, or no verification) and presenting *cert*."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # The name is matched by the pool, against the URL's host.
        context.check_hostname = False
        if verify:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(
                cafile=verify
                if isinstance(verify, str)
                else requests.utils.DEFAULT_CA_BUNDLE_PATH
            )
        else:
            context.verify_mode = ssl.CERT_NONE
        if isinstance(cert, tuple):
            context.load_cert_chain(cert[0], cert[1])
        elif cert is not None:
            context.load_cert_chain(cert)
        return context

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
        with self._pools_lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
