"""The "metric changed" channel between the metrics engine and evaluators.

When measures of a metric are stored, the API publishes the metric ids
here; evaluators subscribe and re-evaluate the alarms reading those
metrics at once.  :class:`LocalChannel` serves the one-command start (API
and evaluator in one process); channels that cross processes and hosts
implement the same two verbs: :class:`RedisChannel` (pub/sub) is chosen
by :func:`make_channel` from ``[evaluator] metric_channel``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import redis

LOG = logging.getLogger(__name__)

Callback = Callable[[list[str]], None]


class MetricChannel(Protocol):
    """Announce and receive the ids of metrics that received measures."""

    def publish(self, metric_ids: Iterable[str]) -> None:
        """Announce that these metrics received new measures."""

    def subscribe(self, callback: Callback) -> None:
        """Call *callback* with each announced batch of metric ids.

        The callback runs on the publisher's or the channel's thread and
        must return quickly (queue the work).
        """

    def unsubscribe(self, callback: Callback) -> None:
        """Stop calling *callback*."""

    def close(self) -> None:
        """Release the channel's resources."""


class LocalChannel:
    """In-process channel: subscribers are called on the publisher thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: tuple[Callback, ...] = ()

    def publish(self, metric_ids: Iterable[str]) -> None:
        """Call every subscriber with the list of metric ids."""
        ids = list(metric_ids)
        if not ids:
            return
        for callback in self._callbacks:
            try:
                callback(ids)
            except Exception:
                LOG.exception("metric channel subscriber failed")

    def subscribe(self, callback: Callback) -> None:
        """Register *callback*."""
        with self._lock:
            self._callbacks = (*self._callbacks, callback)

    def unsubscribe(self, callback: Callback) -> None:
        """Unregister *callback* (no error when it was not registered)."""
        with self._lock:
            self._callbacks = tuple(
                c for c in self._callbacks if c is not callback
            )

    def close(self) -> None:
        """Drop every subscriber."""
        with self._lock:
            self._callbacks = ()


class RedisChannel:
    """Cross-process, cross-host channel over Redis pub/sub.

    :meth:`publish` sends one ``PUBLISH`` of the comma-joined ids;
    subscribers receive them on a background thread that reconnects
    after a Redis failure (announcements made meanwhile are lost; the
    periodic evaluation covers them).  The callback must return quickly.
    """

    def __init__(self, url: str, *, name: str = "alarmer:metrics") -> None:
        self.url = url
        self.name = name
        self._redis = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5
        )
        self._lock = threading.Lock()
        self._callbacks: tuple[Callback, ...] = ()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()

    def publish(self, metric_ids: Iterable[str]) -> None:
        """Announce *metric_ids*; a Redis failure is logged, not raised."""
        ids = list(metric_ids)
        if not ids:
            return
        try:
            self._redis.publish(self.name, ",".join(ids))
        except Exception as exc:
            LOG.warning("metric channel: publish failed: %s", exc)

    def subscribe(self, callback: Callback) -> None:
        """Register *callback*; the listener thread starts on first use."""
        with self._lock:
            self._callbacks = (*self._callbacks, callback)
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._listen, name="metric-channel", daemon=True
                )
                self._thread.start()
        self._ready.wait(5)

    def unsubscribe(self, callback: Callback) -> None:
        """Unregister *callback*."""
        with self._lock:
            self._callbacks = tuple(
                c for c in self._callbacks if c is not callback
            )

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.name)
                self._ready.set()
                backoff = 0.1
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None or message.get("type") != "message":
                        continue
                    raw = message["data"]
                    text = raw.decode() if isinstance(raw, bytes) else raw
                    ids = [i for i in text.split(",") if i]
                    for callback in self._callbacks:
                        try:
                            callback(ids)
                        except Exception:
                            LOG.exception("metric channel subscriber failed")
            except Exception as exc:
                if self._stop.is_set():
                    break
                LOG.warning(
                    "metric channel: Redis subscription lost (%s); "
                    "reconnecting in %.1f s",
                    exc,
                    backoff,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    LOG.debug("closing the subscription failed", exc_info=True)

    def close(self) -> None:
        """Stop the listener and close the connections."""
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
            self._callbacks = ()
        if thread is not None:
            thread.join(timeout=5)
        self._redis.close()


def channel_url(conf: Any) -> str:
    """The channel ``[evaluator] metric_channel`` designates.

    Empty: the Redis server of ``[coordination] backend_url`` when that is
    a ``redis://`` URL, else ``local``.
    """
    url = conf.evaluator.metric_channel
    if url:
        return url
    backend = conf.coordination.backend_url or ""
    if backend.startswith(("redis://", "rediss://")):
        parts = urlsplit(backend)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return "local"


def make_channel(conf: Any) -> MetricChannel:
    """Build the channel the configuration designates."""
    url = channel_url(conf)
    if url == "local":
        return LocalChannel()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisChannel(url)
    raise ValueError(
        f"[evaluator] metric_channel: unsupported channel {url!r} "
        "(use 'local' or a redis:// URL)"
    )
