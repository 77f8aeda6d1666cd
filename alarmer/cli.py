"""Command line: ``alarmer serve`` and the per-role commands.

``alarmer serve`` runs everything on the embedded defaults in one
process; ``alarmer-api``, ``alarmer-evaluator`` and ``alarmer-notifier``
run the same pieces separately, on as many hosts as wanted, sharing a
database, a series storage and a coordination backend.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from oslo_config import cfg

from alarmer import __version__, logformat, runtime
from alarmer import conf as aconf
from alarmer import process as service

LOG = logging.getLogger(__name__)


def _common_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--config-file",
        action="append",
        default=[],
        metavar="FILE",
        help="INI configuration file (repeatable; later files win).",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="Data directory of the embedded defaults "
        "(overrides [DEFAULT] data_dir).",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    return parser


def _add_listen_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="Listen address ([api] host).")
    parser.add_argument("--port", type=int, help="Listen port ([api] port).")


def load_conf(args: argparse.Namespace) -> cfg.ConfigOpts:
    """Build the configuration from files and command-line overrides."""
    overrides: dict[str, dict[str, object]] = {}
    if getattr(args, "data_dir", None):
        overrides.setdefault("DEFAULT", {})["data_dir"] = args.data_dir
    if getattr(args, "host", None):
        overrides.setdefault("api", {})["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides.setdefault("api", {})["port"] = args.port
    return aconf.make_conf(config_files=args.config_file, overrides=overrides)


def setup_logging(conf: cfg.ConfigOpts) -> None:
    """Log to standard error at ``[DEFAULT] log_level`` and log_format."""
    logformat.configure(conf.log_level, conf.log_format)


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


def _run(args: argparse.Namespace, factories: Sequence[ServiceFactory]) -> int:
    conf = load_conf(args)
    setup_logging(conf)
    rt = runtime.build(conf, migrate=True)
    try:
        services: list[service.Service] = []
        for factory in factories:
            services.extend(factory(rt))
        service.run(services)
    finally:
        rt.close()
    return 0


def _dbsync(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    setup_logging(conf)
    rt = runtime.build(conf, migrate=True)
    rt.close()
    LOG.info("database is up to date")
    return 0


def _apikey(args: argparse.Namespace) -> int:
    from alarmer import timeutils
    from alarmer.identity import apikeys

    conf = load_conf(args)
    setup_logging(conf)
    rt = runtime.build(conf, migrate=True)
    out = sys.stdout
    try:
        if args.apikey_command == "create":
            expires = None
            if args.expires:
                expires = timeutils.parse_datetime(args.expires)
            key, info = apikeys.create(
                rt.db,
                project_id=args.project_id,
                user_id=args.user_id,
                roles=args.roles.split(","),
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

    conf = load_conf(args)
    setup_logging(conf)
    rt = runtime.build(conf)
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


def _add_apikey_parser(sub: argparse._SubParsersAction) -> None:
    apikey = sub.add_parser(
        "apikey",
        help="Create, list or revoke API keys ([api] auth_mode = apikey).",
    )
    keys = apikey.add_subparsers(dest="apikey_command", required=True)
    create = keys.add_parser(
        "create", help="Create a key; it is printed once, stored hashed."
    )
    create.add_argument("--project-id", required=True)
    create.add_argument("--user-id", required=True)
    create.add_argument(
        "--roles",
        default="member",
        help="Comma-separated roles: reader, member, admin (default member).",
    )
    create.add_argument("--description", default="")
    create.add_argument(
        "--expires", help="Expiry, ISO 8601 (naive is UTC); default never."
    )
    keys.add_parser("list", help="List keys (never their secrets).")
    revoke = keys.add_parser("revoke", help="Revoke a key by its key_id.")
    revoke.add_argument("key_id")


def main(argv: Sequence[str] | None = None) -> int:
    """``alarmer``: the umbrella command."""
    parser = _common_parser(
        "alarmer", "alarmer: alarm evaluation with an embedded metrics engine."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="Run the API, the evaluator and the notifier in one process "
        "(embedded defaults: SQLite, file storage, file:// "
        "coordination).",
    )
    _add_listen_args(serve)
    api = sub.add_parser("api", help="Run the API only.")
    _add_listen_args(api)
    sub.add_parser("evaluator", help="Run an evaluator worker only.")
    sub.add_parser("notifier", help="Run a notifier worker only.")
    sub.add_parser("dbsync", help="Create or migrate the database.")
    _add_apikey_parser(sub)
    sub.add_parser(
        "check",
        help="Check every stored series (and the metric index) for damage; "
        "exit 1 when damage is found and not repaired.",
    ).add_argument(
        "--repair",
        action="store_true",
        help="Repair damaged series: keep what verifies, set the damaged "
        "log aside.",
    )
    for name, subparser in sub.choices.items():
        if name != "serve":
            subparser.set_defaults()
    # Options given after the subcommand are accepted too.
    for subparser in sub.choices.values():
        subparser.add_argument(
            "--config-file",
            action="append",
            default=argparse.SUPPRESS,
            metavar="FILE",
            help=argparse.SUPPRESS,
        )
        subparser.add_argument(
            "--data-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _run(
            args,
            (_serve_services,),
        )
    if args.command == "api":
        return _run(args, (_api_services,))
    if args.command == "evaluator":
        return _run(args, (_evaluator_services,))
    if args.command == "notifier":
        return _run(args, (_notifier_services,))
    if args.command == "apikey":
        return _apikey(args)
    if args.command == "check":
        return _check(args)
    return _dbsync(args)


def _single(command: str) -> int:
    return main([command, *sys.argv[1:]])


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
