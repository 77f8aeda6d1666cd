"""Archive policies: how a metric's measures are aggregated and kept.

Pure data and validation, no I/O.  The semantics follow Gnocchi's: a
policy is a list of ``(granularity, points, timespan)`` items (any two
given, the third derived), a set of aggregation methods and a
``back_window`` (how many extra blocks of the coarsest granularity accept
late points).  Durations are integer nanoseconds inside.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from alarmer.errors import AlarmerError

NS = 1_000_000_000
#: Longest duration a policy may name: about 292 years, the int64 range of
#: nanosecond timestamps.
MAX_SPAN = 2**63 - 1
#: Most coarsest-granularity blocks a policy may keep open for late points.
MAX_BACK_WINDOW = 1_000_000

#: Methods every archive policy can store.
BASIC_METHODS = (
    "mean",
    "sum",
    "last",
    "max",
    "min",
    "std",
    "median",
    "first",
    "count",
)
#: Methods of a policy that does not name any (Gnocchi's default).
DEFAULT_METHODS = ("mean", "min", "max", "sum", "std", "count")

_PCT = re.compile(r"^([1-9][0-9]?)pct$")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "wk": 604800,
    "week": 604800,
    "weeks": 604800,
    "y": 31536000,
    "year": 31536000,
    "years": 31536000,
}


class PolicyError(AlarmerError, ValueError):
    """Invalid archive policy; the message names the field and reason."""


_SPAN_TOKEN = re.compile(
    r"\s*(\d+(?:\.\d*)?|\.\d+)\s*("
    + "|".join(sorted(_UNIT_SECONDS, key=len, reverse=True))
    + r")?(?![a-z])\s*",
    re.IGNORECASE,
)


def is_valid_method(name: str) -> bool:
    """True when *name* is an aggregation method a policy may store.

    Valid: the basic methods, ``Npct`` for N in 1..99, and ``rate:`` in
    front of any of those.
    """
    if name.startswith("rate:"):
        name = name[len("rate:") :]
    return name in BASIC_METHODS or _PCT.match(name) is not None


def percentile_of(method: str) -> int | None:
    """Return N for ``Npct`` (or ``rate:Npct``), else None."""
    match = _PCT.match(method.removeprefix("rate:"))
    return int(match.group(1)) if match else None


def capability_methods() -> list[str]:
    """Every method name, as ``/v1/capabilities`` lists them."""
    names = [*BASIC_METHODS, *(f"{i}pct" for i in range(1, 100))]
    return sorted(names + [f"rate:{n}" for n in names])


def parse_timespan(value: object, field: str) -> int:
    """Parse seconds (number) or a span such as ``"1h"``, ``"7 days"``.

    :returns: nanoseconds (> 0).
    :raises PolicyError: naming *field* when invalid.
    """
    if isinstance(value, bool):
        raise PolicyError(f"Invalid value for {field}: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = 0.0
            pos = 0
            if not text:
                raise PolicyError(
                    f"Invalid value for {field}: empty timespan"
                ) from None
            while pos < len(text):
                match = _SPAN_TOKEN.match(text, pos)
                if not match or match.end() == pos or not match.group(2):
                    raise PolicyError(
                        f"Invalid value for {field}: unable to parse "
                        f"timespan {value!r}"
                    ) from None
                seconds += (
                    float(match.group(1))
                    * _UNIT_SECONDS[match.group(2).lower()]
                )
                pos = match.end()
    else:
        raise PolicyError(f"Invalid value for {field}: {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise PolicyError(f"Invalid value for {field}: must be positive")
    ns = round(seconds * NS)
    if ns <= 0:
        raise PolicyError(
            f"Invalid value for {field}: shorter than one nanosecond"
        )
    if ns > MAX_SPAN:
        raise PolicyError(
            f"Invalid value for {field}: longer than {MAX_SPAN // NS} seconds"
        )
    return ns


@dataclasses.dataclass(frozen=True)
class PolicyItem:
    """One level of a policy: bucket width and how many buckets to keep.

    ``points`` None keeps every bucket forever.
    """

    granularity: int
    points: int | None

    @property
    def timespan(self) -> int | None:
        """Nanoseconds covered by the kept buckets (None: forever)."""
        if self.points is None:
            return None
        return self.granularity * self.points

    def to_dict(self) -> dict[str, Any]:
        """Gnocchi's JSON shape: seconds as numbers."""
        return {
            "granularity": _seconds(self.granularity),
            "points": self.points,
            "timespan": (
                None if self.timespan is None else _seconds(self.timespan)
            ),
        }


