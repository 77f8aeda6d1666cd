"""What every notifier plugin implements, and the checks they share.

A plugin handles the action URLs of one or more schemes.  It validates an
action when an alarm is saved (:meth:`Notifier.validate`, a class method:
no connection is opened) and delivers one :class:`Message` per call of
:meth:`Notifier.notify`, answering a :class:`Result` instead of raising,
so that the notifier service decides about retries.
"""

from __future__ import annotations

import abc
import dataclasses
import ipaddress
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from oslo_config import cfg

from alarmer.errors import AlarmerError

LOG = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Query parameters whose values are never written to logs or messages.
_SENSITIVE = ("sig", "signature", "token", "secret", "key", "password")


class InvalidAction(AlarmerError, ValueError):
    """An action URL that alarmer refuses; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclasses.dataclass(frozen=True)
class Message:
    """One notification to one target.

    ``delivery_id`` is stable across retries and redeliveries: receivers
    drop duplicates with it.  ``secrets`` sign the request when not empty;
    they are never logged.
    """

    delivery_id: str
    alarm_id: str
    seq: int
    alarm_name: str
    severity: str
    previous: str
    current: str
    reason: str
    reason_data: dict[str, Any]
    project_id: str = ""
    secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)

    def payload(self) -> dict[str, Any]:
        """Return the body Aodh's REST notifier posts (its seven keys)."""
        return {
            "alarm_name": self.alarm_name,
            "alarm_id": self.alarm_id,
            "severity": self.severity,
            "previous": self.previous,
            "current": self.current,
            "reason": self.reason,
            "reason_data": self.reason_data,
        }


@dataclasses.dataclass(frozen=True)
class Result:
    """The outcome of one attempt.

    :ivar delivered: the target accepted the notification.
    :ivar retryable: a later attempt may succeed (connection error,
        timeout, 5xx, 429); ignored when delivered.
    :ivar retry_after: seconds the target asked to wait (``Retry-After``).
    """

    delivered: bool
    retryable: bool = False
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    duration: float = 0.0


class Notifier(abc.ABC):
    """Base class of the plugins; one instance per notifier process."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    @classmethod
    def validate(
        cls,
        action: urllib.parse.SplitResult,
        conf: cfg.ConfigOpts,
        identity: Any = None,
    ) -> None:
        """Refuse an action URL at save time (raise :class:`InvalidAction`).

        The default accepts everything.
        """
        return None

    @abc.abstractmethod
    def notify(
        self, action: urllib.parse.SplitResult, message: Message
    ) -> Result:
        """Deliver *message* to *action*; never raise for delivery errors."""

    def close(self) -> None:
        """Release connections (the default has none)."""
        return None


def redact(url: str) -> str:
    """Return *url* without its password and sensitive query values
    (nor the trust id of a ``trust+`` action)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else netloc
        if parts.scheme.lower().startswith("trust+"):
            # The user of a trust action is the trust id.
            netloc = f"***@{hostport}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(any(s in k.lower() for s in _SENSITIVE) for k, _ in pairs):
            query = "&".join(
                f"{k}=***"
                if any(s in k.lower() for s in _SENSITIVE)
                else f"{k}={v}"
                for k, v in pairs
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path, query, parts.fragment)
    )


def allowed_networks(conf: cfg.ConfigOpts) -> list[IPNetwork]:
    """Parse ``[notifier] allowed_networks``.

    :raises ValueError: naming the option and the bad entry.
    """
    networks = []
    for text in conf.notifier.allowed_networks:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(
                f"[notifier] allowed_networks: invalid network {text!r}"
            ) from exc
    return networks


#: Resolves ``(host, port, timeout)`` to addresses, or raises
#: :class:`ResolutionError` (see :func:`resolve`).
Resolver = Callable[[str, int | None, float], Sequence[IPAddress]]


class ResolutionError(OSError):
    """A host name could not be resolved (error or timeout)."""


