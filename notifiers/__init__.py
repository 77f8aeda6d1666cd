"""Notifications out of alarmer: the plugins and the delivery service.

**Plugins** deliver one message to one action URL and are chosen by the
URL's scheme.  They are registered as ``alarmer.notifier`` entry points
(``setup.cfg``: ``http``, ``https``, ``log``); installing a package that
declares another entry point adds a scheme without touching alarmer.  A
plugin subclasses :class:`Notifier`: it is built with the configuration,
validates an action when an alarm is saved (:meth:`Notifier.validate`)
and answers each :meth:`Notifier.notify` with a :class:`Result`, never
raising for a delivery error.  Everything a plugin needs is passed in
(configuration, :class:`Message`); plugins import :mod:`notifiers.base`
and helpers such as :mod:`notifiers.signing`, never the service parts.
The API calls :func:`validate_action` for every action URL of an alarm
it saves, so an unsupported or forbidden action is refused with a 400
then, not at delivery time.

**The delivery service** turns the outbox of the alarms into webhooks,
at least once and in order per alarm and target, from parts that each
stand alone:

* :mod:`notifiers.tables`: the ``delivery``, ``delivery_attempt`` and
  ``notification_expansion`` tables;
* :mod:`notifiers.jobs`: the values passed between the parts (a claimed
  :class:`~notifiers.jobs.Job`, its attempts, its outcome);
* :mod:`notifiers.queue`: the queue in SQL (expand the outbox, claim,
  sweep, record, promote, redeliver);
* :mod:`notifiers.retry`: the retry policy (backoff, ``Retry-After``,
  dead-lettering), pure;
* :mod:`notifiers.deliver`: the attempts of one job by its plugin;
* :mod:`notifiers.dispatch`: per-host limits and the worker pool;
* :mod:`notifiers.wakeup`: how the service learns about new work;
* :mod:`notifiers.service`: :class:`~notifiers.service.NotifierService`,
  the loop wiring them (what ``alarmer-notifier`` runs).

This module holds the plugin interface only, so that importing it (the
API does) loads neither the plugins nor the service.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import types
import urllib.parse
from collections.abc import Mapping
from typing import Any

from oslo_config import cfg

from notifiers.base import InvalidAction, Message, Notifier, Result, redact

__all__ = [
    "ENTRY_POINT_GROUP",
    "InvalidAction",
    "Message",
    "Notifier",
    "Result",
    "parse_action",
    "plugin_classes",
    "redact",
    "validate_action",
]

LOG = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "alarmer.notifier"


@functools.cache
def plugin_classes() -> Mapping[str, type[Notifier]]:
    """Return the installed plugins by scheme (read once per process).

    A plugin that fails to load is logged and left out.
    """
    classes: dict[str, type[Notifier]] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception:
            LOG.exception("cannot load notifier plugin %s", entry.value)
            continue
        classes[entry.name.lower()] = loaded
    return types.MappingProxyType(classes)


def _check_host(host: str) -> None:
    """Raise ValueError for a host name no resolver can look up."""
    if host.startswith("[") or ":" in host:
        return  # an IPv6 literal, checked by the plugin
    # Each label must encode to IDNA (1 to 63 characters, no surrogate),
    # the whole name to at most 253 bytes; a trailing dot is the root.
    name = host.removesuffix(".")
    if not name or len(name.encode("idna")) > 253:
        raise ValueError(f"not a host name: {host!r}")


def parse_action(url: str) -> urllib.parse.SplitResult:
    """Split an action URL.

    Whatever the text, the answer is the parts or :class:`InvalidAction`
    (never another exception): empty text, blanks or control characters,
    an unbalanced ``[``, a bad port and a host name that is not a valid
    IDNA name are all refused.

    :raises InvalidAction: "Unable to parse action <url>".
    """
    try:
        if not isinstance(url, str) or not url.strip():
            raise ValueError("empty")
        text = url.strip()
        if any(c.isspace() or not c.isprintable() for c in text):
            raise ValueError("blank or control character")
        action = urllib.parse.urlsplit(text)
        _ = action.port  # raises ValueError on a bad port
        if action.hostname:
            _check_host(action.hostname)
    except (ValueError, TypeError) as exc:
        # UnicodeError (IDNA) is a ValueError.
        raise InvalidAction(
            f"Unable to parse action {redact(str(url))}"
        ) from exc
    if not action.scheme:
        raise InvalidAction(f"Unable to parse action {redact(url)}")
    return action


def validate_action(url: str, conf: cfg.ConfigOpts, identity: Any) -> None:
    """Refuse an action URL that alarmer could or should not deliver to.

    :param url: the action URL as given by the client.
    :param conf: the configuration (``[notifier] allowed_networks``...).
    :param identity: the caller (unused by the built-in plugins; the
        admin-only ``log://`` rule is the API's).
    :raises InvalidAction: "Unable to parse action <url>", "Unsupported
        action <url>", or a message naming the refused address.
    """
    action = parse_action(url)
    plugin = plugin_classes().get(action.scheme.lower())
    if plugin is None:
        raise InvalidAction(f"Unsupported action {redact(url)}")
    plugin.validate(action, conf, identity)
