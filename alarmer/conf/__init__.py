"""Configuration: every option of alarmer, grouped by INI section.

Each section lives in its own module (``alarmer.conf.<section>``) that
exposes ``GROUP`` (the section name) and ``OPTS`` (a list of
:mod:`oslo_config` options).  :func:`make_conf` builds a fresh
:class:`oslo_config.cfg.ConfigOpts` with all of them registered; it is
passed explicitly to whatever needs it, so there is no process-wide
configuration object.

The sample file ``etc/alarmer.conf`` is generated from these modules with
``alarmer-config-generator`` and a test checks that it is up to date.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterable, Sequence

from oslo_config import cfg, generator

from alarmer import __version__

#: Modules holding the options, in the order they appear in the sample.
SECTION_MODULES = (
    "alarmer.conf.default",
    "alarmer.conf.api",
    "alarmer.conf.database",
    "alarmer.conf.storage",
    "alarmer.conf.coordination",
    "alarmer.conf.evaluator",
    "alarmer.conf.notifier",
)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """Return ``(group, options)`` pairs for oslo-config-generator."""
    result: list[tuple[str | None, list[cfg.Opt]]] = []
    for name in SECTION_MODULES:
        module = importlib.import_module(name)
        group = None if module.GROUP == "DEFAULT" else module.GROUP
        result.append((group, list(module.OPTS)))
    return result


def make_conf(
    args: Sequence[str] | None = None,
    config_files: Iterable[str] | None = None,
    overrides: dict[str, dict[str, object]] | None = None,
) -> cfg.ConfigOpts:
    """Build a configuration object with every alarmer option registered.

    :param args: command-line arguments (without the program name); by
        default none, so that library users are not affected by
        ``sys.argv``.
    :param config_files: INI files to read; missing files are an error.
    :param overrides: ``{section: {option: value}}`` applied on top of the
        files (used by tests and by command-line flags such as
        ``--data-dir``).
    """
    conf = cfg.ConfigOpts()
    for group, opts in list_opts():
        conf.register_opts(opts, group=group)
    files = list(config_files or [])
    for path in files:
        if not os.path.exists(path):
            raise cfg.ConfigFilesNotFoundError([path])
    conf(
        args=list(args or []),
        project="alarmer",
        version=__version__,
        default_config_files=files,
        default_config_dirs=[],
    )
    for section, values in (overrides or {}).items():
        group = None if section == "DEFAULT" else section
        for key, value in values.items():
            conf.set_override(key, value, group=group)
    return conf


def data_dir(conf: cfg.ConfigOpts) -> str:
    """Return the absolute data directory, creating it if needed."""
    path = os.path.abspath(os.path.expanduser(conf.data_dir))
    os.makedirs(path, exist_ok=True)
    return path


def generate_sample(output: str | None = None) -> str:
    """Render the sample configuration file; write it when *output*."""
    gconf = cfg.ConfigOpts()
    generator.register_cli_opts(gconf)
    argv = ["--namespace", "alarmer", "--wrap-width", "79"]
    if output:
        argv += ["--output-file", output]
    gconf(argv, project="alarmer-config-generator")
    generator.generate(gconf)
    if output:
        with open(output, encoding="utf-8") as handle:
            return handle.read()
    return ""


def generate_sample_main(argv: Sequence[str] | None = None) -> int:
    """Console script: print or write the sample configuration file."""
    parser = argparse.ArgumentParser(
        prog="alarmer-config-generator",
        description="Print the sample configuration of alarmer: every "
        "option with its default and help, commented out.",
    )
    parser.add_argument(
        "output",
        nargs="?",
        metavar="FILE",
        help="Write the sample to FILE instead of standard output.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    args = parser.parse_args(argv)
    try:
        generate_sample(args.output)
    except OSError as exc:
        sys.stderr.write(
            f"{parser.prog}: error: cannot write {args.output}: "
            f"{exc.strerror or exc}\n"
        )
        return 1
    return 0
