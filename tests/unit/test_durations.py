"""Human durations: 90, 90s, 15m, 2h, 1d, 1h30m, 500ms."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.domain.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1d2h3m4s", 86400 + 7200 + 180 + 4),
        ("1.5h", 5400.0),
        ("0.5s", 0.5),
        ("0", 0.0),
        ("0s", 0.0),
        ("2.5", 2.5),
        (" 15m ", 900.0),
        ("1h 30m", 5400.0),
        ("15M", 900.0),
        ("2H", 7200.0),
        ("500MS", 0.5),
        ("1s500ms", 1.5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(("value", "seconds"), [(90, 90.0), (1.5, 1.5), (0, 0.0)])
def test_numbers_are_seconds(value: float, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_ms_is_not_minutes() -> None:
    assert parse_duration("5ms") == pytest.approx(0.005)
    assert parse_duration("5m") == 300.0


@pytest.mark.parametrize(
    "text",
    ["abc", "1x", "m", "15 minutes", "h1", "30m1", "1m-1s", "1ms30", "1..5s", "s", "1,5m"],
)
def test_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration") as caught:
        parse_duration(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize("text", ["", "   "])
def test_empty(text: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        parse_duration(text)


@pytest.mark.parametrize(
    "value", ["-1", "-5m", "nan", "inf", "-inf", "1e400", -1, float("nan"), float("inf")]
)
def test_negative_or_non_finite(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_bool_is_not_a_number() -> None:
    with pytest.raises(ValueError):
        parse_duration(True)


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.integers(0, 1000),
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 999),
)
def test_property_compound_durations_add_up(h: int, m: int, s: int, ms: int) -> None:
    text = f"{h}h{m}m{s}s{ms}ms"
    assert parse_duration(text) == pytest.approx(h * 3600 + m * 60 + s + ms / 1000)


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=12))
def test_property_any_text_is_a_finite_duration_or_a_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert math.isfinite(seconds)
    assert seconds >= 0
