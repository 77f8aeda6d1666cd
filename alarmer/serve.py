"""``alarmer serve``: the one-command start, on every core.

With ``[api] workers`` resolving to more than one process (the default
on a machine with several cores), ``alarmer serve`` is a supervisor
(:class:`alarmer.process.Supervisor`) that

1. migrates the database, once, before anything else starts;
2. binds the API's listening socket, once;
3. forks ``[api] workers`` API processes serving that socket (at
   ``[api] nice`` more niceness: when writes keep the cores busy, the
   evaluator and the notifier still run at once), ``[evaluator]
   workers`` evaluator processes and one notifier process, restarts any
   of them that dies, and stops them all on SIGTERM or SIGINT.

The processes hear each other without a server on one host:

* "metric changed" from the API processes to the evaluators goes over
  :class:`alarmer.channel.DatagramChannel` in ``<data_dir>/run/metrics``
  (unless ``[evaluator] metric_channel`` names Redis); every write is
  announced there, so the evaluators keep their bucket cache;
* the evaluators wake the notifier after each outbox commit over
  ``<data_dir>/run/outbox`` (:class:`notifiers.wakeup.OutboxAnnouncer`);
  on PostgreSQL the database's ``NOTIFY`` does it instead;
* the evaluators share the alarms through the coordination backend
  (``file://<data_dir>/coordination`` by default); evaluator *i* of a
  data directory always joins under the same member id, so a restarted
  evaluator takes its predecessor's share over at once instead of
  waiting for the membership timeout;
* ``PROMETHEUS_MULTIPROC_DIR`` is set for every child (the operator's
  value, else ``<data_dir>/run/prometheus``) and emptied at start, so
  that a metrics endpoint may aggregate the values of all processes.

With ``[api] workers = 1`` and ``[evaluator] workers = 1`` everything
runs in one process instead (:func:`alarmer.cli` keeps that path): the
smallest footprint, and what a machine with one core gets by default.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import glob
import hashlib
import importlib
import logging
import os
import socket
import threading

from oslo_config import cfg

from alarmer import channel as channel_mod
from alarmer import conf as aconf
from alarmer import db as db_mod
from alarmer import process, telemetry
from alarmer import runtime as runtime_mod
from alarmer.db import dialect as dialect_mod
from notifiers import wakeup as wakeup_mod

LOG = logging.getLogger(__name__)

#: Most API processes the automatic default starts.
MAX_AUTO_WORKERS = 8

#: The environment variable prometheus-client reads in multiprocess mode.
PROMETHEUS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def usable_cores() -> int:
    """CPU cores this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def api_workers(conf: cfg.ConfigOpts) -> int:
    """The number of API processes ``[api] workers`` asks for."""
    workers = int(conf.api.workers)
    if workers > 0:
        return workers
    return min(MAX_AUTO_WORKERS, usable_cores())


def single_process(conf: cfg.ConfigOpts) -> bool:
    """True when ``alarmer serve`` runs everything in one process."""
    return api_workers(conf) == 1 and int(conf.evaluator.workers) == 1


def process_names(conf: cfg.ConfigOpts) -> list[str]:
    """The children :func:`serve` starts, by name (for the banner)."""
    return [
        *(f"api-{n}" for n in range(1, api_workers(conf) + 1)),
        *(f"evaluator-{n}" for n in range(1, int(conf.evaluator.workers) + 1)),
        "notifier",
    ]


def evaluator_member_id(conf: cfg.ConfigOpts, index: int) -> bytes:
    """The coordination member id of evaluator *index* of this data dir.

    Stable across restarts (host, data directory, index), so that a
    restarted evaluator takes over the group entry of the one it
    replaces.
    """
    host = socket.gethostname().split(".")[0] or "host"
    where = hashlib.sha256(aconf.data_dir(conf).encode()).hexdigest()[:8]
    return f"{host}-serve-{where}-evaluator-{index}".encode()


def prepare_metrics_dir(conf: cfg.ConfigOpts) -> str:
    """Export and empty the prometheus-client multiprocess directory."""
    path = os.environ.get(PROMETHEUS_ENV) or channel_mod.run_dir(
        conf, "prometheus"
    )
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    os.environ[PROMETHEUS_ENV] = path
    return path


