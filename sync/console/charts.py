"""The console's charts as inline SVG. Pure: numbers in, markup out, nothing loaded from
anywhere. Every text is escaped; colours come from classes in console.css, so the page's
Content-Security-Policy can forbid inline styles. Each bar carries a <title>, which browsers
show on hover without any script.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True, slots=True)
class Series:
    """One kind of value stacked in every column, drawn with the CSS class ``css``."""

    name: str
    css: str


@dataclass(frozen=True, slots=True)
class Column:
    label: str
    values: tuple[float, ...]  # one per series, bottom first


@dataclass(frozen=True, slots=True)
class Reference:
    """A horizontal line across the chart at ``value`` (a limit, say)."""

    value: float
    label: str


_PAD_LEFT, _PAD_RIGHT, _PAD_TOP, _PAD_BOTTOM = 48, 8, 18, 34


def stacked_bars(
    title: str,
    columns: Sequence[Column],
    series: Sequence[Series],
    *,
    reference: Reference | None = None,
    divider_after: int | None = None,
    unit: str = "",
    width: int = 640,
    height: int = 220,
    label_every: int = 1,
) -> Markup:
    """A vertical bar chart, the series stacked in each column. ``divider_after`` draws a
    dashed line after that column (the freshness bound, say); ``label_every`` labels only
    every n-th column when there are many."""
    for column in columns:
        if len(column.values) != len(series):
            raise ValueError(
                f"column {column.label!r} has {len(column.values)} values for {len(series)} series"
            )
    plot_w = width - _PAD_LEFT - _PAD_RIGHT
    plot_h = height - _PAD_TOP - _PAD_BOTTOM
    top = max([sum(c.values) for c in columns] + [reference.value if reference else 0.0, 0.0])
    scale_top = nice_ceiling(top)
    slot = plot_w / max(len(columns), 1)
    bar_w = max(slot * 0.8, 1.0)
    parts = [_open(title, width, height)]
    parts.append(_axis(scale_top, plot_w, plot_h, unit))
    for index, column in enumerate(columns):
        x = _PAD_LEFT + index * slot + (slot - bar_w) / 2
        base = float(_PAD_TOP + plot_h)
        for value, one in zip(column.values, series, strict=True):
            if value <= 0:
                continue
            h = value / scale_top * plot_h
            base -= h
            tip = f"{column.label}: {format_number(value)}{unit} {one.name}"
            parts.append(
                f'<rect class="bar {escape(one.css)}" x="{x:.1f}" y="{base:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}"><title>{escape(tip)}</title></rect>'
            )
        if index % max(label_every, 1) == 0:
            parts.append(
                f'<text class="tick" x="{x + bar_w / 2:.1f}" y="{height - _PAD_BOTTOM + 14}" '
                f'text-anchor="middle">{escape(column.label)}</text>'
            )
    if divider_after is not None and 0 <= divider_after < len(columns):
        x = _PAD_LEFT + (divider_after + 1) * slot
        parts.append(
            f'<line class="divider" x1="{x:.1f}" y1="{_PAD_TOP - 6}" x2="{x:.1f}" '
            f'y2="{_PAD_TOP + plot_h}"/>'
        )
    if reference is not None:
        y = _PAD_TOP + plot_h - reference.value / scale_top * plot_h
        parts.append(
            f'<line class="reference" x1="{_PAD_LEFT}" y1="{y:.1f}" '
            f'x2="{_PAD_LEFT + plot_w}" y2="{y:.1f}"><title>{escape(reference.label)}</title>'
            f'</line><text class="reference-label" x="{_PAD_LEFT + plot_w}" y="{y - 4:.1f}" '
            f'text-anchor="end">{escape(reference.label)}</text>'
        )
    parts.append(_legend(series, height))
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- every outside text above went through escape()


def horizontal_bars(
    title: str, items: Sequence[tuple[str, float, str]], *, width: int = 640, row: int = 24
) -> Markup:
    """One bar per (label, value, css class), longest value widest, the value written after."""
    label_w, value_w = 120, 80
    height = row * len(items) + 8
    top = max([value for _, value, _ in items] + [0.0])
    plot_w = width - label_w - value_w
    parts = [_open(title, width, height)]
    for index, (label, value, css) in enumerate(items):
        y = 4 + index * row
        w = value / top * plot_w if top > 0 else 0.0
        parts.append(
            f'<text class="label" x="{label_w - 6}" y="{y + row * 0.65:.1f}" '
            f'text-anchor="end">{escape(label)}</text>'
            f'<rect class="bar {escape(css)}" x="{label_w}" y="{y + 3}" width="{w:.1f}" '
            f'height="{row - 6}"><title>{escape(label)}: {escape(format_number(value))}</title>'
            f'</rect><text class="value" x="{label_w + w + 6:.1f}" y="{y + row * 0.65:.1f}">'
            f"{escape(format_number(value))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- every outside text above went through escape()


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least ``value`` (1 for
    nothing), so the axis reads in round numbers."""
    if value <= 0:
        return 1.0
    power = 10.0 ** _floor_log10(value)
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10.0 * power


def _floor_log10(value: float) -> int:
    exponent = 0
    while value >= 10:
        value /= 10
        exponent += 1
    while value < 1:
        value *= 10
        exponent -= 1
    return exponent


def format_number(value: float) -> str:
    """``1,234`` for whole numbers, ``0.37`` below ten, ``12.5`` otherwise."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:,.1f}"


def _open(title: str, width: int, height: int) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    )


def _axis(scale_top: float, plot_w: float, plot_h: float, unit: str) -> str:
    parts = []
    for fraction in (0.0, 0.5, 1.0):
        y = _PAD_TOP + plot_h - fraction * plot_h
        parts.append(
            f'<line class="grid" x1="{_PAD_LEFT}" y1="{y:.1f}" x2="{_PAD_LEFT + plot_w:.1f}" '
            f'y2="{y:.1f}"/><text class="axis" x="{_PAD_LEFT - 4}" y="{y + 4:.1f}" '
            f'text-anchor="end">{escape(format_number(scale_top * fraction))}{escape(unit)}</text>'
        )
    return "".join(parts)


def _legend(series: Sequence[Series], height: int) -> str:
    parts = []
    x = _PAD_LEFT
    for one in series:
        parts.append(
            f'<rect class="swatch {escape(one.css)}" x="{x}" y="{height - 12}" width="10" '
            f'height="10"/><text class="legend" x="{x + 14}" y="{height - 3}">'
            f"{escape(one.name)}</text>"
        )
        x += 24 + 7 * len(one.name)
    return "".join(parts)
