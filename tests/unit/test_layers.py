"""Imports go down the layer table, never round in a circle.

Every module under ``alarmer/``, ``api/`` and ``notifiers/`` is parsed
(no import is executed) and each of its imports, function-local ones
included, is checked against the rules below.  The layer table is the
one ``docs/architecture.md`` describes.  A failure lists every offending
import with its file and line.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from collections import defaultdict
from collections.abc import Iterator

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
PACKAGES = ("alarmer", "api", "notifiers")


@dataclasses.dataclass(frozen=True)
class Layer:
    """Modules (a name covers its submodules) and the layers right below."""

    name: str
    modules: tuple[str, ...]
    below: tuple[str, ...]


#: Bottom to top.  A layer may import its own modules and those of every
#: layer it stands on, directly or through others.
LAYERS = (
    Layer(
        "foundation",
        (
            "alarmer.timeutils",
            "alarmer.errors",
            "alarmer.jsontext",
            "alarmer.conf",
            "alarmer.telemetry",
            "alarmer.logformat",
        ),
        (),
    ),
    Layer("db", ("alarmer.db",), ("foundation",)),
    Layer("metrics.policy", ("alarmer.metrics.policy",), ("db",)),
    Layer("metrics.series", ("alarmer.metrics.series",), ("metrics.policy",)),
    Layer("metrics.index", ("alarmer.metrics.index",), ("metrics.series",)),
    Layer("metrics.query", ("alarmer.metrics.query",), ("metrics.index",)),
    Layer("metrics.ingest", ("alarmer.metrics.ingest",), ("metrics.query",)),
    # Beside metrics, above db.  The alarms may use the metric index to
    # scope rules to resources (hence the layers under it as well).
    Layer("alarms", ("alarmer.alarms",), ("db", "metrics.index")),
    Layer("identity", ("alarmer.identity",), ("db",)),
    Layer("channel", ("alarmer.channel",), ("db",)),
    Layer(
        "runtime",
        ("alarmer.runtime",),
        ("metrics.ingest", "alarms", "identity", "channel"),
    ),
    Layer("evaluator", ("alarmer.evaluator",), ("runtime",)),
    # Of the alarms, the notifiers use the outbox only (NOTIFIERS_USE).
    Layer("notifiers", ("notifiers",), ("runtime",)),
    # The API never imports the evaluator: they meet in the database and
    # on the "metric changed" channel.
    Layer("api", ("api",), ("notifiers",)),
    Layer(
        "top",
        (
            "alarmer.tables",
            "alarmer.process",
            "alarmer.serve",
            "alarmer.cli",
            "alarmer.entry",
        ),
        ("api", "evaluator"),
    ),
)

#: Package modules that only hold their subpackages: their own layer.
PACKAGE_LAYERS = {"alarmer": "foundation", "alarmer.metrics": "metrics.policy"}

#: What the notifiers may import of the alarms layer: the outbox table.
NOTIFIERS_USE = {"alarmer.alarms.tables"}

#: The notifier plugins and what they may import of ``notifiers``: the
#: plugin interface, the signing functions and the webhook client, none
#: of the service.
PLUGINS = {
    "notifiers.http",
    "notifiers.log",
    "notifiers.base",
    "notifiers.wire",
}
PLUGINS_USE = {
    "notifiers",
    "notifiers.base",
    "notifiers.signing",
    "notifiers.wire",
}

#: Pure modules: computation only, no file, network or database.
PURE = {
    "alarmer.evaluator.decide",
    "alarmer.evaluator.composite",
    "alarmer.evaluator.lifecycle",
    "alarmer.metrics.series.aggregation",
    "alarmer.metrics.query.parse",
    "alarmer.metrics.query.operations",
    "alarmer.alarms.model",
    "alarmer.evaluator.schedule",
    "alarmer.evaluator.backlog",
    "alarmer.metrics.series.codec",
    "alarmer.metrics.policy",
    "alarmer.alarms.validation",
    "alarmer.alarms.schema",
    "alarmer.alarms.time_constraints",
    "alarmer.jsontext",
    "notifiers.retry",
    "notifiers.status",
}
#: Pure modules that are planned but may not exist yet.
PLANNED: set[str] = set()
#: First-party modules a pure module may import besides the pure ones.
PURE_USE = {
    "alarmer",
    "alarmer.timeutils",
    "alarmer.errors",
    "alarmer.alarms.errors",
}
#: Modules (and their submodules) that do I/O.
IO_MODULES = (
    "alembic",
    "asyncio",
    "fcntl",
    "flask",
    "ftplib",
    "glob",
    "http",
    "io",
    "multiprocessing",
    "os",
    "oslo_config",
    "pathlib",
    "psycopg",
    "pymysql",
    "redis",
    "requests",
    "select",
    "selectors",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "sqlalchemy",
    "sqlite3",
    "ssl",
    "subprocess",
    "tempfile",
    "tooz",
    "urllib.request",
    "urllib3",
    "waitress",
    "werkzeug",
    "wsme",
)

#: Offending imports that are known and being fixed: (rule, importing
#: module, imported module).  Each must still occur: remove it here when
#: its fix lands, and the set ends empty.
KNOWN_OFFENDERS: set[tuple[str, str, str]] = set()


@dataclasses.dataclass(frozen=True)
class Import:
    """One first-party or other import of a module."""

    module: str
    target: str
    path: str
    line: int
    note: str = ""

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}: {self.module} imports {self.target}"
        return f"{text} ({self.note})" if self.note else text


def _modules() -> dict[str, str]:
    """Every first-party module name and its file, relative to ROOT."""
    found = {}
    for package in PACKAGES:
        for folder, _dirs, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.relpath(os.path.join(folder, name), ROOT)
                parts = path[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts.pop()
                found[".".join(parts)] = path
    return found


MODULES = _modules()


def _first_party(name: str) -> bool:
    return name.split(".", maxsplit=1)[0] in PACKAGES


def _read(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        return handle.read()


def _imports(module: str, path: str, source: str) -> Iterator[Import]:
    """Every import in *source*, at any depth (functions, branches)."""
    tree = ast.parse(source, path)
    if path.endswith("__init__.py"):
        package = module
    else:
        package = module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            if base == "__future__":
                continue
            for alias in node.names:
                # "from package import submodule" imports the submodule.
                full = f"{base}.{alias.name}"
                if full in MODULES:
                    yield Import(module, full, path, node.lineno)
                else:
                    yield Import(module, base, path, node.lineno)
                    if not _first_party(base):
                        yield Import(module, full, path, node.lineno)


IMPORTS = sorted(
    {
        imp
        for module, path in MODULES.items()
        for imp in _imports(module, path, _read(path))
    },
    key=lambda imp: (imp.path, imp.line, imp.target),
)
FIRST_PARTY = [
    imp
    for imp in IMPORTS
    if _first_party(imp.target) and imp.target != imp.module
]
_BY_NAME = {layer.name: layer for layer in LAYERS}


def layer_of(module: str) -> str | None:
    """The layer of *module* (the longest matching name), None if none."""
    if module in PACKAGE_LAYERS:
        return PACKAGE_LAYERS[module]
    best, size = None, -1
    for layer in LAYERS:
        for name in layer.modules:
            if module == name or module.startswith(name + "."):
                if len(name) > size:
                    best, size = layer.name, len(name)
    return best


def _allowed() -> dict[str, set[str]]:
    """Each layer and the layers it may import (itself included)."""
    allowed: dict[str, set[str]] = {}

    def under(name: str) -> set[str]:
        if name not in allowed:
            found = {name}
            for lower in _BY_NAME[name].below:
                found |= under(lower)
            allowed[name] = found
        return allowed[name]

    for layer in LAYERS:
        under(layer.name)
    return allowed


ALLOWED = _allowed()


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _is_io(name: str) -> bool:
    return any(_within(name, io) for io in IO_MODULES)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in FIRST_PARTY:
        if imp.target in MODULES:
            graph[imp.module].add(imp.target)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Groups of modules that import each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        # Tarjan's strongly connected components.
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for module in sorted(MODULES):
        if module not in index:
            visit(module)
    return groups


def _closing_edges(
    graph: dict[str, set[str]], group: set[str]
) -> dict[tuple[str, str], list[str]]:
    """The imports that close the circles of *group*, with a circle each.

    A walk of the group meets each circle at an import of a module still
    on its path: that import is the one reported.  The walk starts from
    the module of the highest layer (then the first name), so that an
    import going up is the one reported, and the same one whatever the
    rest of the code base.
    """
    closing: dict[tuple[str, str], list[str]] = {}
    path: list[str] = []
    done: set[str] = set()

    def walk(node: str) -> None:
        path.append(node)
        for succ in sorted(graph[node] & group):
            if succ in path:
                closing[(node, succ)] = [*path[path.index(succ) :], succ]
            elif succ not in done:
                walk(succ)
        path.pop()
        done.add(node)

    rank = {layer.name: height for height, layer in enumerate(LAYERS)}

    def order(module: str) -> tuple[int, str]:
        name = layer_of(module)
        return (-rank[name] if name is not None else 1, module)

    walk(min(group, key=order))
    return closing


def _offences() -> dict[str, dict[tuple[str, str, str], list[Import]]]:
    """Rule -> offending (rule, module, target) -> its imports."""
    found: dict[str, dict[tuple[str, str, str], list[Import]]] = {
        rule: defaultdict(list) for rule in RULES
    }

    def add(rule: str, imp: Import) -> None:
        found[rule][(rule, imp.module, imp.target)].append(imp)

    for imp in FIRST_PARTY:
        source, target = layer_of(imp.module), layer_of(imp.target)
        if source is None or target is None:
            add("unmapped", imp)
            continue
        if target not in ALLOWED[source]:
            add("upward", imp)
        if (
            source == "notifiers"
            and target == "alarms"
            and imp.target not in NOTIFIERS_USE
        ):
            add("upward", imp)
        if _within(imp.module, "api.v2") and _within(imp.target, "api.v1"):
            add("api-v2-uses-v1", imp)
        if (
            imp.module in PLUGINS
            and _within(imp.target, "notifiers")
            and imp.target not in PLUGINS_USE
        ):
            add("plugin-uses-service", imp)
    for imp in IMPORTS:
        if imp.module not in PURE:
            continue
        if _first_party(imp.target):
            if imp.target not in PURE | PURE_USE:
                add("pure-does-io", imp)
        elif _is_io(imp.target):
            add("pure-does-io", imp)
    graph = _graph()
    for group in _circles(graph):
        closing = _closing_edges(graph, group)
        for imp in FIRST_PARTY:
            circle = closing.get((imp.module, imp.target))
            if circle is not None:
                found["circle"][("circle", imp.module, imp.target)].append(
                    dataclasses.replace(imp, note=" -> ".join(circle))
                )
    return found


RULES = (
    "unmapped",
    "upward",
    "circle",
    "api-v2-uses-v1",
    "plugin-uses-service",
    "pure-does-io",
)
WHAT = {
    "unmapped": "imports between modules missing from the layer table",
    "upward": "imports of a layer not below (see LAYERS)",
    "circle": "imports that close a circle of modules",
    "api-v2-uses-v1": "imports of api.v1 by api.v2",
    "plugin-uses-service": "imports of notifier service modules by plugins",
    "pure-does-io": "imports of modules with I/O by pure modules",
}


OFFENCES = _offences()


@pytest.mark.parametrize("rule", RULES)
def test_imports_follow_the_rule(rule):
    found = OFFENCES[rule]
    known = {key for key in KNOWN_OFFENDERS if key[0] == rule}
    lines = []
    new = sorted(set(found) - known)
    if new:
        lines.append(f"{WHAT[rule]}:")
        for key in new:
            lines += [f"  {imp}" for imp in found[key]]
    gone = sorted(known - set(found))
    if gone:
        lines.append("KNOWN_OFFENDERS that no longer occur (remove them):")
        lines += [f"  {key}" for key in gone]
    assert not lines, "\n".join(lines)


def test_layer_table_is_consistent():
    assert not [
        (layer.name, lower)
        for layer in LAYERS
        for lower in layer.below
        if lower not in _BY_NAME
    ]
    assert not [m for m in sorted(MODULES) if layer_of(m) is None], (
        "modules missing from the layer table"
    )
    assert not sorted(PURE - PLANNED - set(MODULES)), "unknown pure modules"
    assert all(key[0] in RULES for key in KNOWN_OFFENDERS)


def test_the_checker_sees_every_kind_of_import():
    source = """
