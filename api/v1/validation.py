"""Validation shared by the v1 views: schemas, timestamps, measures.

Everything a client sends is checked here (or in :mod:`api.params`, for
bodies, booleans, integers and paging) before anything is trusted or
stored; failures raise :class:`api.errors.APIError` (400) with a message
naming the field and the reason.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import flask
import jsonschema
import numpy as np

from alarmer import timeutils
from alarmer.metrics import index as idx
from alarmer.metrics import policy as ap
from api import context, errors, identity, params

NS = 1_000_000_000
INT64_MAX = 2**63 - 1
#: Default of ``[api] measure_max_future``, in seconds.
DEFAULT_MEASURE_MAX_FUTURE = 86400
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"(?:\s*(Z|z|[+-]\d{2}(?::?\d{2})?)|\s(\d{2}:?\d{2}))?$"
)
# The second offset form is "+HH:MM" whose "+" a query string decoded
# into a space.

# The names the v1 views have always used to read a request; each
# is the one definition in api.context or api.params.
bad = params.v1_bad
runtime = context.runtime
indexer = context.index
require_admin = context.require_admin


def require_reader() -> identity.Identity:
    """The caller if it may read (Gnocchi's user-only callers too)."""
    return context.require_reader(project_needed=False)


def require_member() -> identity.Identity:
    """The caller if it may write (Gnocchi's user-only callers too)."""
    return context.require_member(project_needed=False)


query_arg = params.arg
query_int = params.v1_int
query_bool = params.v1_bool
json_body = params.v1_json_body


def measures_body() -> Any:
    """The body of a measure push: bounded by ``[api]
    max_measures_body_size`` rather than ``max_body_size``."""
    return params.v1_json_body(measures=True)


# ----------------------------------------------------------- schemas --


def _where(error: jsonschema.ValidationError) -> str:
    path = error.json_path
    if path == "$":
        return "body"
    return path.removeprefix("$.").removeprefix("$")


def check_schema(schema: Mapping[str, Any], body: Any) -> None:
    """Validate *body* against a JSON schema.

    :raises api.errors.InvalidInput: 400 naming the field, described as
        Gnocchi describes its schema validation errors.
    """
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is None:
        return
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - allowed)
        where = _where(error)
        prefix = "" if where == "body" else f"{where}: "
        raise errors.InvalidInput(
            f"{prefix}unknown attribute(s) {', '.join(extra)}",
            [*path, extra[0]],
        )
    raise errors.InvalidInput(f"{_where(error)}: {error.message}", path)


# -------------------------------------------------------- timestamps --


def timestamp_ns(value: object, field: str) -> int:
    """Parse a timestamp to integer nanoseconds since the epoch.

    Accepted: epoch seconds (a number or a numeric string) and ISO 8601
    strings with any offset (naive means UTC), to the nanosecond.

    :raises APIError: 400 naming *field*, also before the epoch.
    """
    if isinstance(value, bool) or value is None:
        raise bad(f"{field}: not a timestamp: {json.dumps(value)}")
    if isinstance(value, int):
        ns = value * NS
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise bad(f"{field}: not a timestamp: {value!r}")
        ns = _decimal_ns(decimal.Decimal(repr(value)))
    elif isinstance(value, str):
        ns = _string_ns(value, field)
    else:
        raise bad(f"{field}: not a timestamp: {json.dumps(value)}")
    if ns < 0:
        raise bad(f"{field}: timestamp must be after Epoch")
    if ns > INT64_MAX:
        raise bad(f"{field}: timestamp is out of range")
    return ns


def _decimal_ns(value: decimal.Decimal) -> int:
    return int(
        (value * NS).to_integral_value(rounding=decimal.ROUND_HALF_EVEN)
    )


