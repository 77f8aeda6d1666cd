"""``trust+http://`` and ``trust+https://``: a webhook with a Keystone token.

The action carries the id of a Keystone trust in its user information
(``trust+https://<trust id>:delete@host/path``, see
:mod:`alarmer.identity.trusts`).  Each attempt exchanges alarmer's
service credentials (``[service_credentials]``) and the trust id for a
trust-scoped token (kept until shortly before it expires), then POSTs
the notification as the ``http``/``https`` plugin does, to the URL
without ``trust+`` and without the user information, with the token in
``X-Auth-Token``.  A failure to get the token is an attempt that failed
and is retried as any other.
"""

from __future__ import annotations

import threading
import time
import urllib.parse

from oslo_config import cfg

from alarmer.identity import trusts
from notifiers import base, http


class TrustNotifier(http.HttpNotifier):
    """Webhook plugin for ``trust+http`` and ``trust+https``."""

    def __init__(
        self, conf: cfg.ConfigOpts, resolver: base.Resolver | None = None
    ) -> None:
        super().__init__(conf, resolver)
        self._keystone: trusts.Keystone | None = None
        self._keystone_lock = threading.Lock()
        # The token of the attempt running in this thread, read by
        # :meth:`headers`.
        self._attempt = threading.local()

    @classmethod
    def validate(
        cls,
        action: urllib.parse.SplitResult,
        conf: cfg.ConfigOpts,
        identity: object = None,
    ) -> None:
        """Check the target as the ``http(s)`` plugin does."""
        base.check_target(
            trusts.target(action.geturl()), conf, unresolvable_ok=True
        )

    def keystone(self) -> trusts.Keystone:
        """The service user's Keystone client (built on first use).

        :raises alarmer.identity.trusts.TrustError: the
            ``[service_credentials]`` cannot be used.
        """
        with self._keystone_lock:
            if self._keystone is None:
                self._keystone = trusts.Keystone(self.conf)
            return self._keystone

    def headers(self, message: base.Message, body: bytes) -> dict[str, str]:
        """The ``http(s)`` headers and the attempt's ``X-Auth-Token``."""
        headers = super().headers(message, body)
        token = getattr(self._attempt, "token", None)
        if token:
            headers["X-Auth-Token"] = token
        return headers

    def notify(
        self, action: urllib.parse.SplitResult, message: base.Message
    ) -> base.Result:
        """Get a trust-scoped token, then POST *message* with it."""
        start = time.monotonic()
        url = action.geturl()
        trust = trusts.trust_id(url)
        if trust is None:
            return self._failure(
                start,
                "the action names no trust: it was saved outside "
                "auth_mode = keystone",
            )
        try:
            token = self.keystone().trust_token(trust)
        except trusts.TrustError as exc:
            return self._failure(
                start,
                f"no trust-scoped token: {exc.message}",
                retryable=True,
                status=None,
            )
        self._attempt.token = token
        try:
            return super().notify(trusts.target(url), message)
        finally:
            self._attempt.token = None
