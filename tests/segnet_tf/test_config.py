"""Option values parsed once: sizes."""

from __future__ import annotations

import pytest

from segnet_tf.config import parse_size


def test_parse_size_reads_height_by_width():
    assert parse_size("360x480") == (360, 480)
    assert parse_size("45X61") == (45, 61)
    assert parse_size(" 16 x 16") == (16, 16)  # any 4-pool size: the model says what fits


@pytest.mark.parametrize("text", ["360", "0x480", "-8x16", "1e3x16", "16x16x3", "axb", "x", ""])
def test_parse_size_refuses_what_is_not_two_positive_integers(text):
    with pytest.raises(ValueError, match=f"{text!r}: expected HEIGHTxWIDTH with positive integers"):
        parse_size(text)
