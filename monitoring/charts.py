"""Charts as inline SVG, drawn on the server from the data.

No JavaScript and nothing from a CDN: the page works offline, prints, passes a strict
Content-Security-Policy, and a test can read the plotted numbers back from the markup. The
charts are simple on purpose: lines over time, and bars.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#1f6feb", "#d97706", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#4b5563")
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 58, 14, 14, 26
LEGEND_ROW = 18


@dataclass(frozen=True)
class Series:
    """One line: (time, value) points; a None value breaks the line (no data there)."""

    label: str
    points: Sequence[tuple[datetime.datetime, float | None]]
    color: str = ""
    dashed: bool = False


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^n at or above `value`, for a readable axis top."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        candidate = step * 10**exponent
        if candidate >= value * 0.999999:
            return candidate
    return 10.0 ** (exponent + 1)


def format_number(value: float) -> str:
    """Short axis labels: 0, 0.5, 12, 250, 1.5k, 2M."""
    magnitude = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    if magnitude == 0 or magnitude >= 10:
        return f"{value:.0f}"
    return f"{value:.2g}"


def _time_label(moment: datetime.datetime, span: datetime.timedelta) -> str:
    local = timezone.localtime(moment)
    return f"{local:%H:%M}" if span <= datetime.timedelta(days=1) else f"{local:%a %H:%M}"


def _frame(title: str, width: int, height: int, body: list[str]) -> SafeString:
    slug = "chart-" + "".join(c if c.isalnum() else "-" for c in title.lower())[:40]
    return mark_safe(  # noqa: S308 - every text in `body` is escaped where it is made
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-labelledby="{slug}" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet">'
        f'<title id="{slug}">{escape(title)}</title>' + "".join(body) + "</svg>"
    )


def _y_axis(body: list[str], top: float, plot_w: int, plot_h: int, unit: str) -> None:
    for i in range(5):
        value = top * i / 4
        y = MARGIN_TOP + plot_h - plot_h * i / 4
        body.append(
            f'<line class="grid" x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" '
            f'y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#4b5563">{escape(format_number(value))}{escape(unit) if i == 4 else ""}</text>'
        )


def line_chart(
    *,
    title: str,
    series: Sequence[Series],
    start: datetime.datetime,
    end: datetime.datetime,
    unit: str = "",
    width: int = 760,
    height: int = 240,
) -> SafeString:
    """Lines over the time range [start, end]; the y axis starts at 0."""
    labelled = [s for s in series if s.points]
    legend_h = LEGEND_ROW * math.ceil(len(labelled) / 3) if labelled else 0
    total_h = height + legend_h
    plot_w = width - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = height - MARGIN_TOP - MARGIN_BOTTOM
    values = [v for s in labelled for _, v in s.points if v is not None]
    top = nice_ceiling(max(values, default=0.0))
    span = max(end - start, datetime.timedelta(seconds=1))
    body: list[str] = []
    _y_axis(body, top, plot_w, plot_h, unit)

    for i in range(6):  # x ticks
        moment = start + span * i / 5
        x = MARGIN_LEFT + plot_w * i / 5
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        body.append(
            f'<text x="{x:.1f}" y="{height - 8}" text-anchor="{anchor}" font-size="11" '
            f'fill="#4b5563">{escape(_time_label(moment, span))}</text>'
        )

    def xy(moment: datetime.datetime, value: float) -> str:
        x = MARGIN_LEFT + plot_w * ((moment - start) / span)
        y = MARGIN_TOP + plot_h - plot_h * (value / top)
        return f"{x:.1f},{y:.1f}"

    for index, line in enumerate(labelled):
        color = line.color or PALETTE[index % len(PALETTE)]
        dash = ' stroke-dasharray="5 4"' if line.dashed else ""
        segment: list[str] = []
        segments: list[list[str]] = []
        for moment, value in line.points:
            if value is None:
                if segment:
                    segments.append(segment)
                segment = []
            else:
                segment.append(xy(moment, value))
        if segment:
            segments.append(segment)
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                body.append(
                    f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}" '
                    f'data-series="{escape(line.label)}"/>'
                )
            else:
                body.append(
                    f'<polyline fill="none" stroke="{color}" stroke-width="1.8"{dash} '
                    f'data-series="{escape(line.label)}" points="{" ".join(seg)}"/>'
                )
        row, col = divmod(index, 3)
        lx = MARGIN_LEFT + col * (plot_w / 3)
        ly = height + row * LEGEND_ROW + 6
        body.append(
            f'<line x1="{lx:.1f}" x2="{lx + 18:.1f}" y1="{ly:.1f}" y2="{ly:.1f}" '
            f'stroke="{color}" stroke-width="2"{dash}/>'
            f'<text x="{lx + 24:.1f}" y="{ly + 4:.1f}" font-size="11" fill="#111827">'
            f"{escape(line.label[:48])}</text>"
        )
    body.append(
        f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}" '
        f'fill="none" stroke="#9ca3af"/>'
    )
    return _frame(title, width, total_h, body)


def bar_chart(
    *,
    title: str,
    bars: Sequence[tuple[str, float]],
    unit: str = "",
    width: int = 760,
    height: int = 220,
    color: str = PALETTE[0],
) -> SafeString:
    """One bar per (label, value), left to right; labels thinned out when they would crowd."""
    plot_w = width - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = height - MARGIN_TOP - MARGIN_BOTTOM
    top = nice_ceiling(max((v for _, v in bars), default=0.0))
    body: list[str] = []
    _y_axis(body, top, plot_w, plot_h, unit)
    slot = plot_w / max(len(bars), 1)
    every = max(1, math.ceil(len(bars) / 8))
    for index, (label, value) in enumerate(bars):
        bar_h = plot_h * (max(value, 0.0) / top)
        x = MARGIN_LEFT + slot * index + slot * 0.15
        y = MARGIN_TOP + plot_h - bar_h
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{bar_h:.1f}" fill="{color}" data-value="{value:g}">'
            f"<title>{escape(label)}: {escape(format_number(value))}{escape(unit)}</title></rect>"
        )
        if index % every == 0:
            body.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{height - 8}" text-anchor="middle" '
                f'font-size="11" fill="#4b5563">{escape(label)}</text>'
            )
    body.append(
        f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}" '
        f'fill="none" stroke="#9ca3af"/>'
    )
    return _frame(title, width, height, body)
