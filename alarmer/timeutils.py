"""Time helpers: aware UTC datetimes inside, ISO 8601 with offset outside.

Naive input is read as UTC.  The metrics engine works in integer
nanoseconds since the Unix epoch (``numpy.datetime64[ns]``); the helpers
here convert between that and :class:`datetime.datetime`.
"""

from __future__ import annotations

import datetime as dt
import numbers

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
NS_PER_SECOND = 1_000_000_000


def utcnow() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return dt.datetime.now(UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """Return *value* in UTC; a naive datetime is taken to be UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _from_epoch(seconds: float) -> dt.datetime:
    """The datetime *seconds* after the epoch; ValueError out of range."""
    try:
        return EPOCH + dt.timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        raise ValueError(f"timestamp out of range: {seconds!r}") from None


def parse_datetime(value: object) -> dt.datetime:
    """Parse an ISO 8601 string, epoch seconds or a datetime to aware UTC.

    :raises ValueError: when *value* is none of those.
    """
    if isinstance(value, dt.datetime):
        return as_utc(value)
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, numbers.Real):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"timestamp out of range: {value!r}") from None
        return _from_epoch(seconds)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("empty timestamp")
        try:
            seconds = float(text)
        except ValueError:
            pass
        else:
            return _from_epoch(seconds)
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            return as_utc(dt.datetime.fromisoformat(text))
        except OverflowError:
            raise ValueError(f"timestamp out of range: {value!r}") from None
    raise ValueError(f"not a timestamp: {value!r}")


def isoformat(value: dt.datetime | None) -> str | None:
    """Format *value* as ISO 8601 in UTC with an explicit offset."""
    if value is None:
        return None
    return as_utc(value).isoformat()


def to_ns(value: dt.datetime) -> int:
    """Return nanoseconds since the Unix epoch of an aware datetime."""
    delta = as_utc(value) - EPOCH
    return (
        delta.days * 86400 + delta.seconds
    ) * NS_PER_SECOND + delta.microseconds * 1000


def from_ns(value: int) -> dt.datetime:
    """Return the aware UTC datetime of nanoseconds since the epoch.

    Sub-microsecond digits are truncated (datetime has no nanoseconds).
    """
    return EPOCH + dt.timedelta(microseconds=int(value) // 1000)


def isoformat_ns(value: int) -> str:
    """Format nanoseconds since the epoch as ISO 8601 with offset.

    Nanosecond digits are kept when present.
    """
    seconds, nanos = divmod(int(value), NS_PER_SECOND)
    base = (EPOCH + dt.timedelta(seconds=seconds)).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    if nanos == 0:
        return base + "+00:00"
    if nanos % 1000 == 0:
        return f"{base}.{nanos // 1000:06d}+00:00"
    return f"{base}.{nanos:09d}+00:00"
