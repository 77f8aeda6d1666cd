"""``http://`` and ``https://``: POST Aodh's JSON body to the action URL.

Headers: ``Content-Type: application/json``, ``User-Agent: alarmer/<v>``,
``webhook-id`` (the delivery id, stable across retries; also sent as
``X-OpenStack-Request-Id: req-<id>``), ``webhook-timestamp`` (Unix
seconds of this attempt), ``X-Alarmer-Sequence`` (the alarm's
notification sequence number) and, when a secret is configured,
``webhook-signature`` (see :mod:`alarmer.notifier.signing`).

Connections are reused (one :class:`requests.Session` per process),
every request has a connect and a read timeout, redirects are not
followed (a redirect could lead to an internal address), and the target
address is checked again before each attempt.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
import urllib.parse

import requests
import requests.adapters
from oslo_config import cfg

from alarmer import __version__, timeutils
from alarmer.notifier import signing
from notifiers import base

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

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
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
        self._networks = base.allowed_networks(conf)
        self._timeouts = (
            conf.notifier.connect_timeout,
            conf.notifier.read_timeout,
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
        url = action.geturl()
        try:
            base.check_target(
                action,
                self.conf,
                unresolvable_ok=False,
                networks=self._networks,
            )
        except base.InvalidAction as exc:
            return base.Result(
                delivered=False,
                retryable=False,
                error=exc.message,
                duration=time.monotonic() - start,
            )
        body = json.dumps(message.payload()).encode("utf-8")
        try:
            # Prepared directly: the session has no cookies, auth or
            # environment settings to merge (trust_env is off).
            request = requests.Request(
                "POST", url, data=body, headers=self.headers(message, body)
            ).prepare()
            response = self.session.send(
                request,
                timeout=self._timeouts,
                verify=self._verify(action),
                cert=self._cert(),
                proxies={},
                allow_redirects=False,
                stream=True,
            )
        except requests.Timeout as exc:
            return self._failure(start, f"timeout: {exc}", retryable=True)
        except requests.ConnectionError as exc:
            return self._failure(
                start, f"connection error: {exc}", retryable=True
            )
        except (requests.RequestException, ValueError) as exc:
            return self._failure(start, f"request error: {exc}")
        try:
            text = self._read_body(response)
        except (requests.RequestException, OSError) as exc:
            return self._failure(
                start,
                f"error reading the response: {exc}",
                retryable=True,
                status=response.status_code,
            )
        status = response.status_code
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
    def _read_body(response: requests.Response) -> str:
        """Read at most :data:`MAX_BODY` bytes; keep the connection if
        the body was read to its end."""
        raw = response.raw
        data = raw.read(MAX_BODY, decode_content=True) or b""
        if len(data) < MAX_BODY or not raw.read(1):
            raw.release_conn()
        else:
            response.close()
        return data.decode("utf-8", "replace").strip()

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