def bind(conf: cfg.ConfigOpts) -> socket.socket:
    """Bind ``[api] host``:``[api] port``, without listening yet.

    The first API process that is ready listens (waitress does when it
    starts accepting): until then a client is refused at once rather than
    left waiting in the backlog.
    """
    host, port = conf.api.host, conf.api.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def children(
    conf: cfg.ConfigOpts, sock: socket.socket | None
) -> list[process.Child]:
    """The processes of a multi-process ``alarmer serve``."""

    def run_api(stop: threading.Event) -> int:
        from api.server import ApiServer

        assert sock is not None
        rt = runtime_mod.build(
            conf,
            channel=channel_mod.make_channel(conf, several_processes=True),
        )
        try:
            process.run([ApiServer(rt, sockets=[sock])], stop)
        finally:
            rt.close()
        return 0

    def run_evaluator(index: int, stop: threading.Event) -> int:
        from alarmer.evaluator.coordination import Membership
        from alarmer.evaluator.service import EvaluatorService

        if sock is not None:
            sock.close()
        rt = runtime_mod.build(
            conf,
            channel=channel_mod.make_channel(conf, several_processes=True),
        )
        announcer: wakeup_mod.OutboxAnnouncer | None = None
        if not dialect_mod.for_engine(rt.db.engine).listens:
            announcer = wakeup_mod.OutboxAnnouncer(
                channel_mod.run_dir(conf, "outbox")
            )
        try:
            evaluator = EvaluatorService(
                rt,
                membership=Membership(
                    conf, member_id=evaluator_member_id(conf, index)
                ),
                on_outbox=announcer,
            )
            process.run([evaluator], stop)
        finally:
            if announcer is not None:
                announcer.close()
            rt.close()
        return 0

    def run_notifier(stop: threading.Event) -> int:
        from notifiers.service import NotifierService

        if sock is not None:
            sock.close()
        rt = runtime_mod.build(conf, channel=channel_mod.LocalChannel())
        try:
            notifier = NotifierService(rt)
            services: list[process.Service] = []
            if not dialect_mod.for_engine(rt.db.engine).listens:
                services.append(
                    wakeup_mod.DatagramWatcher(
                        channel_mod.run_dir(conf, "outbox"), notifier.wakeup
                    )
                )
            services.append(notifier)
            process.run(services, stop)
        finally:
            rt.close()
        return 0

    result: list[process.Child] = []
    if sock is not None:
        for index in range(1, api_workers(conf) + 1):
            result.append(
                process.Child(f"api-{index}", run_api, nice=conf.api.nice)
            )
    for index in range(1, int(conf.evaluator.workers) + 1):
        result.append(
            process.Child(
                f"evaluator-{index}",
                functools.partial(run_evaluator, index),
            )
        )
    result.append(process.Child("notifier", run_notifier))
    return result


#: The modules every child imports, loaded once before the forks.
PRELOAD = ("api.app", "alarmer.evaluator.service", "notifiers.service")


def preload() -> None:
    """Import the children's modules in the supervisor, then fork.

    The forked children share these pages with the supervisor and with
    each other (copy on write) instead of each loading its own copy;
    :func:`gc.freeze` keeps the collector from writing to (hence
    copying) the objects already there.
    """
    for name in PRELOAD:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


def serve(conf: cfg.ConfigOpts, stop: threading.Event) -> int:
    """Run the supervisor until *stop* (the handlers already set it).

    Returns the exit status (0 after a signal, during startup too).
    """
    database = db_mod.Database(db_mod.database_url(conf))
    try:
        database.upgrade()
    finally:
        database.dispose()
    if stop.is_set():
        LOG.info("stopping during startup (after the database migration)")
        return 0
    for part in ("metrics", "outbox"):
        channel_mod.run_dir(conf, part)
    metrics_dir = prepare_metrics_dir(conf)
    sock = bind(conf)
    try:
        workers = api_workers(conf)
        host, port = sock.getsockname()[:2]
        LOG.info(
            "API listening on http://%s:%s/ (%d processes); %d evaluator "
            "process(es), 1 notifier process; data in %s; %s=%s",
            conf.api.host if ":" not in conf.api.host else f"[{host}]",
            port,
            workers,
            conf.evaluator.workers,
            aconf.data_dir(conf),
            PROMETHEUS_ENV,
            metrics_dir,
        )
        preload()
        supervisor = process.Supervisor(
            children(conf, sock), on_exit=telemetry.mark_process_dead
        )
        return supervisor.run(stop)
    finally:
        sock.close()
