"""Whole-configuration checks, run before a command touches anything.

:func:`load` reads the INI files and the command-line overrides, then
checks everything at once: each file exists and parses, every option's
value converts to its type (choices, ranges, ports...), the values that
name something (data directory, database driver, series driver, channel
and coordination URLs) are usable, and no section or option is unknown.
Every error is one :class:`Problem` naming the file, the section, the
option, the bad value and what is allowed; unknown names are warnings
that suggest the closest known name.

The files are parsed again here with oslo.config's own parser, one by
one, so that each problem names the file that set the value (the last
one does, as later files win).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from oslo_config import cfg, types

from alarmer import conf as aconf

#: Sections whose options are registered by a library at run time (an
#: authentication plugin's, a policy engine's): their option names are
#: not checked.
OPEN_SECTIONS = frozenset({"keystone_authtoken", "oslo_policy"})

#: Series storage drivers (``[storage] driver``).
SERIES_DRIVERS = ("file", "redis")

#: The package each SQLAlchemy driver comes from, and the extra of alarmer
#: that installs it.
DB_DRIVER_HINTS = {
    "postgresql": ("psycopg", "pip install 'alarmer[postgresql]'"),
    "mysql": ("pymysql", "pip install 'alarmer[mysql]'"),
}

#: Where a value comes from when no file sets it.
DEFAULT_SOURCE = "default"
#: Where a value comes from when a command-line flag sets it.
COMMAND_LINE = "command line"

Parsed = dict[str, dict[str, list[str]]]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One configuration error or warning, printed as one line."""

    #: The file that set the value, ``"command line"`` or ``"default"``.
    source: str
    #: The INI section (``DEFAULT`` included), or ``""`` for a file.
    section: str
    #: The option, or ``""`` for a whole section or file.
    option: str
    #: The value as written, or ``None`` when there is none.
    value: str | None
    #: What is wrong and what is allowed.
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.section:
            where += f": [{self.section}]"
        if self.option:
            where += f" {self.option}"
        if self.value is not None:
            where += f" = {self.value!r}"
        return f"{where}: {self.message}"


