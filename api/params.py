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

Every JSON body is read by one bounded reader (:func:`read_json`, under
:func:`v1_json_body` and :func:`v2_json_body`): at most ``[api]
max_body_size`` bytes (``max_measures_body_size`` for measure pushes,
413 beyond), nested at most ``[api] max_json_depth`` deep, and strict
(:func:`alarmer.jsontext.loads`: no ``NaN``/``Infinity``, no number out
of a float's range, no lone surrogate, no NUL).  :func:`install` refuses
NUL characters in the URL and the identity headers of every request,
before any view reads them.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Sequence
from typing import Any

import flask
from flask.json.provider import DefaultJSONProvider
from werkzeug import exceptions as wexc

from alarmer import jsontext
from api import context, errors

#: Words read as true (case-insensitive, surrounding blanks ignored).
TRUE_WORDS = frozenset({"true", "1", "yes", "on", "y", "t"})
#: Words read as false.
FALSE_WORDS = frozenset({"false", "0", "no", "off", "n", "f"})
#: Sort directions; a Gnocchi suffix such as ``-nullslast`` is ignored.
SORT_DIRECTIONS = ("asc", "desc")
#: Bounds of a body when the application has no runtime (unit tests):
#: the defaults of the options of the same names.
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
DEFAULT_MAX_JSON_DEPTH = 32
#: Headers that name the caller: NUL is refused in them as in the URL.
IDENTITY_HEADERS = (
    "X-User-Id",
    "X-Project-Id",
    "X-Roles",
    "X-Auth-Token",
    "Authorization",
)


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


# ------------------------------------------------------------ bodies --


@dataclasses.dataclass(frozen=True)
class BodyLimits:
    """The bounds of one JSON body."""

    #: Largest body, in bytes.
    max_size: int
    #: Deepest nesting of arrays and objects.
    max_depth: int


def body_limits(*, measures: bool = False) -> BodyLimits:
    """The configured bounds of a body (of a measure push if *measures*).

    Outside an application bound to a runtime, the options' defaults.
    """
    if context.RUNTIME not in flask.current_app.extensions:
        return BodyLimits(DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_JSON_DEPTH)
    api = context.runtime().conf.api
    size = api.max_measures_body_size if measures else api.max_body_size
    return BodyLimits(max_size=size, max_depth=api.max_json_depth)


def _too_large(limits: BodyLimits) -> jsontext.JSONTextError:
    return jsontext.JSONTextError(
        "", f"longer than {limits.max_size} bytes", status=413
    )


def read_json(
    limits: BodyLimits, *, allow_empty: bool = False, root: str = ""
) -> Any:
    """Read the request body as one bounded, strict JSON document.

    :param allow_empty: answer None for an empty (or blank) body.
    :param root: the name of the whole body in the positions of errors
        (``measures`` makes ``measures[3].value``).
    :raises alarmer.jsontext.JSONTextError: the body is too large (413),
        too deep, not JSON, or holds a value refused by
        :func:`alarmer.jsontext.loads` (400), with its position.
    """
    request = flask.request
    length = request.content_length
    if length is not None and length > limits.max_size:
        raise _too_large(limits)
    request.max_content_length = limits.max_size
    try:
        data = request.get_data(cache=True)
    except wexc.RequestEntityTooLarge:
        raise _too_large(limits) from None
    if not data.strip():
        if allow_empty:
            return None
        raise jsontext.JSONTextError("", "empty, a JSON document is required")
    return jsontext.loads(
        data, max_depth=limits.max_depth, max_size=limits.max_size, root=root
    )


def _shown(value: str) -> str:
    return value if len(value) <= 80 else value[:77] + "..."


def check_url_and_identity() -> None:
    """Refuse NUL in the path, the query string and the identity headers.

    No database stores NUL in text (PostgreSQL refuses it): a NUL that
    reached a query would be a 500.

    :raises api.errors.APIError: 400 naming the parameter.
    """
    request = flask.request
    if "\x00" in request.path:
        raise errors.APIError(
            "Invalid input: the path must not contain NUL characters"
        )
    for name, value in request.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            raise errors.APIError(
                f"Invalid input for field/attribute {_shown(name)!r}: "
                "query parameters must not contain NUL characters"
            )
    for name in IDENTITY_HEADERS:
        if "\x00" in request.headers.get(name, ""):
            raise errors.APIError(
                f"Invalid input for header {name}: NUL characters are not "
                "allowed"
            )


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider writing strict JSON only.

    A non-finite float (a ``NaN`` stored before thresholds were checked,
    an aggregate divided by zero) is written as ``null`` rather than as
    the bare ``NaN`` strict parsers reject.
    """

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Encode *obj* (``null`` for non-finite floats)."""
        kwargs.setdefault("default", self.default)
        kwargs.setdefault("ensure_ascii", self.ensure_ascii)
        kwargs.setdefault("sort_keys", self.sort_keys)
        return jsontext.dumps(obj, **kwargs)


def install(app: flask.Flask) -> None:
    """Bound what every request of *app* reads and writes.

    Checks the URL and identity headers (:func:`check_url_and_identity`)
    before any view, and writes every JSON answer strictly
    (:class:`StrictJSONProvider`, keeping the current provider's key
    order setting).
    """
    provider = StrictJSONProvider(app)
    provider.sort_keys = app.json.sort_keys  # type: ignore[attr-defined]
    app.json = provider
    app.before_request(check_url_and_identity)


# ------------------------------------------------------ v1 (Gnocchi) --


def v1_bad(message: str) -> errors.APIError:
    """A 400 error with Gnocchi's ``Invalid input`` prefix."""
    return errors.APIError(f"Invalid input: {message}", 400)


def v1_text_error(exc: jsontext.JSONTextError) -> errors.APIError:
    """Gnocchi's wording of a refused body."""
    if exc.path and exc.status != 413:
        return errors.APIError(
            f"Invalid input: {exc.path}: {exc.reason}", exc.status
        )
    return errors.APIError(
        f"Invalid input: the body is {exc.reason}", exc.status
    )


def v1_json_body(*, allow_empty: bool = False, measures: bool = False) -> Any:
    """Decode the request body as JSON or answer 400 (413 when too large).

    :param allow_empty: answer None for an empty body instead of a 400.
    :param measures: the body pushes measures (``[api]
        max_measures_body_size`` bounds it).
    """
    try:
        return read_json(
            body_limits(measures=measures),
            allow_empty=allow_empty,
            root="measures" if measures else "",
        )
    except jsontext.JSONTextError as exc:
        raise v1_text_error(exc) from None


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

    :raises api.errors.APIError: 415 for another media type, 413 for a
        body larger than ``[api] max_body_size``, 400 for malformed or
        refused JSON (an empty body included), naming the field.
    """
    request = flask.request
    if request.mimetype not in ("application/json", ""):
        raise errors.APIError(f"Unknown mimetype: {request.mimetype}", 415)
    try:
        return read_json(body_limits())
    except jsontext.JSONTextError as exc:
        raise v2_text_error(exc) from None


def v2_text_error(exc: jsontext.JSONTextError) -> errors.APIError:
    """Aodh's wording of a refused body (or of a JSON document in it)."""
    if exc.status == 413:
        return errors.APIError(
            f"Request entity too large: the body is {exc.reason}", 413
        )
    if exc.path:
        return v2_invalid(exc.path, exc.value, exc.reason)
    return errors.APIError(
        f"Request is not in valid JSON format: {exc.reason}"
    )


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