def resolve(host: str, port: int | None, timeout: float) -> list[IPAddress]:
    """Return every address of *host*, waiting at most *timeout* seconds.

    ``getaddrinfo`` has no timeout of its own: it runs in a daemon thread
    that is abandoned when it takes too long.

    :raises ResolutionError: when the name does not resolve in time.
    """
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    outcome: dict[str, Any] = {}

    def _run() -> None:
        try:
            outcome["infos"] = socket.getaddrinfo(
                host, port or 0, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=_run, name=f"resolve-{host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ResolutionError(f"resolving {host} took more than {timeout}s")
    if "error" in outcome:
        raise ResolutionError(f"cannot resolve {host}: {outcome['error']}")
    addresses: list[IPAddress] = []
    for info in outcome["infos"]:
        text = str(info[4][0]).split("%", 1)[0]
        address = ipaddress.ip_address(text)
        if address not in addresses:
            addresses.append(address)
    return addresses


#: NAT64 prefixes (RFC 6052 well-known, RFC 8215 local use).
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
#: Where RFC 6052 puts the IPv4 bytes for a prefix of 48, 56 and 64 bits
#: (byte 8 is always zero); the local-use prefix may have any of them.
_NAT64_LAYOUTS = ((6, 7, 9, 10), (7, 9, 10, 11), (9, 10, 11, 12))


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """Return the IPv4 addresses an IPv6 address wraps (may be empty).

    IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``,
    not ``::`` nor ``::1``), NAT64 (``64:ff9b::/96``, and every RFC 6052
    layout of ``64:ff9b:1::/48``), 6to4 (``2002::/16``) and Teredo
    (``2001::/32``: the server and the bit-inverted client).
    """
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    value = int(address)
    raw = address.packed
    low = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    elif value >> 32 == 0 and value > 1:
        found.append(low)
    if address in _NAT64_WELL_KNOWN:
        found.append(low)
    if address in _NAT64_LOCAL:
        found.append(low)
        for layout in _NAT64_LAYOUTS:
            found.append(ipaddress.IPv4Address(bytes(raw[i] for i in layout)))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    unique: list[ipaddress.IPv4Address] = []
    for item in found:
        if item not in unique:
            unique.append(item)
    return unique


def _non_global(address: IPAddress) -> bool:
    return (
        not address.is_global
        or address.is_multicast
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_unspecified
    )


def is_internal(address: IPAddress) -> bool:
    """True for loopback, link-local, private and other non-global ones.

    An IPv6 address wrapping an internal IPv4 address (see
    :func:`embedded_ipv4`) is internal too.
    """
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return _non_global(mapped)
    if _non_global(address):
        return True
    return any(_non_global(inner) for inner in embedded_ipv4(address))


def _allowed(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(
        address in net for net in networks if address.version == net.version
    )


def refused_address(
    addresses: Sequence[IPAddress], networks: Sequence[IPNetwork]
) -> IPAddress | None:
    """Return the first internal address of *addresses* not allowed.

    The IPv4-mapped form is the IPv4 address itself (the system connects
    to it), checked as such.  Any other wrapper of an internal IPv4
    address is refused unless the wrapper itself is in *networks*: a
    translator or tunnel delivers it to the embedded address of its own
    network, which allowing a local range does not cover.
    """
    for address in addresses:
        if not is_internal(address):
            continue
        if isinstance(address, ipaddress.IPv6Address):
            mapped = address.ipv4_mapped
            if mapped is not None:
                if _allowed(mapped, networks) or _allowed(address, networks):
                    continue
                return address
        if not _allowed(address, networks):
            return address
    return None


def check_target(
    action: urllib.parse.SplitResult,
    conf: cfg.ConfigOpts,
    *,
    unresolvable_ok: bool,
    networks: Sequence[IPNetwork] | None = None,
    resolver: Resolver | None = None,
) -> list[IPAddress]:
    """Refuse a target host resolving to a non-allowed internal address.

    The name is resolved once, by *resolver* (default :func:`resolve`),
    and every address is checked: connect to one of the addresses
    returned, never to the name, so that a second resolution cannot
    answer another address (DNS rebinding).  When the name does not resolve
    (or not in ``[notifier] dns_timeout``), the target is accepted if
    *unresolvable_ok* (at save time: it is checked again at delivery)
    and refused otherwise.  *networks* are the parsed ``[notifier]
    allowed_networks`` when the caller has them already.

    :raises InvalidAction: naming the URL, the address and the option.
    """
    url = action.geturl()
    host = action.hostname
    if not host:
        raise InvalidAction(f"Unable to parse action {redact(url)}: no host")
    try:
        port = action.port
        addresses = (resolver or resolve)(
            host, port, conf.notifier.dns_timeout
        )
    except ResolutionError as exc:
        if unresolvable_ok:
            LOG.debug("accepting unresolvable action %s: %s", redact(url), exc)
            return []
        raise InvalidAction(
            f"Unable to resolve the host of action {redact(url)}: {exc}"
        ) from exc
    except ValueError as exc:
        raise InvalidAction(f"Unable to parse action {redact(url)}") from exc
    if networks is None:
        networks = allowed_networks(conf)
    refused = refused_address(addresses, networks)
    if refused is not None:
        inner = [str(a) for a in embedded_ipv4(refused)]
        wrapped = f" (wrapping {', '.join(inner)})" if inner else ""
        raise InvalidAction(
            f"Action {redact(url)} targets {refused}{wrapped}, a loopback, "
            "link-local, private or reserved address not in [notifier] "
            "allowed_networks"
        )
    if not addresses:
        raise InvalidAction(
            f"Unable to resolve the host of action {redact(url)}: no address"
        )
    return list(addresses)