@dataclasses.dataclass
class Report:
    """What :func:`load` found."""

    errors: list[Problem] = dataclasses.field(default_factory=list)
    warnings: list[Problem] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the configuration may be used."""
        return not self.errors


class ConfigInvalid(Exception):
    """The configuration holds errors; ``report`` lists them all."""

    def __init__(self, report: Report) -> None:
        super().__init__("; ".join(str(problem) for problem in report.errors))
        #: Every error and warning found.
        self.report = report


def describe_allowed(opt: cfg.Opt) -> str:
    """Say in words which values *opt* accepts."""
    kind = opt.type
    if isinstance(kind, types.String) and kind.choices:
        return "must be one of " + ", ".join(
            str(choice) for choice in kind.choices
        )
    if isinstance(kind, types.Boolean):
        return "must be true or false"
    if isinstance(kind, types.Port):
        return f"must be a port number from {kind.min} to {kind.max}"
    if isinstance(kind, types.Integer | types.Float):
        noun = "an integer" if isinstance(kind, types.Integer) else "a number"
        low = getattr(kind, "min", None)
        high = getattr(kind, "max", None)
        if low is not None and high is not None:
            return f"must be {noun} from {low} to {high}"
        if low is not None:
            return f"must be {noun} of at least {low}"
        if high is not None:
            return f"must be {noun} of at most {high}"
        return f"must be {noun}"
    if isinstance(kind, types.HostAddress):
        return "must be an IP address or a host name"
    if isinstance(kind, types.Dict):
        return "must be key:value pairs separated by commas"
    if isinstance(kind, types.List):
        return "must be values separated by commas"
    return "is not valid"


def parse_file(path: str) -> Parsed:
    """Parse one INI file with oslo.config's parser.

    :raises cfg.ParseError: the file is not INI.
    :raises OSError: the file cannot be read.
    """
    sections: Parsed = {}
    cfg.ConfigParser(path, sections).parse()
    return sections


def _registered(conf: cfg.ConfigOpts) -> dict[str, dict[str, cfg.Opt]]:
    """Every registered option by section, under all its names."""
    known: dict[str, dict[str, cfg.Opt]] = {"DEFAULT": {}}
    for group, opts in aconf.list_opts():
        section = group or "DEFAULT"
        for opt in opts:
            known.setdefault(section, {})[opt.dest] = opt
            for old in opt.deprecated_opts:
                old_section = old.group or section
                known.setdefault(old_section, {})[old.name or opt.dest] = opt
    for name, info in conf._opts.items():  # CLI options of oslo.config
        known["DEFAULT"].setdefault(name, info["opt"])
    return known


def _closest(name: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _unknown(
    parsed: Sequence[tuple[str, Parsed]],
    known: Mapping[str, Mapping[str, cfg.Opt]],
) -> list[Problem]:
    warnings = []
    for path, sections in parsed:
        for section, options in sections.items():
            if section in OPEN_SECTIONS:
                continue
            if section not in known:
                warnings.append(
                    Problem(
                        path,
                        section,
                        "",
                        None,
                        "unknown section, ignored" + _closest(section, known),
                    )
                )
                continue
            for option in options:
                if option not in known[section]:
                    warnings.append(
                        Problem(
                            path,
                            section,
                            option,
                            None,
                            "unknown option, ignored"
                            + _closest(option, known[section]),
                        )
                    )
    return warnings


def source_of(
    parsed: Sequence[tuple[str, Parsed]],
    section: str,
    opt: cfg.Opt,
    overrides: Mapping[str, Mapping[str, object]] | None = None,
) -> tuple[str, str | None]:
    """Return where the value of *opt* comes from, and its raw text."""
    if opt.dest in (overrides or {}).get(section, {}):
        return COMMAND_LINE, str((overrides or {})[section][opt.dest])
    names = [(section, opt.dest)] + [
        (old.group or section, old.name or opt.dest)
        for old in opt.deprecated_opts
    ]
    for path, sections in reversed(parsed):
        for sect, name in names:
            values = sections.get(sect, {}).get(name)
            if values:
                return path, values[-1]
    return DEFAULT_SOURCE, None


def _values(
    conf: cfg.ConfigOpts,
    parsed: Sequence[tuple[str, Parsed]],
    overrides: Mapping[str, Mapping[str, object]],
) -> list[Problem]:
    errors = []
    for group, opts in aconf.list_opts():
        section = group or "DEFAULT"
        for opt in opts:
            try:
                getattr(conf, opt.dest) if group is None else getattr(
                    getattr(conf, group), opt.dest
                )
            except (cfg.Error, ValueError) as exc:
                source, raw = source_of(parsed, section, opt, overrides)
                if raw is None:
                    raw = str(exc)
                if opt.secret:
                    raw = "***"
                allowed = describe_allowed(opt)
                errors.append(Problem(source, section, opt.dest, raw, allowed))
    return errors


def _problem(
    parsed: Sequence[tuple[str, Parsed]],
    overrides: Mapping[str, Mapping[str, object]],
    *,
    section: str,
    option: str,
    value: object,
    message: str,
) -> Problem:
    opt = _registered_opt(section, option)
    source, _ = source_of(parsed, section, opt, overrides)
    return Problem(source, section, option, str(value), message)


def _registered_opt(section: str, option: str) -> cfg.Opt:
    for group, opts in aconf.list_opts():
        if (group or "DEFAULT") == section:
            for opt in opts:
                if opt.dest == option:
                    return opt
    raise KeyError(f"[{section}] {option}")


def check_data_dir(path: str) -> str | None:
    """Say why *path* cannot be the data directory, or ``None``."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path):
        if not os.path.isdir(path):
            return f"{path} is not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"directory {path} is not writable by this user"
        return None
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is not a directory, so {path} cannot be created"
    if not os.access(parent, os.W_OK | os.X_OK):
        return (
            f"{path} does not exist and cannot be created "
            f"({parent} is not writable by this user)"
        )
    return None


def check_database_url(url: str) -> str | None:
    """Say why *url* cannot be used as ``[database] connection``."""
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        return (
            "not a database URL; use e.g. "
            "postgresql+psycopg://user@host/db, "
            "mysql+pymysql://user:pass@host/db or sqlite:///path"
        )
    try:
        dialect = parsed.get_dialect()
    except sa_exc.NoSuchModuleError:
        return f"unknown database kind {parsed.drivername!r}"
    module, hint = DB_DRIVER_HINTS.get(
        parsed.get_backend_name(), ("", "install its Python driver")
    )
    try:
        dialect.import_dbapi()
    except ImportError:
        name = parsed.get_driver_name() or module
        return f"the Python driver {name!r} is not installed ({hint})"
    return None


def _url_scheme(url: str) -> str:
    return urllib.parse.urlsplit(url).scheme


