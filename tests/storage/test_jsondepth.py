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
