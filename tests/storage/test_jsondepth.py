"""storage.jsondepth: the depth check that runs before every JSON parse of outside text."""

from __future__ import annotations


def test_a_string_left_open_is_scanned_once_not_from_each_quote_inside_it():
    """``{"a": "`` then escaped quotes, never closed: the search retried from each quote inside the string,
    each try running to the end (80 KB took 26 s; a web write's body was checked on the event loop)."""
    import time

    from storage import jsondepth

    started = time.monotonic()
    for tail in (b"", b"\\"):
        assert jsondepth.text_depth(b'{"a": "' + b'\\"' * 100_000 + tail) == 1
    assert time.monotonic() - started < 5  # (quadratic: minutes)
    assert jsondepth.text_depth(b'[[["a]]]\\"]"]]]') == 3  # (a closed string still hides its brackets)


def test_json_in_utf16_or_utf32_is_checked_as_json_loads_reads_it():
    """``json.loads`` reads bytes in UTF-16 and UTF-32: an escaped quote's 00 byte made the patterns end a
    string early and a later quote open one to the end, hiding 5,000 levels (then RecursionError)."""
    import pytest

    from storage import jsondepth
    from storage.errors import JSONDepthError

    deep = '["\\"", ' + "[" * 5000 + "]" * 5000 + "]"
    for encoding in ("utf-8", "utf-16-le", "utf-16-be", "utf-16", "utf-32-le", "utf-32"):
        assert jsondepth.text_depth(deep.encode(encoding)) == 5001, encoding
        with pytest.raises(JSONDepthError):
            jsondepth.loads(deep.encode(encoding), "a test document")
    assert jsondepth.loads('{"a": ["\\"[["]}'.encode("utf-16"), "x") == {"a": ['"[[']}
