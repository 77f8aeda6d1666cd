"""Request parameters of both API dialects: bodies, booleans, integers,
paging.

Each dialect words its errors its own way, as the client libraries of
the original services expect:

* v1 (Gnocchi): ``Invalid input: <parameter>: <reason>`` (:func:`v1_bad`);
* v2 (Aodh, WSME's wording): ``Invalid input for field/attribute
  <name>. Value: '<value>'. <reason>``.

Both dialects read booleans with one vocabulary (:func:`as_bool`).  Query
parameters are read here rather than by WSME, which answers a bad integer
with a 500: every problem is a 400 naming the parameter.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

import flask

from api import errors

#: Words read as true (case-insensitive, surrounding blanks ignored).
TRUE_WORDS = frozenset({"true", "1", "yes", "on", "y", "t"})
#: Words read as false.
FALSE_WORDS = frozenset({"false", "0", "no", "off", "n", "f"})
#: Sort directions; a Gnocchi suffix such as ``-nullslast`` is ignored.
SORT_DIRECTIONS = ("asc", "desc")


def as_bool(text: str) -> bool | None:
    """Read a boolean word; None when *text* is none of them."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def arg(name: str) -> str | None:
    """The last value of query parameter *name*, or None."""
    values = flask.request.args.getlist(name)
    return values[-1] if values else None


# ------------------------------------------------------ v1 (Gnocchi) --


def v1_bad(message: str) -> errors.APIError:
    """A 400 error with Gnocchi's ``Invalid input`` prefix."""
    return errors.APIError(f"Invalid input: {message}", 400)


def v1_json_body(*, allow_empty: bool = False) -> Any:
    """Decode the request body as JSON or answer 400.

    :param allow_empty: answer None for an empty body instead of a 400.
    """
    data = flask.request.get_data(cache=True)
    if not data.strip():
        if allow_empty:
            return None
        raise v1_bad("the body is empty, a JSON document is required")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise v1_bad(f"the body is not valid JSON ({exc})") from None


def v1_bool(name: str, default: bool = False) -> bool:
    """A boolean query parameter; present but empty means false."""
    value = arg(name)
    if value is None:
        return default
    if not value.strip():
        return False
    result = as_bool(value)
    if result is None:
        raise v1_bad(f"{name}: must be a boolean, got {value!r}")
    return result


def v1_int(
    name: str, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """An integer query parameter within bounds, or None (absent/empty)."""
    value = arg(name)
    if value is None or value == "":
        return None
    try:
        result = int(value)
    except ValueError:
        raise v1_bad(f"{name}: must be an integer, got {value!r}") from None
    if minimum is not None and result < minimum:
        raise v1_bad(f"{name}: must be >= {minimum}, got {value!r}")
    if maximum is not None and result > maximum:
        raise v1_bad(f"{name}: must be <= {maximum}, got {value!r}")
    return result


@dataclasses.dataclass(frozen=True)
class Page:
    """The paging parameters of a v1 listing."""

    #: Largest number of items to answer.
    limit: int
    #: Id of the last item of the previous page, if any.
    marker: str | None
    #: ``(key, "asc" | "desc")`` in order of precedence.
    sorts: list[tuple[str, str]]


def v1_page(
    max_limit: int,
    *,
    sort_keys: Sequence[str] | None = None,
    default_sort: Sequence[tuple[str, str]] = (),
) -> Page:
    """Read ``limit`` (1 to *max_limit*), ``marker`` and ``sort``.

    :param sort_keys: the keys one may sort by; None when the caller
        checks them itself.
    :param default_sort: the order when no ``sort`` is given.
    """
    limit = v1_int("limit", minimum=1, maximum=max_limit) or max_limit
    sorts: list[tuple[str, str]] = []
    for raw in flask.request.args.getlist("sort"):
        key, _, direction = raw.partition(":")
        direction = (direction or "asc").split("-", 1)[0].lower()
        if sort_keys is not None and key not in sort_keys:
            raise v1_bad(
                f"sort: unknown sort key {key!r} (one of "
                f"{', '.join(sort_keys)})"
            )
        if direction not in SORT_DIRECTIONS:
            raise v1_bad(f"sort: unknown sort direction {direction!r}")
        sorts.append((key, direction))
    return Page(
        limit=limit,
        marker=arg("marker") or None,
        sorts=sorts or list(default_sort),
    )


# --------------------------------------------------------- v2 (Aodh) --


def v2_invalid(name: str, value: Any, reason: str) -> errors.APIError:
    """A 400 error in WSME's wording, naming the field and its value."""
    return errors.APIError(
        f"Invalid input for field/attribute {name}. Value: '{value}'. {reason}"
    )


def v2_json_body() -> Any:
    """Return the decoded JSON body.

    :raises api.errors.APIError: 415 for another media type, 400 for
        malformed JSON (an empty body included).
    """
    request = flask.request
    if request.mimetype not in ("application/json", ""):
        raise errors.APIError(f"Unknown mimetype: {request.mimetype}", 415)
    raw = request.get_data(cache=True)
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.APIError(
            f"Request is not in valid JSON format: {exc}"
        ) from exc


def v2_bool(name: str, value: Any) -> bool:
    """Read a boolean given as text (or already a bool).

    :raises api.errors.APIError: naming *name*.
    """
    if isinstance(value, bool):
        return value
    result = as_bool(str(value))
    if result is None:
        raise v2_invalid(
            name, value, f"Value not an unambiguous boolean: {value}"
        )
    return result


def v2_limit(max_limit: int) -> int:
    """Read ``limit`` (default and cap: *max_limit*; ``0`` = default).

    :raises api.errors.APIError: not a positive integer.
    """
    raw = flask.request.args.get("limit")
    if raw is None or raw == "":
        return max_limit
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise v2_invalid("limit", raw, "it should be a positive integer.")
    if value == 0:
        return max_limit
    return min(value, max_limit)


def v2_marker() -> str | None:
    """Read ``marker``: the id of the last item of the previous page."""
    return flask.request.args.get("marker") or None


def v2_sort(allowed: Sequence[str]) -> list[tuple[str, str]]:
    """Read the repeatable ``sort=key[:asc|desc]`` parameters.

    :raises api.errors.APIError: unknown key or direction.
    """
    result: list[tuple[str, str]] = []
    for raw in flask.request.args.getlist("sort"):
        for item in raw.split(","):
            key, _, direction = item.strip().partition(":")
            direction = (direction or "asc").lower()
            if key not in allowed or direction not in SORT_DIRECTIONS:
                raise v2_invalid(
                    "sort",
                    item,
                    "the sort parameter should be a pair of sort key and "
                    "sort dir combined with ':', or only sort key "
                    "specified and sort dir will be default 'asc', the "
                    f"supported sort keys are: ({', '.join(allowed)}), the "
                    "supported sort dirs are: (asc, desc)",
                )
            if key not in [k for k, _ in result]:
                result.append((key, direction))
    return result


def v2_next_link(
    items: Sequence[dict[str, Any]], limit: int, key: str
) -> str | None:
    """The URL of the next page when this one is full, else None.

    :param key: the field of an item that is its marker.
    """
    if not items or len(items) < limit:
        return None
    args = flask.request.args.to_dict(flat=False)
    args["marker"] = [items[-1][key]]
    args["limit"] = [str(limit)]
    return flask.request.base_url + "?" + urllib.parse.urlencode(args, True)
