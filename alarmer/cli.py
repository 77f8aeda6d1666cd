"""Command line: ``alarmer serve`` and the per-role commands.

``alarmer serve`` runs everything on the embedded defaults: a supervisor
and its API, evaluator and notifier processes (:mod:`alarmer.serve`), or
one process with ``[api] workers = 1``; ``alarmer-api``,
``alarmer-evaluator`` and ``alarmer-notifier`` run the same pieces
separately, on as many hosts as wanted, sharing a database, a series
storage and a coordination backend.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from oslo_config import cfg

from alarmer import __version__, logformat, runtime
from alarmer import process as service
from alarmer.conf import preflight, validation

LOG = logging.getLogger(__name__)


#: Roles an API key may carry (``alarmer apikey create --roles``).
API_KEY_ROLES = ("reader", "member", "admin")

#: Exit status of a configuration or usage error (as argparse's).
EXIT_CONFIG = 2
#: Exit status of an environment error (port, directory, server).
EXIT_ENVIRONMENT = 1


def _common_args(parser: argparse.ArgumentParser, *, prefix: str) -> None:
    """The options every command takes, before or after its name.

    Given after the subcommand they land in their own destinations
    (*prefix*, ``sub_`` or ``subsub_`` for a command's own subcommand),
    which :func:`_merge_common` adds to the ones given before it, so that
    no position loses what another gave.
    """
    parser.add_argument(
        "--config-file",
        dest=f"{prefix}config_file",
        action="append",
        default=[],
        metavar="FILE",
        help="INI configuration file (repeatable; later files win).",
    )
    parser.add_argument(
        "--data-dir",
        dest=f"{prefix}data_dir",
        metavar="DIR",
        help="Data directory of the embedded defaults "
        "(overrides [DEFAULT] data_dir; default ~/.local/share/alarmer).",
    )
    parser.add_argument(
        "--debug",
        dest=f"{prefix}debug",
        action="store_true",
        help="Log at DEBUG level and show the traceback of any error.",
    )


def _merge_common(args: argparse.Namespace) -> argparse.Namespace:
    for prefix in _NESTED_PREFIXES:
        args.config_file = list(args.config_file) + list(
            getattr(args, f"{prefix}config_file", []) or []
        )
        args.data_dir = getattr(args, f"{prefix}data_dir", None) or (
            args.data_dir
        )
        args.debug = bool(args.debug or getattr(args, f"{prefix}debug", False))
    return args


#: Destination prefixes of the common options given after a command.
_NESTED_PREFIXES = ("sub_", "subsub_")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port number"
        ) from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"{value} is not a port number (0 to 65535)"
        )
    return value


def _roles(text: str) -> list[str]:
    roles = [role.strip().lower() for role in text.split(",") if role.strip()]
    unknown = [role for role in roles if role not in API_KEY_ROLES]
    if unknown or not roles:
        raise argparse.ArgumentTypeError(
            f"unknown role(s) {', '.join(unknown) or repr(text)}; "
            f"use one or more of {', '.join(API_KEY_ROLES)}, "
            "separated by commas"
        )
    return roles


def _add_listen_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", help="Listen address (overrides [api] host)."
    )
    parser.add_argument(
        "--port",
        type=_port,
        help="Listen port (overrides [api] port).",
    )


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    overrides: dict[str, dict[str, object]] = {}
    if getattr(args, "data_dir", None):
        overrides.setdefault("DEFAULT", {})["data_dir"] = args.data_dir
    if getattr(args, "debug", False):
        overrides.setdefault("DEFAULT", {})["log_level"] = "DEBUG"
    if getattr(args, "host", None):
        overrides.setdefault("api", {})["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides.setdefault("api", {})["port"] = args.port
    return overrides


def load_conf(args: argparse.Namespace) -> cfg.ConfigOpts:
    """Build and check the configuration from files and flags.

    Warnings (unknown sections and options) are logged once logging is
    set up, by :func:`setup_logging`'s caller.

    :raises validation.ConfigInvalid: the configuration holds errors.
    """
    conf, report = validation.load(args.config_file, _overrides(args))
    args.config_warnings = report.warnings
    return conf


def setup_logging(conf: cfg.ConfigOpts) -> None:
    """Log to standard error at ``[DEFAULT] log_level`` and log_format
    (:func:`alarmer.logformat.configure`: request ids, JSON lines, the web
    server's floods summarised).

    Third-party libraries log their warnings only, unless the level is
    DEBUG: alembic's lines about each migration step, for instance, are
    replaced by alarmer's own.
    """
    level = getattr(logging, conf.log_level)
    logformat.configure(conf.log_level, conf.log_format)
    quiet = logging.DEBUG if level == logging.DEBUG else logging.WARNING
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, quiet))


#: Third-party loggers held at WARNING unless the level is DEBUG.
QUIET_LOGGERS = ("alembic", "tooz", "waitress", "urllib3", "stevedore")


def _setup(args: argparse.Namespace) -> cfg.ConfigOpts:
    """Load and check the configuration, set up logging, log warnings."""
    conf = load_conf(args)
    setup_logging(conf)
    for warning in args.config_warnings:
        LOG.warning("configuration: %s", warning)
    return conf


def banner_lines(
    conf: cfg.ConfigOpts,
    config_files: Sequence[str],
    processes: Sequence[str],
) -> list[str]:
    """The startup banner: what this alarmer runs on, one fact a line.

    Pure: it reads the configuration and touches nothing (URLs are shown
    with their password masked).

    :param config_files: the files read, in order.
    :param processes: what the command runs (e.g. ``api``, ``evaluator``).
    """
    from alarmer.channel import channel_url

    data = os.path.abspath(os.path.expanduser(conf.data_dir))
    database = conf.database.connection or "sqlite:///" + os.path.join(
        data, "alarmer.sqlite"
    )
    if conf.storage.driver == "file":
        where = conf.storage.file_basepath or os.path.join(data, "series")
    else:
        where = validation.mask_url(conf.storage.redis_url)
    coordination = conf.coordination.backend_url or "file://" + os.path.join(
        data, "coordination"
    )
    return [
        f"alarmer {__version__}",
        "config files: " + (", ".join(config_files) or "none (defaults)"),
        f"data directory: {data}",
        f"database: {validation.mask_url(database)}",
        f"series storage: {conf.storage.driver} {where}",
        f"coordination: {validation.mask_url(coordination)}",
        f"metric channel: {validation.mask_url(channel_url(conf))}",
        f"auth mode: {conf.api.auth_mode}",
        *(
            [f"API address: http://{conf.api.host}:{conf.api.port}/"]
            if any(p.split("-")[0] == "api" for p in processes)
            else []
        ),
        "processes: " + ", ".join(processes),
    ]


def _log_banner(
    conf: cfg.ConfigOpts,
    config_files: Sequence[str],
    processes: Sequence[str],
) -> None:
    for line in banner_lines(conf, config_files, processes):
        LOG.info("%s", line)


# The service factories and commands below import the pieces they run
# inside their function: a single-role process (``alarmer-api``,
# ``alarmer-notifier``...) then never loads the others' modules (startup
# time and memory), and ``--help`` answers without importing them.  There
# is no import cycle behind these local imports.


def _api_services(rt: runtime.Runtime) -> list[service.Service]:
    from api.server import ApiServer

    return [ApiServer(rt)]


def _evaluator_services(rt: runtime.Runtime) -> list[service.Service]:
    from alarmer.evaluator.service import EvaluatorService

    return [EvaluatorService(rt)]


def _serve_services(rt: runtime.Runtime) -> list[service.Service]:
    # The API runs in this process: every metric change is announced on
    # the in-process channel, so the evaluator may cache what it reads;
    # and the notifier is woken by each outbox row the evaluator commits.
    from alarmer.evaluator.service import EvaluatorService
    from api.server import ApiServer
    from notifiers.service import NotifierService

    notifier = NotifierService(rt)
    evaluator = EvaluatorService(
        rt, api_in_process=True, on_outbox=notifier.wakeup.outbox_changed
    )
    return [ApiServer(rt), evaluator, notifier]


def _notifier_services(rt: runtime.Runtime) -> list[service.Service]:
    from notifiers.service import NotifierService

    return [NotifierService(rt)]


ServiceFactory = Callable[[runtime.Runtime], list[service.Service]]


def _build_runtime(
    conf: cfg.ConfigOpts,
    *,
    migrate: bool,
    coordination: bool = False,
    listen: bool = False,
) -> runtime.Runtime:
    """Check what the configuration points at, then build the runtime.

    :raises preflight.EnvironmentProblem: a server is unreachable, the
        port is taken...
    """
    if listen:
        preflight.check_listen(conf.api.host, conf.api.port)
    preflight.check_servers(conf, coordination=coordination)
    try:
        return runtime.build(conf, migrate=migrate)
    except Exception as exc:
        problem = preflight.explain(exc, conf)
        if problem is None:
            raise
        raise problem from exc


def _run(args: argparse.Namespace, factories: Sequence[ServiceFactory]) -> int:
    # A signal from now on stops the process cleanly, during the startup
    # too (once the step under way is done).  Until logging is set up,
    # the early handler notes it, and it is logged once logging is.
    conf = _setup(args)
    stop = _stop_event(args)
    _log_early_signal(args)
    names = [name for factory in factories for name in FACTORY_ROLES[factory]]
    _log_banner(conf, args.config_file, names)
    return _run_services(conf, factories, names, stop)


def _run_services(
    conf: cfg.ConfigOpts,
    factories: Sequence[ServiceFactory],
    names: Sequence[str],
    stop: threading.Event,
) -> int:
    rt = _build_runtime(
        conf,
        migrate=True,
        coordination="evaluator" in names,
        listen="api" in names,
    )
    try:
        services: list[service.Service] = []
        for factory in factories:
            services.extend(factory(rt))
        service.run(services, stop)
    finally:
        rt.close()
    return 0


def _stop_event(args: argparse.Namespace) -> threading.Event:
    """The event a stop signal sets, already set if one arrived early."""
    stop: threading.Event = args.early_stop.event
    service.install_stop_handlers(stop)
    return stop


def _log_early_signal(args: argparse.Namespace) -> None:
    signum = args.early_stop.signum
    if signum:
        LOG.info(
            "received %s while loading, stopping",
            signal.Signals(signum).name,
        )


def _serve(args: argparse.Namespace) -> int:
    """``alarmer serve``: one process, or a supervisor and its children."""
    from alarmer import serve

    conf = _setup(args)
    stop = _stop_event(args)
    _log_early_signal(args)
    names = list(FACTORY_ROLES[_serve_services])
    if serve.single_process(conf):
        _log_banner(conf, args.config_file, names)
        return _run_services(conf, (_serve_services,), names, stop)
    _log_banner(conf, args.config_file, serve.process_names(conf))
    preflight.check_listen(conf.api.host, conf.api.port)
    preflight.check_servers(conf, coordination=True)
    return serve.serve(conf, stop)


#: What each factory runs, for the banner.
FACTORY_ROLES: dict[ServiceFactory, tuple[str, ...]] = {
    _api_services: ("api",),
    _evaluator_services: ("evaluator",),
    _notifier_services: ("notifier",),
    _serve_services: ("api", "evaluator", "notifier"),
}


def _progress(desc: str, unit: str) -> Any:
    """A progress bar on standard error, shown on a terminal only."""
    from tqdm import tqdm  # type: ignore[import-untyped]

    size = shutil.get_terminal_size()
    return tqdm(
        unit=unit,
        desc=desc,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        # A terminal that does not tell its size still gets a line.
        ncols=size.columns,
        nrows=size.lines,
    )


def _dbsync(args: argparse.Namespace) -> int:
    from alarmer import db as db_mod

    conf = _setup(args)
    preflight.check_servers(conf, coordination=False)
    database = db_mod.Database(db_mod.database_url(conf))
    progress = _progress("migrating", "step")
    try:
        db_mod.upgrade(database.engine, on_step=lambda: progress.update(1))
    except Exception as exc:
        problem = preflight.explain(exc, conf)
        if problem is None:
            raise
        raise problem from exc
    finally:
        progress.close()
        database.dispose()
    rt = _build_runtime(conf, migrate=True)
    rt.close()
    LOG.info("database is up to date")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    """``alarmer check-config``: print the effective configuration."""
    conf = load_conf(args)
    out = sys.stdout
    for warning in args.config_warnings:
        sys.stderr.write(f"warning: {warning}\n")
    files = ", ".join(args.config_file) or "none (defaults only)"
    out.write(f"# alarmer {__version__}; configuration files: {files}\n")
    for section, values in validation.effective(conf):
        out.write(f"\n[{section}]\n")
        for name, value in values:
            out.write(f"{name} = {_ini_value(value)}\n")
    return 0


def _ini_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return ",".join(f"{key}:{item}" for key, item in value.items())
    return str(value)


def _apikey(args: argparse.Namespace) -> int:
    from alarmer import timeutils
    from alarmer.identity import apikeys

    expires = None
    if getattr(args, "expires", None):
        try:
            expires = timeutils.parse_datetime(args.expires)
        except ValueError as exc:
            raise UsageError(f"--expires {args.expires!r}: {exc}") from exc
    conf = _setup(args)
    rt = _build_runtime(conf, migrate=True)
    out = sys.stdout
    try:
        if args.apikey_command == "create":
            key, info = apikeys.create(
                rt.db,
                project_id=args.project_id,
                user_id=args.user_id,
                roles=args.roles,
                description=args.description,
                expires_at=expires,
            )
            out.write(f"key_id: {info.key_id}\nkey: {key}\n")
            out.write("(the key is shown only once)\n")
            return 0
        if args.apikey_command == "list":
            for info in apikeys.list_keys(rt.db):
                expires_at = timeutils.isoformat(info.expires_at) or "-"
                status = "revoked" if info.revoked else "active"
                out.write(
                    f"{info.key_id} project={info.project_id} "
                    f"user={info.user_id} roles={','.join(info.roles)} "
                    f"expires={expires_at} {status} {info.description}\n"
                )
            return 0
        if apikeys.revoke(rt.db, args.key_id):
            out.write(f"revoked {args.key_id}\n")
            return 0
        sys.stderr.write(f"no API key {args.key_id}\n")
        return 1
    finally:
        rt.close()


def _check(args: argparse.Namespace) -> int:
    """``alarmer check [--repair]``: scan every stored series."""
    # Not a cycle: imported here, as the other commands' modules are,
    # so that the other commands do not load them.
    from alarmer.metrics.index import indexer
    from alarmer.metrics.series import check

    conf = _setup(args)
    rt = _build_runtime(conf, migrate=False)
    try:
        index = indexer.Indexer(rt.db)
        assert rt.series is not None
        driver = rt.series.driver
        where = getattr(driver, "basepath", None) or getattr(
            driver, "prefix", ""
        )
        report = check.check_series(
            rt.series,
            lambda ids: index.get_metrics(ids).keys(),
            repair=args.repair,
            progress=sys.stderr,
            storage=f"{conf.storage.driver} {where}",
        )
    finally:
        rt.close()
    sys.stdout.write(check.format_report(report))
    return report.exit_code()


def _expire(args: argparse.Namespace) -> int:
    """``alarmer expire``: one retention pass, counts on standard output."""
    # Imported here like the other commands' modules (no cycle).
    from notifiers import retention

    conf = _setup(args)
    rt = _build_runtime(conf, migrate=True)
    # Batches done, on a terminal only (not in cron's mail).
    progress = _progress("expiring", "batch")

    def between_batches() -> bool:
        progress.update(1)
        return False

    try:
        removed = retention.expire(
            rt.db,
            retention.Ages.from_conf(conf),
            batch_size=args.batch_size or conf.notifier.expire_batch_size,
            purge_dead_letters=args.purge_dead_letters,
            stop=between_batches,
        )
        # A one-shot command has no /metrics of its own: its counts are
        # exported only into the directory the services' scrapes merge
        # (PROMETHEUS_MULTIPROC_DIR exported to the command as well).
        if rt.telemetry.multiprocess:
            rt.telemetry.retention_pass(removed.counts())
    finally:
        progress.close()
        rt.close()
    for name, count in removed.counts().items():
        sys.stdout.write(f"{name}: {count}\n")
    return 0


def _add_expire_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--purge-dead-letters",
        action="store_true",
        help="Remove every dead letter, whatever its age.",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="Rows per transaction ([notifier] expire_batch_size).",
    )


class UsageError(Exception):
    """A command-line argument is wrong (exit status 2)."""


def _add_apikey_args(apikey: argparse.ArgumentParser) -> None:
    keys = apikey.add_subparsers(
        dest="apikey_command", required=True, metavar="{create,list,revoke}"
    )
    create = keys.add_parser(
        "create",
        help="Create a key; it is printed once, stored hashed.",
        description="Create an API key for a user of a project and print "
        "it once (only its hash is stored).",
    )
    create.add_argument("--project-id", required=True)
    create.add_argument("--user-id", required=True)
    create.add_argument(
        "--roles",
        type=_roles,
        default=["member"],
        help="Comma-separated roles among reader, member, admin "
        "(default member).",
    )
    create.add_argument("--description", default="")
    create.add_argument(
        "--expires", help="Expiry, ISO 8601 (naive is UTC); default never."
    )
    keys.add_parser(
        "list",
        help="List keys (never their secrets).",
        description="List every API key: id, project, user, roles, expiry "
        "and status (never the key itself).",
    )
    revoke = keys.add_parser(
        "revoke",
        help="Revoke a key by its key_id.",
        description="Revoke an API key: requests bearing it are refused.",
    )
    revoke.add_argument("key_id")
    for parser in (create, keys.choices["list"], revoke):
        _common_args(parser, prefix="subsub_")


def _add_check_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repair",
        action="store_true",
        help="Repair damaged series: keep what verifies, set the damaged "
        "log aside.",
    )


def _no_args(parser: argparse.ArgumentParser) -> None:
    del parser


@dataclasses.dataclass(frozen=True)
class Command:
    """One subcommand: its help, its own arguments and what it runs."""

    #: One line for the list of commands.
    summary: str
    #: The paragraph its ``--help`` shows.
    description: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "serve": Command(
        "Run the API, the evaluator and the notifier.",
        "Run the API, the evaluator and the notifier together on one "
        "host: a supervisor starts API processes ([api] workers, default "
        "one per core), evaluator processes ([evaluator] workers) and a "
        "notifier process, and restarts any that dies; with [api] workers "
        "= 1 everything runs in one process. On the embedded defaults "
        "(SQLite, file series storage, file:// coordination, all in the "
        "data directory) nothing else is needed. Migrates the database "
        "first; stops on SIGTERM or SIGINT.",
        _add_listen_args,
        _serve,
    ),
    "api": Command(
        "Run the API only.",
        "Run the HTTP API only (Gnocchi-compatible /v1, Aodh-compatible "
        "/v2). Run as many as wanted, sharing the database, the series "
        "storage and the coordination backend.",
        _add_listen_args,
        lambda args: _run(args, (_api_services,)),
    ),
    "evaluator": Command(
        "Run an evaluator worker only.",
        "Run an evaluator worker only: it evaluates its share of the "
        "alarms (split between workers through [coordination] "
        "backend_url) and records their state changes.",
        _no_args,
        lambda args: _run(args, (_evaluator_services,)),
    ),
    "notifier": Command(
        "Run a notifier worker only.",
        "Run a notifier worker only: it delivers the notifications of "
        "alarm state changes (webhooks, log lines), retrying failures.",
        _no_args,
        lambda args: _run(args, (_notifier_services,)),
    ),
    "dbsync": Command(
        "Create or migrate the database.",
        "Create the database tables, or migrate them to this version; "
        "safe to run again.",
        _no_args,
        _dbsync,
    ),
    "check-config": Command(
        "Check the configuration and print its effective values.",
        "Check the whole configuration (files and flags) and print the "
        "effective value of every option, secrets masked. Exits 2 with "
        "one line per error when it is not valid; unknown sections and "
        "options are warned about.",
        _no_args,
        _check_config,
    ),
    "apikey": Command(
        "Create, list or revoke API keys.",
        "Create, list or revoke the API keys used when [api] auth_mode = "
        "apikey.",
        _add_apikey_args,
        _apikey,
    ),
    "check": Command(
        "Check every stored series for damage.",
        "Check every stored series (and the metric index) for damage; "
        "exit 1 when damage is found and not repaired.",
        _add_check_args,
        _check,
    ),
    "expire": Command(
        "Remove old history, deliveries, dead letters and silences.",
        "Remove the alarm history, delivered notifications, dead letters "
        "and ended silences older than their retention ([database] "
        "alarm_history_time_to_live and expired_silence_time_to_live, "
        "[notifier] delivered_time_to_live and dead_letter_time_to_live), "
        "in small batches; print the counts removed.",
        _add_expire_args,
        _expire,
    ),
}

#: The console scripts that run one command, by command.
SCRIPTS = {
    "api": "alarmer-api",
    "evaluator": "alarmer-evaluator",
    "notifier": "alarmer-notifier",
    "dbsync": "alarmer-dbsync",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``alarmer``, or of the console script of *command*."""
    if command is not None:
        spec = COMMANDS[command]
        parser = argparse.ArgumentParser(
            prog=SCRIPTS.get(command, f"alarmer {command}"),
            description=spec.description,
        )
        _common_args(parser, prefix="")
        parser.add_argument(
            "--version", action="version", version=f"%(prog)s {__version__}"
        )
        spec.add_args(parser)
        parser.set_defaults(command=command)
        return parser
    parser = argparse.ArgumentParser(
        prog="alarmer",
        description="alarmer: alarm evaluation with an embedded metrics "
        "engine. The options before the command apply to every command "
        "and may also be given after it.",
    )
    _common_args(parser, prefix="")
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )
    for name, spec in COMMANDS.items():
        subparser = sub.add_parser(
            name, help=spec.summary, description=spec.description
        )
        _common_args(subparser, prefix="sub_")
        spec.add_args(subparser)
    return parser


def _fail(prog: str, lines: Sequence[object], status: int) -> int:
    for line in lines:
        sys.stderr.write(f"{prog}: error: {line}\n")
    return status


#: The commands that run until a signal stops them.
_LONG_RUNNING = frozenset({"serve", "api", "evaluator", "notifier"})


def _dispatch(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    early: service.EarlyStop | None = None,
) -> int:
    early = early or service.EarlyStop()
    args = _merge_common(parser.parse_args(argv))
    args.early_stop = early
    prog = parser.prog
    if args.command not in _LONG_RUNNING:
        # A short command is interrupted as usual from now on; one
        # stopped while loading does not start.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if early.signum:
            return 128 + early.signum
    try:
        return COMMANDS[args.command].run(args)
    except validation.ConfigInvalid as exc:
        for warning in exc.report.warnings:
            sys.stderr.write(f"{prog}: warning: {warning}\n")
        return _fail(prog, exc.report.errors, EXIT_CONFIG)
    except UsageError as exc:
        return _fail(prog, [exc], EXIT_CONFIG)
    except preflight.EnvironmentProblem as exc:
        if args.debug:
            LOG.exception("%s", exc)
        return _fail(prog, [exc], EXIT_ENVIRONMENT)
    except Exception as exc:
        if args.debug:
            raise
        problem = preflight.explain(exc, None)
        if problem is not None:
            return _fail(prog, [problem], EXIT_ENVIRONMENT)
        return _fail(
            prog,
            [
                f"{type(exc).__name__}: {exc} (run again with --debug for "
                "the traceback)"
            ],
            EXIT_ENVIRONMENT,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``alarmer``: the umbrella command."""
    return _dispatch(build_parser(), argv)


def run_command(
    command: str | None, argv: Sequence[str], early: service.EarlyStop
) -> int:
    """Run ``alarmer`` (*command* None) or one command's script.

    :param early: what the entry point noted while this module loaded
        (see :mod:`alarmer.entry`).
    """
    return _dispatch(build_parser(command), argv, early)


def _single(command: str) -> int:
    return _dispatch(build_parser(command), sys.argv[1:])


def api_main() -> int:
    """``alarmer-api``."""
    return _single("api")


def evaluator_main() -> int:
    """``alarmer-evaluator``."""
    return _single("evaluator")


def notifier_main() -> int:
    """``alarmer-notifier``."""
    return _single("notifier")


def dbsync_main() -> int:
    """``alarmer-dbsync``."""
    return _single("dbsync")


if __name__ == "__main__":
    sys.exit(main())