def _references(
    conf: cfg.ConfigOpts,
    parsed: Sequence[tuple[str, Parsed]],
    overrides: Mapping[str, Mapping[str, object]],
) -> list[Problem]:
    """Check the values that name a directory, a driver or a server."""
    errors = []

    def add(section: str, option: str, value: object, message: str) -> None:
        errors.append(
            _problem(
                parsed,
                overrides,
                section=section,
                option=option,
                value=value,
                message=message,
            )
        )

    try:
        # Values of the wrong type are reported by _values.
        for section, option in _REFERENCES:
            getattr(getattr(conf, section), option)
        _ = conf.data_dir
    except (cfg.Error, ValueError):
        return []
    reason = check_data_dir(conf.data_dir)
    if reason:
        add("DEFAULT", "data_dir", conf.data_dir, reason)
    if conf.database.connection:
        reason = check_database_url(conf.database.connection)
        if reason:
            add(
                "database",
                "connection",
                mask_url(conf.database.connection),
                reason,
            )
    if conf.storage.driver not in SERIES_DRIVERS:
        add(
            "storage",
            "driver",
            conf.storage.driver,
            "must be one of " + ", ".join(SERIES_DRIVERS),
        )
    elif conf.storage.driver == "file" and conf.storage.file_basepath:
        reason = check_data_dir(conf.storage.file_basepath)
        if reason:
            add("storage", "file_basepath", conf.storage.file_basepath, reason)
    elif (
        conf.storage.driver == "redis"
        and _url_scheme(conf.storage.redis_url) not in REDIS_SCHEMES
    ):
        add(
            "storage",
            "redis_url",
            mask_url(conf.storage.redis_url),
            "must be a redis://, rediss:// or unix:// URL",
        )
    channel = conf.evaluator.metric_channel
    if (
        channel
        and channel != "local"
        and _url_scheme(channel) not in REDIS_SCHEMES
    ):
        add(
            "evaluator",
            "metric_channel",
            mask_url(channel),
            "must be empty, 'local' or a redis:// URL",
        )
    backend = conf.coordination.backend_url
    if backend and backend != "none" and "://" not in backend:
        add(
            "coordination",
            "backend_url",
            mask_url(backend),
            "must be empty, 'none' or a tooz URL such as "
            "redis://host:6379 or file:///path",
        )
    return errors


#: The options :func:`_references` reads, besides ``data_dir``.
_REFERENCES = (
    ("database", "connection"),
    ("storage", "driver"),
    ("storage", "file_basepath"),
    ("storage", "redis_url"),
    ("evaluator", "metric_channel"),
    ("coordination", "backend_url"),
)

#: URL schemes of a Redis server.
REDIS_SCHEMES = ("redis", "rediss", "unix")


def mask_url(url: str) -> str:
    """Return *url* with its password (if any) replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{user}:***@{host}" + (f":{port}" if port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def load(
    config_files: Sequence[str],
    overrides: Mapping[str, Mapping[str, object]] | None = None,
) -> tuple[cfg.ConfigOpts, Report]:
    """Read and check the whole configuration.

    :returns: the configuration and what was found wrong with it (its
        warnings only, when it may be used).
    :raises ConfigInvalid: any error; it carries the whole report.
    """
    overrides = overrides or {}
    report = Report()
    parsed: list[tuple[str, Parsed]] = []
    for path in config_files:
        if not os.path.exists(path):
            report.errors.append(
                Problem(path, "", "", None, "no such configuration file")
            )
            continue
        try:
            parsed.append((path, parse_file(path)))
        except cfg.ParseError as exc:
            report.errors.append(
                Problem(
                    path,
                    "",
                    "",
                    None,
                    f"not an INI file: line {exc.lineno}: {exc.msg} "
                    f"({exc.line.strip()!r})",
                )
            )
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            report.errors.append(
                Problem(path, "", "", None, f"cannot be read: {reason}")
            )
    if report.errors:
        raise ConfigInvalid(report)
    conf = aconf.make_conf(config_files=config_files)
    for section, values in overrides.items():
        group = None if section == "DEFAULT" else section
        for key, value in values.items():
            try:
                conf.set_override(key, value, group=group)
            except ValueError:
                opt = _registered_opt(section, key)
                report.errors.append(
                    Problem(
                        COMMAND_LINE,
                        section,
                        key,
                        str(value),
                        describe_allowed(opt),
                    )
                )
    report.warnings.extend(_unknown(parsed, _registered(conf)))
    report.errors.extend(_values(conf, parsed, overrides))
    report.errors.extend(_references(conf, parsed, overrides))
    if report.errors:
        raise ConfigInvalid(report)
    return conf, report


def effective(conf: cfg.ConfigOpts) -> list[tuple[str, list[tuple[str, Any]]]]:
    """Every option's effective value by section; secrets masked.

    A secret that is set shows as ``***`` (a URL keeps everything but its
    password); an unset one as its empty value.
    """
    result = []
    for group, opts in aconf.list_opts():
        section = group or "DEFAULT"
        holder = conf if group is None else getattr(conf, group)
        values = []
        for opt in opts:
            value = getattr(holder, opt.dest)
            if opt.secret and value:
                if isinstance(value, str) and "://" in value:
                    value = mask_url(value)
                elif isinstance(value, dict):
                    value = {key: "***" for key in value}
                else:
                    value = "***"
            values.append((opt.dest, value))
        result.append((section, values))
    return result
