"""The strict, bounded JSON reader and writer (alarmer.jsontext)."""

from __future__ import annotations

import json
import math

import pytest

from alarmer import jsontext


def refused(text: str | bytes, **kwargs) -> jsontext.JSONTextError:
    kwargs.setdefault("max_depth", 32)
    with pytest.raises(jsontext.JSONTextError) as excinfo:
        jsontext.loads(text, **kwargs)
    return excinfo.value


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        ('{"a": [1, {"b": NaN}]}', "a[1].b", "NaN is not a JSON number"),
        ('{"a": Infinity}', "a", "Infinity is not a JSON number"),
        ("[-Infinity]", "[0]", "-Infinity is not a JSON number"),
        ('{"a": 1e999}', "a", "out of range"),
        ('{"a": -1.5E+400}', "a", "out of range"),
        ('{"a": ' + "9" * 401 + "}", "a", "out of range"),
        ('{"a": ' + "9" * 400 + ".5}", "a", "out of range"),
        ('{"name": "\\ud800"}', "name", "lone UTF-16 surrogates"),
        ('{"name": "x\\uDFFF"}', "name", "lone UTF-16 surrogates"),
        ('{"q": ["a", "b\\u0000"]}', "q[1]", "NUL characters"),
        ('{"k\\u0000": 1}', "", "key 'k\\x00': NUL characters"),
    ],
)
def test_refused_values_name_their_position(text, path, reason):
    error = refused(text)
    assert error.path == path
    assert reason in error.reason
    assert error.status == 400


def test_accepted_documents():
    assert jsontext.loads('{"a": 1e308}', max_depth=2) == {"a": 1e308}
    assert jsontext.loads('"\\ud83d\\ude00"', max_depth=1) == "\U0001f600"
    assert jsontext.loads('"\\\\u0000"', max_depth=1) == "\\u0000"
    assert jsontext.loads(b'[["[", "]]]]"]]', max_depth=2) == [["[", "]]]]"]]
    text = '["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]'
    assert jsontext.loads(text, max_depth=1)[0].startswith('"[')
    uuid = "5f8de123-2f44-4d0a-9e99-2f2f4b7fb001"
    assert jsontext.loads(json.dumps({uuid: 1e100}), max_depth=1)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 33 + "]" * 33,
        '{"a":' * 33 + "1" + "}" * 33,
        "[" * 5000,
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_depth_is_bounded_before_parsing(text):
    error = refused(text)
    assert error.reason == "nested deeper than 32 levels"
    assert jsontext.loads("[" * 32 + "]" * 32, max_depth=32)


def test_size_encoding_and_syntax():
    assert refused(b"x" * 11, max_size=10).status == 413
    assert "not valid UTF-8" in refused(b'"\xff"').reason
    assert "not valid JSON" in refused("{'a': 1}").reason
    assert "lone UTF-16" in refused('{"a": "\ud800"}').reason
    assert refused('"\\u0000"', root="body").path == "body"


def test_depth_of_text_with_escapes_and_strings():
    assert not jsontext.depth_exceeds(b'["[[[[", "\\"[[[["]', 1)
    assert jsontext.depth_exceeds(b'[["\\\\"]]', 1)
    assert not jsontext.depth_exceeds(b"[[[", 2)  # unbalanced: the parser's


def test_dumps_is_strict():
    text = jsontext.dumps(
        {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": "x"}
    )
    assert json.loads(text, parse_constant=pytest.fail) == {
        "a": None,
        "b": [None, None, 1.5],
        "c": "x",
    }
    assert jsontext.dumps([1, "\u00e9"]) == '[1, "\\u00e9"]'


def test_shown_values_are_short_and_printable():
    assert jsontext.shown("a\x00b\ud800") == "a\\x00b\\ud800"
    assert len(jsontext.shown("x" * 1000)) == 40


# -- the orjson fast path and the strict path agree -------------------------

HOSTILE = [
    '{"a": [1, {"b": NaN}]}',
    '{"a": Infinity}',
    "[-Infinity]",
    '{"a": 1e999}',
    '{"a": -1.5E+400}',
    '{"a": ' + "9" * 401 + "}",
    '{"a": ' + "9" * 400 + ".5}",
    '{"name": "\\ud800"}',
    '{"name": "x\\uDFFF"}',
    '{"q": ["a", "b\\u0000"]}',
    '{"k\\u0000": 1}',
    '{"a": 1,}',
    "[1] [2]",
    "\ufeff[1]",
    '{"a": "\\x"}',
    '{"a": 01}',
    '["tab\tinside"]',
]


def strict_outcome(text: str | bytes) -> tuple[str, str, int] | object:
    raw = (
        text.encode("utf-8", "surrogatepass")
        if isinstance(text, str)
        else text
    )
    check = isinstance(text, str) and (
        "\x00" in text or jsontext._SURROGATE.search(text) is not None
    )
    try:
        return jsontext._strict_loads(text, raw, check, 32, "measures")
    except jsontext.JSONTextError as exc:
        return (exc.path, exc.reason, exc.status)


@pytest.mark.parametrize("text", HOSTILE)
@pytest.mark.parametrize("as_bytes", [False, True])
def test_fast_path_refuses_what_the_strict_path_refuses(text, as_bytes):
    data = text.encode("utf-8") if as_bytes else text
    error = refused(data, root="measures")
    assert (error.path, error.reason, error.status) == strict_outcome(data)
    assert error.path.startswith("measures")


def test_invalid_utf8_is_refused_with_its_offset():
    error = refused(b'[{"value": "\xff"}]', root="measures")
    assert error.path == "measures"
    assert error.reason == "not valid UTF-8 at byte 12"


@pytest.mark.parametrize(
    "text",
    [
        '[{"timestamp": "2026-01-01T00:00:00Z", "value": 1.5}]',
        '{"a": 123456789012345678901234567890}',
        '{"a": -9223372036854775809, "b": 18446744073709551616}',
        '{"a": 1e308, "b": -0, "c": 0.1, "d": [true, false, null]}',
        '{"a": 1, "a": 2}',
        '{"e": "\\ud83d\\ude00", "f": "caf\\u00e9"}',
    ],
)
def test_fast_path_decodes_as_json_does(text):
    for data in (text, text.encode("utf-8")):
        got = jsontext.loads(data, max_depth=32)
        assert got == json.loads(text)
        assert json.dumps(got) == json.dumps(json.loads(text))


def test_long_integers_stay_exact():
    got = jsontext.loads('{"a": ' + "7" * 300 + "}", max_depth=4)
    assert got == {"a": int("7" * 300)}
    assert isinstance(got["a"], int)