def _seconds(ns: int) -> float | int:
    value = ns / NS
    return int(value) if value.is_integer() else value


def parse_item(raw: object, index: int) -> PolicyItem:
    """Parse one definition item; any two of the three fields."""
    field = f"definition[{index}]"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"Invalid value for {field}: must be an object")
    unknown = set(raw) - {"granularity", "points", "timespan"}
    if unknown:
        raise PolicyError(
            f"Invalid value for {field}: unknown key(s) "
            f"{', '.join(sorted(unknown))}"
        )
    gran = raw.get("granularity")
    points = raw.get("points")
    span = raw.get("timespan")
    g_ns = parse_timespan(gran, f"{field}.granularity") if gran else None
    s_ns = parse_timespan(span, f"{field}.timespan") if span else None
    if points is not None:
        if isinstance(points, bool) or not isinstance(points, int):
            raise PolicyError(
                f"Invalid value for {field}.points: must be an integer"
            )
        if points <= 0:
            raise PolicyError(
                f"Invalid value for {field}.points: must be positive"
            )
    given = sum(x is not None for x in (g_ns, points, s_ns))
    if g_ns is None and (points is None or s_ns is None):
        raise PolicyError(
            f"Invalid value for {field}: give two of granularity, points "
            "and timespan"
        )
    if g_ns is None:
        assert points is not None and s_ns is not None
        if s_ns % points:
            raise PolicyError(
                f"Invalid value for {field}: timespan is not a multiple of "
                "points"
            )
        g_ns = s_ns // points
    elif points is None and s_ns is not None:
        points = s_ns // g_ns
        if points <= 0:
            raise PolicyError(
                f"Invalid value for {field}: timespan shorter than granularity"
            )
    elif given == 3 and g_ns * points != s_ns:  # type: ignore[operator]
        raise PolicyError(
            f"Invalid value for {field}: timespan is not granularity "
            "times points"
        )
    if points is not None and g_ns * points > MAX_SPAN:
        raise PolicyError(
            f"Invalid value for {field}: granularity times points exceeds "
            "the representable time range"
        )
    return PolicyItem(granularity=g_ns, points=points)


def resolve_methods(
    spec: Sequence[str] | None, defaults: Sequence[str] = DEFAULT_METHODS
) -> tuple[str, ...]:
    """Turn a request's ``aggregation_methods`` into the stored set.

    ``None`` or ``[]`` gives *defaults*; a list made only of ``+m``/``-m``
    edits changes *defaults*; ``*`` stands for every basic method.
    """
    if not spec:
        return tuple(sorted(defaults))
    if isinstance(spec, str) or not all(isinstance(m, str) for m in spec):
        raise PolicyError(
            "Invalid value for aggregation_methods: must be a list of strings"
        )
    edits = [m for m in spec if m[:1] in "+-"]
    if edits and len(edits) != len(spec):
        raise PolicyError(
            "Invalid value for aggregation_methods: do not mix method "
            "names with +method/-method edits"
        )
    if edits:
        result = set(defaults)
        for edit in spec:
            name = edit[1:]
            names = set(BASIC_METHODS) if name == "*" else {name}
            for n in names:
                _check_method(n)
            if edit[0] == "+":
                result |= names
            else:
                result -= names
    else:
        result = set()
        for name in spec:
            if name == "*":
                result |= set(BASIC_METHODS)
            else:
                _check_method(name)
                result.add(name)
    if not result:
        raise PolicyError(
            "Invalid value for aggregation_methods: no method left"
        )
    return tuple(sorted(result))


def _check_method(name: str) -> None:
    if not is_valid_method(name):
        raise PolicyError(
            f"Invalid value for aggregation_methods: unknown method {name!r}"
        )


