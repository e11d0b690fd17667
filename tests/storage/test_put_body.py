"""An S3 PUT's body reads the object's buffers in place, as the one stream botocore and aiohttp expect."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.filesystems import PutBody


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), max_size=6), chunk=st.integers(1, 50), start=st.integers(0, 300))
def test_reading_in_chunks_from_anywhere_gives_the_bytes_joined(sizes, chunk, start):
    rng = np.random.default_rng(len(sizes) * 1000 + chunk)
    buffers = [rng.integers(0, 256, n, dtype=np.uint8) for n in sizes]
    buffers = [b if i % 2 else memoryview(b.tobytes()) for i, b in enumerate(buffers)]  # arrays and bytes
    whole = b"".join(bytes(b) for b in buffers)
    body = PutBody(buffers)
    assert body.seek(0, io.SEEK_END) == len(whole) and body.tell() == len(whole)  # botocore's content length
    with body.getbuffer() as buf:  # aiohttp's
        assert len(buf) == len(whole)
    body.seek(start)
    read = []
    while chunk_read := body.read(chunk):
        assert len(chunk_read) <= chunk
        read.append(bytes(chunk_read))
    assert b"".join(read) == whole[start:]
    assert body.read(chunk) == b"" and body.tell() == max(start, len(whole))
    body.seek(0)
    assert bytes(body.read()) == whole and body.getvalue() == whole


def test_a_chunk_inside_one_buffer_is_a_view_of_it_not_a_copy():
    data = bytearray(b"x" * 100)
    body = PutBody([b"head", data])
    body.seek(10)
    chunk = body.read(20)
    data[6:30] = b"y" * 24  # (a real body's buffers never change while it is sent: this shows where it reads)
    assert bytes(chunk) == b"y" * 20


def test_it_cannot_be_written_or_read_past_its_start():
    body = PutBody([b"abc"])
    with pytest.raises(io.UnsupportedOperation):
        body.write(b"d")
    with pytest.raises(ValueError, match="negative seek"):
        body.seek(-1)
    buf = bytearray(5)
    assert body.readinto(buf) == 3 and buf[:3] == b"abc"


def test_lines_are_refused_rather_than_read_from_an_empty_buffer():
    body = PutBody([b"a\nb\n"])
    for read_lines in (body.readline, body.readlines, lambda: next(iter(body))):
        with pytest.raises(io.UnsupportedOperation):
            read_lines()