def _string_ns(text: str, field: str) -> int:
    stripped = text.strip()
    if not stripped:
        raise bad(f"{field}: empty timestamp")
    if stripped[0] in "0123456789+-." and "-" not in stripped[1:]:
        try:
            number = decimal.Decimal(stripped)
        except decimal.InvalidOperation:
            pass
        else:
            if not number.is_finite():
                raise bad(f"{field}: not a timestamp: {text!r}")
            return _decimal_ns(number)
    match = _ISO.match(stripped)
    if match is None:
        raise bad(
            f"{field}: unable to parse timestamp {text!r} (ISO 8601 or "
            "epoch seconds expected)"
        )
    year, month, day, hour, minute, second, frac, offset, plus = match.groups()
    if plus is not None:
        offset = "+" + plus
    try:
        ordinal = dt.date(int(year), int(month), int(day)).toordinal()
    except ValueError as exc:
        raise bad(f"{field}: invalid date in {text!r} ({exc})") from None
    h, m, s = int(hour or 0), int(minute or 0), int(second or 0)
    if h > 23 or m > 59 or s > 59:
        raise bad(f"{field}: invalid time of day in {text!r}")
    nanos = int((frac or "0")[:9].ljust(9, "0"))
    seconds = (ordinal - _EPOCH_ORDINAL) * 86400 + h * 3600 + m * 60 + s
    if offset and offset not in ("Z", "z"):
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        off_h, off_m = int(digits[:2]), int(digits[2:] or 0)
        if off_h > 23 or off_m > 59:
            raise bad(f"{field}: invalid UTC offset in {text!r}")
        seconds -= sign * (off_h * 3600 + off_m * 60)
    return seconds * NS + nanos


# ---------------------------------------------------------- measures --