@dataclasses.dataclass(frozen=True)
class ArchivePolicy:
    """A named archive policy."""

    name: str
    definition: tuple[PolicyItem, ...]
    aggregation_methods: tuple[str, ...] = DEFAULT_METHODS
    back_window: int = 0

    def __post_init__(self) -> None:
        if not self.definition:
            raise PolicyError("Invalid value for definition: empty")
        grans = [item.granularity for item in self.definition]
        if len(set(grans)) != len(grans):
            raise PolicyError(
                "Invalid value for definition: more than one item with "
                "the same granularity"
            )
        if not 0 <= self.back_window <= MAX_BACK_WINDOW:
            raise PolicyError(
                "Invalid value for back_window: must be between 0 and "
                f"{MAX_BACK_WINDOW}"
            )
        for item in self.definition:
            if item.timespan is not None and item.timespan > MAX_SPAN:
                raise PolicyError(
                    "Invalid value for definition: granularity times "
                    "points exceeds the representable time range"
                )
        object.__setattr__(
            self,
            "definition",
            tuple(sorted(self.definition, key=lambda i: i.granularity)),
        )

    @property
    def granularities(self) -> tuple[int, ...]:
        """Granularities in nanoseconds, finest first."""
        return tuple(item.granularity for item in self.definition)

    @property
    def max_granularity(self) -> int:
        """The coarsest granularity (the block size of late points)."""
        return self.definition[-1].granularity

    def item(self, granularity: int) -> PolicyItem | None:
        """The item of *granularity* (ns), if the policy has one."""
        for item in self.definition:
            if item.granularity == granularity:
                return item
        return None

    @classmethod
    def from_request(
        cls,
        body: Mapping[str, Any],
        defaults: Sequence[str] = DEFAULT_METHODS,
    ) -> ArchivePolicy:
        """Validate a Gnocchi-style JSON body into a policy.

        :raises PolicyError: naming the field and the reason.
        """
        if not isinstance(body, Mapping):
            raise PolicyError("Invalid input: the body must be an object")
        unknown = set(body) - {
            "name",
            "definition",
            "aggregation_methods",
            "back_window",
        }
        if unknown:
            raise PolicyError(
                f"Invalid input: unknown attribute(s) "
                f"{', '.join(sorted(unknown))}"
            )
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise PolicyError(
                "Invalid value for name: a non-empty string is required"
            )
        if len(name) > 255:
            raise PolicyError("Invalid value for name: longer than 255")
        definition = body.get("definition")
        if not isinstance(definition, list) or not definition:
            raise PolicyError(
                "Invalid value for definition: a non-empty list is required"
            )
        items = tuple(parse_item(raw, i) for i, raw in enumerate(definition))
        back_window = body.get("back_window", 0)
        if isinstance(back_window, bool) or not isinstance(back_window, int):
            raise PolicyError(
                "Invalid value for back_window: must be an integer"
            )
        return cls(
            name=name,
            definition=items,
            aggregation_methods=resolve_methods(
                body.get("aggregation_methods"), defaults
            ),
            back_window=back_window,
        )

    def to_dict(self) -> dict[str, Any]:
        """Gnocchi's JSON shape of the policy."""
        return {
            "name": self.name,
            "back_window": self.back_window,
            "definition": [item.to_dict() for item in self.definition],
            "aggregation_methods": sorted(self.aggregation_methods),
        }


def _items(*pairs: tuple[int, int]) -> tuple[PolicyItem, ...]:
    return tuple(PolicyItem(g * NS, points) for g, points in pairs)


def default_policies(
    methods: Iterable[str] = DEFAULT_METHODS,
) -> dict[str, ArchivePolicy]:
    """Gnocchi's four default policies (low, medium, high, bool)."""
    methods = tuple(sorted(methods))
    return {
        "low": ArchivePolicy("low", _items((300, 8640)), methods),
        "medium": ArchivePolicy(
            "medium", _items((60, 10080), (3600, 8760)), methods
        ),
        "high": ArchivePolicy(
            "high", _items((1, 3600), (60, 10080), (3600, 8760)), methods
        ),
        "bool": ArchivePolicy(
            "bool", _items((1, 31536000)), ("last",), back_window=3600
        ),
    }