import os.path
from . import tables
from ..metrics import policy
from alarmer.metrics.policy import ArchivePolicy

def later():
    from alarmer import runtime
    import requests
"""
    found = {
        (imp.target, imp.line)
        for imp in _imports("alarmer.alarms.x", "alarmer/alarms/x.py", source)
    }
    assert found >= {
        ("os.path", 2),
        ("alarmer.alarms.tables", 3),
        ("alarmer.metrics.policy", 4),
        ("alarmer.metrics.policy", 5),
        ("alarmer.runtime", 8),
        ("requests", 9),
    }
    assert layer_of("alarmer.alarms.x") == "alarms"
    assert "runtime" not in ALLOWED["alarms"]
    assert "metrics.index" in ALLOWED["alarms"]
    assert layer_of("alarmer.metrics.series.drivers.file") == "metrics.series"


def test_the_architecture_page_shows_this_table():
    with open(
        os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8"
    ) as handle:
        text = handle.read()
    section = text.split("## Who may import whom", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| layer ")
    ]
    shown = {
        name: (tuple(modules.strip("`").split("`, `")), below)
        for name, modules, below in rows
    }
    assert list(shown) == [layer.name for layer in LAYERS]
    for layer in LAYERS:
        modules, below = shown[layer.name]
        assert modules == layer.modules, layer.name
        assert all(name in below for name in layer.below), layer.name
