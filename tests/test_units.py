"""The one formatting helper: sizes, factors, durations, ratios and intervals as a person reads them."""

from __future__ import annotations

import math

import pytest

from scaling.units import format_duration, format_factor, format_interval, format_mfu, format_ratio


@pytest.mark.parametrize("x, text", [(1834.2, "1.8e+03x"), (12.5, "12.5x"), (3.0, "3x"),
                                     (10 ** 190, "1e+190x"), (math.inf, "an unbounded factor")])
def test_factors_are_short_however_large(x, text):
    assert format_factor(x) == text


@pytest.mark.parametrize("lo, hi, text", [
    (3.6812, math.inf, "[3.681, unbounded)"),
    (3.6812, None, "[3.681, unbounded)"),  # a law file stores an infinite bound as null
    (-math.inf, 4.2, "(unbounded, 4.2]"),
    (1.0, 2.5, "[1, 2.5]"),
])
def test_intervals_show_an_unbounded_side_as_open(lo, hi, text):
    assert format_interval(lo, hi) == text


def test_interval_precision_is_the_callers():
    assert format_interval(6.03401, 6.57883, ".4f") == "[6.0340, 6.5788]"


@pytest.mark.parametrize("seconds, text", [(0.019, "19 ms"), (4.21, "4.21 s"), (63, "1.05 min"),
                                           (0.00032 * 60, "19.2 ms"), (2 * 3600, "2 h"), (72 * 3600, "3.0 days"),
                                           (math.nan, "unknown")])
def test_durations_pick_their_unit(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("x, text", [(0.0, "< 0.1"), (0.04, "< 0.1"), (0.1, "0.1"), (20.04, "20.0"),
                                     (123456.0, "123,456")])
def test_ratios_below_a_tenth_say_so(x, text):
    assert format_ratio(x) == text


@pytest.mark.parametrize("x, text", [(0.4, "0.40"), (0.123, "0.12"), (1.0, "1.0"), (0.00234, "0.0023")])
def test_a_small_mfu_keeps_its_digits(x, text):
    # An AMX Xeon's bf16 peak put a tiny model's measured MFU at 0.002, which '.2f' printed as 0.00.
    assert format_mfu(x) == text and float(format_mfu(x)) > 0
