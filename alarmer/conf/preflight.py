"""Checks of the environment a valid configuration points at.

Run by the commands before they build anything: the listening address
is free, the Redis servers answer.  :func:`explain` turns the errors of
a start that failed anyway (database unreachable, directory not
writable, address taken) into one :class:`EnvironmentProblem` line that
names the address or path and gives a hint.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from oslo_config import cfg

from alarmer.conf import validation

#: Seconds to wait for a server's first answer at start.
CONNECT_TIMEOUT = 3.0


class EnvironmentProblem(Exception):
    """Something the configuration points at is not usable; one line."""


def check_listen(host: str, port: int) -> None:
    """Fail when ``host:port`` cannot be listened on.

    The socket is bound with ``SO_REUSEADDR`` (as the HTTP server does)
    and closed at once.

    :raises EnvironmentProblem: the address is taken, not local, or
        needs privileges.
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise EnvironmentProblem(
            f"cannot listen on {host}:{port}: unknown host ({exc.strerror}); "
            "check [api] host or --host"
        ) from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
            sock.listen(1)
        except OSError as exc:
            raise EnvironmentProblem(_listen_message(host, port, exc)) from exc


def _listen_message(host: str, port: int, exc: OSError) -> str:
    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where}: address already in use (another process listens "
            "there; stop it or set [api] port / --port)"
        )
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: no such local address (check [api] host / --host)"
    return f"{where}: {exc.strerror or exc}"


def check_servers(conf: cfg.ConfigOpts, *, coordination: bool) -> None:
    """Fail when a Redis server the configuration names does not answer.

    :param coordination: also check ``[coordination] backend_url`` (the
        commands that run an evaluator).
    :raises EnvironmentProblem: naming the option and the address.
    """
    urls = []
    if conf.storage.driver == "redis":
        urls.append(("[storage] redis_url", conf.storage.redis_url))
    channel = conf.evaluator.metric_channel
    if channel.startswith(tuple(f"{s}://" for s in validation.REDIS_SCHEMES)):
        urls.append(("[evaluator] metric_channel", channel))
    backend = conf.coordination.backend_url
    # An empty metric_channel means the coordination's Redis.
    if backend.startswith(("redis://", "rediss://")) and (
        coordination or not channel
    ):
        urls.append(("[coordination] backend_url", backend))
    for option, url in urls:
        check_redis(option, url)


def check_redis(option: str, url: str) -> None:
    """Ping the Redis server of *url* (set as *option*).

    :raises EnvironmentProblem: it does not answer.
    """
    import redis

    base = url.split("?", 1)[0]
    try:
        client = redis.Redis.from_url(
            base,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=CONNECT_TIMEOUT,
        )
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise EnvironmentProblem(
            f"cannot reach the Redis server of {option} "
            f"{validation.mask_url(url)}: {_first_line(exc)} (is it "
            "running and reachable from this host?)"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _database_url(conf: cfg.ConfigOpts | None) -> str:
    if conf is None:
        return "the database"
    url = conf.database.connection or "the SQLite database"
    return validation.mask_url(url)


def explain(
    exc: BaseException, conf: cfg.ConfigOpts | None
) -> EnvironmentProblem | None:
    """One line for a known failure of a start, or ``None``.

    :param conf: the configuration, to name the database.
    """
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, EnvironmentProblem):
        return exc
    if isinstance(exc, sa_exc.DBAPIError | sa_exc.OperationalError):
        original: Any = exc.orig if exc.orig is not None else exc
        return EnvironmentProblem(
            f"cannot use the database {_database_url(conf)}: "
            f"{_first_line(original)} (check [database] connection; is the "
            "server running and reachable from this host?)"
        )
    if isinstance(exc, OSError) and exc.errno in (
        errno.EACCES,
        errno.EROFS,
        errno.ENOTDIR,
        errno.ENOSPC,
        errno.EEXIST,
    ):
        return EnvironmentProblem(
            f"cannot write {exc.filename or 'a file'}: "
            f"{exc.strerror} (check [DEFAULT] data_dir / --data-dir)"
        )
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return EnvironmentProblem(
            f"cannot listen: address already in use ({exc.strerror}); set "
            "[api] port / --port"
        )
    return None