def measures(raw: object, field: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a list of ``{"timestamp", "value"}`` into numpy arrays.

    :returns: (int64 nanosecond timestamps, float64 values), in the
        order given.
    :raises APIError: 400 naming the first bad element, e.g.
        ``measures[3].value``.
    """
    parsed = _measures_fast(raw) if type(raw) is list else None
    if parsed is None:
        return _measures_one_by_one(raw, field)
    check_not_ahead(parsed[0], field)
    return parsed


def measures_many(
    items: Sequence[tuple[object, str]],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`measures` for several lists at once, results in order.

    The common case (every list well formed) is parsed as one array;
    otherwise each list is parsed in turn, so that the 400 names the
    first bad element of the first bad list, as :func:`measures` would.

    :param items: (the list of measures, its field name) pairs.
    """
    lists: list[list[Any]] = [raw for raw, _ in items if isinstance(raw, list)]
    if len(lists) != len(items):
        return [measures(raw, field) for raw, field in items]
    parsed = _measures_fast(list(itertools.chain.from_iterable(lists)))
    if parsed is None:
        return [measures(raw, field) for raw, field in items]
    stamps, values = parsed
    if stamps.size and int(stamps.max()) > latest_accepted_ns():
        return [measures(raw, field) for raw, field in items]
    sizes = np.asarray([len(raw) for raw in lists], dtype=np.int64)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    return [
        (stamps[start:end], values[start:end])
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def _measures_fast(raw: list[Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """Measures parsed as arrays, or None when any needs a closer look.

    None is no verdict: :func:`_measures_one_by_one` decides (and names
    the bad element).  Accepted here only what it accepts, to the same
    values: objects of exactly ``timestamp`` and ``value``; timestamps
    all integers (epoch seconds) or all UTC ISO 8601 strings of one
    strict shape; values all JSON numbers.
    """
    if not raw:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    if set(map(type, raw)) != {dict} or set(map(len, raw)) != {2}:
        return None
    try:
        stamps_raw = [item["timestamp"] for item in raw]
        values_raw = [item["value"] for item in raw]
    except KeyError:
        return None
    if not set(map(type, values_raw)) <= {float, int}:
        return None
    try:
        values = np.array(values_raw, dtype=np.float64)
    except OverflowError:
        return None
    if not np.isfinite(values).all():
        return None
    kinds = set(map(type, stamps_raw))
    if kinds == {int}:
        try:
            seconds = np.array(stamps_raw, dtype=np.int64)
        except OverflowError:
            return None
        if seconds.min() < 0 or seconds.max() > INT64_MAX // NS:
            return None
        return seconds * NS, values
    if kinds == {str}:
        stamps = iso_utc_ns(stamps_raw)
        return None if stamps is None else (stamps, values)
    return None


#: Columns of the digits of ``YYYY-MM-DDTHH:MM``, and its separators.
_ISO_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15]
_ISO_WIDTH = 29  # YYYY-MM-DDTHH:MM:SS.nnnnnnnnn
#: Years whose nanoseconds fit in int64 (and are after the epoch).
_ISO_YEARS = (1970, 2261)


def iso_utc_ns(texts: list[str]) -> np.ndarray | None:
    """Parse UTC ISO 8601 timestamps as one array of int64 nanoseconds.

    Only one strict shape is taken: ``YYYY-MM-DD[T ]HH:MM[:SS[.f]]``
    (1 to 9 fractional digits) with ``Z``, ``+00:00`` or no offset (UTC),
    years 1970 to 2261.  Anything else, or an invalid date or time of
    day, answers None: the caller parses those one by one.
    """
    joined = "\n".join(texts) + "\n"
    joined = joined.replace("Z\n", "\n").replace("+00:00\n", "\n")
    parts = joined.split("\n")
    parts.pop()
    if len(parts) != len(texts):
        return None
    try:
        encoded = np.array(parts, dtype=np.bytes_)
    except UnicodeEncodeError:
        return None
    if encoded.dtype.itemsize > _ISO_WIDTH:
        return None
    encoded = encoded.astype(f"S{_ISO_WIDTH}")
    chars = encoded.view(np.uint8).reshape(len(parts), _ISO_WIDTH)
    digits = (chars >= ord("0")) & (chars <= ord("9"))
    lengths = np.count_nonzero(chars, axis=1)
    columns = np.arange(_ISO_WIDTH)
    seconds = lengths > 16
    fraction = lengths > 20
    shape_ok = (
        digits[:, _ISO_DIGITS].all()
        and (chars[:, 4] == ord("-")).all()
        and (chars[:, 7] == ord("-")).all()
        and ((chars[:, 10] == ord("T")) | (chars[:, 10] == ord(" "))).all()
        and (chars[:, 13] == ord(":")).all()
        and (
            (lengths == 16) | (lengths == 19) | (fraction & (lengths <= 29))
        ).all()
        and (~seconds | (chars[:, 16] == ord(":"))).all()
        and (~seconds | (digits[:, 17] & digits[:, 18])).all()
        and (~fraction | (chars[:, 19] == ord("."))).all()
        and (
            digits | (columns < 20) | (columns >= lengths[:, np.newaxis])
        ).all()
    )
    if not shape_ok:
        return None
    year = (chars[:, :4].astype(np.int64) - ord("0")) @ [1000, 100, 10, 1]
    if year.min() < _ISO_YEARS[0] or year.max() > _ISO_YEARS[1]:
        return None
    try:
        parsed = encoded.astype("datetime64[ns]")
    except ValueError:
        return None  # a date or time of day out of range
    return parsed.view(np.int64)


def _measures_one_by_one(
    raw: object, field: str
) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(raw, list):
        raise bad(f"{field}: a list of measures is required")
    n = len(raw)
    stamps = np.empty(n, dtype=np.int64)
    values = np.empty(n, dtype=np.float64)
    for i, item in enumerate(raw):
        if type(item) is not dict:
            raise bad(
                f"{field}[{i}]: a measure must be an object with "
                "timestamp and value"
            )
        if len(item) != 2 or "timestamp" not in item or "value" not in item:
            missing = {"timestamp", "value"} - set(item)
            if missing:
                raise bad(
                    f"{field}[{i}]: required attribute(s) "
                    f"{', '.join(sorted(missing))} missing"
                )
            extra = sorted(set(item) - {"timestamp", "value"})
            raise bad(f"{field}[{i}]: unknown attribute(s) {', '.join(extra)}")
        stamps[i] = timestamp_ns(item["timestamp"], f"{field}[{i}].timestamp")
        values[i] = measure_value(item["value"], f"{field}[{i}].value")
    check_not_ahead(stamps, field)
    return stamps, values


def latest_accepted_ns() -> int:
    """The latest timestamp a measure may carry now, in nanoseconds.

    ``[api] measure_max_future`` seconds ahead of the server's clock: a
    metric's back window counts from its newest point, so a point
    stamped years ahead would make it refuse every present-day measure.
    """
    ahead = measure_max_future()
    return min(timeutils.to_ns(timeutils.utcnow()) + ahead * NS, INT64_MAX)


def measure_max_future() -> int:
    """``[api] measure_max_future`` (its default outside an application
    bound to a runtime)."""
    if flask.has_app_context() and (
        context.RUNTIME in flask.current_app.extensions
    ):
        return int(runtime().conf.api.measure_max_future)
    return DEFAULT_MEASURE_MAX_FUTURE


def check_not_ahead(stamps: np.ndarray, field: str) -> None:
    """400 naming the first measure stamped too far in the future."""
    if not stamps.size:
        return
    latest = latest_accepted_ns()
    late = np.flatnonzero(stamps > latest)
    if late.size:
        i = int(late[0])
        ahead = measure_max_future()
        raise bad(
            f"{field}[{i}].timestamp: "
            f"{timeutils.isoformat_ns(int(stamps[i]))} is more than "
            f"{ahead} seconds ahead of the server's clock "
            f"({timeutils.isoformat_ns(timeutils.to_ns(timeutils.utcnow()))})"
        )


def measure_value(value: object, field: str) -> float:
    """A finite float from a JSON number or numeric string."""
    if type(value) is float:
        result = value
    elif type(value) is int:
        try:
            result = float(value)
        except OverflowError:
            raise bad(f"{field}: number out of range") from None
    elif isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            raise bad(
                f"{field}: must be a finite number, got {value!r}"
            ) from None
    else:
        raise bad(f"{field}: must be a finite number, got {json.dumps(value)}")
    if not math.isfinite(result):
        raise bad(f"{field}: must be a finite number, got {value!r}")
    return result


# ------------------------------------------------------ query string --


def query_timestamp(name: str) -> int | None:
    """A timestamp query parameter in nanoseconds, or None."""
    value = query_arg(name)
    if value is None or value == "":
        return None
    return timestamp_ns(value, name)


def query_granularity(name: str = "granularity") -> int | None:
    """A granularity query parameter (seconds or a span) in ns, or None."""
    value = query_arg(name)
    if value is None or value == "":
        return None
    try:
        return ap.parse_timespan(value, name)
    except ap.PolicyError as exc:
        raise bad(str(exc).removeprefix("Invalid value for ")) from None


def query_float(
    name: str, minimum: float | None = None, maximum: float | None = None
) -> float | None:
    """A finite float query parameter within bounds, or None."""
    value = query_arg(name)
    if value is None or value == "":
        return None
    try:
        result = float(value)
    except ValueError:
        raise bad(f"{name}: must be a number, got {value!r}") from None
    if not math.isfinite(result):
        raise bad(f"{name}: must be a finite number, got {value!r}")
    if minimum is not None and result < minimum:
        raise bad(f"{name}: must be >= {minimum:g}, got {value!r}")
    if maximum is not None and result > maximum:
        raise bad(f"{name}: must be <= {maximum:g}, got {value!r}")
    return result


# ---------------------------------------------------------- identity --


def metric_filter(**kwargs: Any) -> idx.MetricFilter:
    """A filter restricting metrics to those the caller may see."""
    caller = context.caller()
    return idx.MetricFilter(
        any_project=caller.is_admin, project_id=caller.project_id, **kwargs
    )


def index_error(exc: idx.IndexerError) -> errors.APIError:
    """The API error answering an index error (the v1 error table)."""
    return errors.GNOCCHI.translate(exc) or errors.APIError(str(exc))
