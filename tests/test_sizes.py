"""Memory sizes: parsing what users type, printing what people read."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tingxie.errors import OptionError
from tingxie.memory.sizes import format_bytes, parse_memory_budget

GiB = 1024**3
FREE = 8 * GiB


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6GiB", 6 * GiB),
        ("6 gib", 6 * GiB),
        ("800MB", 800_000_000),
        ("512M", 512 * 1024**2),
        ("1.5G", 3 * GiB // 2),
        ("64k", 64 * 1024),
        ("10kB", 10_000),
        ("2T", 2 * 1024**4),
        ("100B", 100),
        ("2000000000", 2_000_000_000),
        ("2e9", 2_000_000_000),
        ("123456789012345678901", 123456789012345678901),  # exact, not via float
        ("0.5", FREE // 2),
        ("1", FREE),
        (".25", FREE // 4),
        ("50%", FREE // 2),
        ("12.5 %", FREE // 8),
        ("100%", FREE),
    ],
)
def test_parse(text, expected):
    assert parse_memory_budget(text, FREE) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must be a size such as"),
        ("lots", "must be a size such as"),
        ("GiB", "must be a size such as"),
        ("6 XB", "unknown unit 'XB'"),
        ("1.5", "add a unit"),
        ("0", "must be positive"),
        ("-2G", "must be positive"),
        ("0%", "must be positive"),
        ("150%", "more than all of the free memory"),
        ("0.1B", "at least one byte"),
        ("nan", "must be a size such as"),
        ("inf", "must be a size such as"),
    ],
)
def test_parse_rejects(text, message):
    with pytest.raises(OptionError, match=message):
        parse_memory_budget(text, FREE)


def test_a_share_of_no_free_memory_is_an_error():
    with pytest.raises(OptionError, match="no memory at all"):
        parse_memory_budget("50%", 0)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536 * 1024**2, "1.5 GiB"),
        (int(412.3 * 1024**2), "412.3 MiB"),
        (1024**2 - 1, "1.0 MiB"),  # not '1024.0 KiB'
        (-2048, "-2.0 KiB"),
    ],
)
def test_format_bytes(n, text):
    assert format_bytes(n) == text


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2**60))
def test_formatted_sizes_parse_back_close(n):
    text = format_bytes(n)
    assert parse_memory_budget(text.replace(" ", ""), FREE) == pytest.approx(n, rel=0.05)
