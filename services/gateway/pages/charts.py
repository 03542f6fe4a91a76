"""Pictures for the export page, drawn on the server as inline SVG: no script, no CDN,
so the page works offline and prints as it looks."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from markupsafe import Markup

# Okabe and Ito's palette ("Color Universal Design", 2008), told apart with every
# common colour-vision deficiency; its yellow is darkened to a goldenrod that still
# reads on white.
PALETTE = (
    "#e69f00",  # orange
    "#56b4e9",  # sky blue
    "#009e73",  # bluish green
    "#b8a600",  # yellow, darkened
    "#0072b2",  # blue
    "#d55e00",  # vermillion
    "#cc79a7",  # reddish purple
    "#000000",  # black
)
# The emotions phones usually send keep one colour each, on every chart and page;
# any other label gets one from its name, the same wherever it appears.
EMOTION_COLOURS = {
    "happy": PALETTE[0],
    "calm": PALETTE[1],
    "excited": PALETTE[2],
    "neutral": PALETTE[7],
    "tired": PALETTE[3],
    "anxious": PALETTE[6],
    "sad": PALETTE[4],
    "angry": PALETTE[5],
}
WIDTH, HEIGHT = 640, 240
MARGIN = 36


def emotion_colour(name: str) -> str:
    """The colour of an emotion: fixed for the usual ones, else from its name alone
    (never from its position in a chart, which differs between charts)."""
    known = EMOTION_COLOURS.get(name)
    if known is not None:
        return known
    return PALETTE[zlib.crc32(name.encode("utf-8")) % len(PALETTE)]


def _svg(body: str, label: str, height: int = HEIGHT) -> Markup:
    # Every text from a record is passed through `escape` before it reaches `body`.
    return Markup(  # noqa: S704
        f'<svg viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>{body}</svg>'
    )


def emotion_distribution(emotions: Mapping[str, Mapping[str, Any]]) -> Markup | None:
    """Horizontal bars: how often each emotion was reported, with its mean intensity."""
    if not emotions:
        return None
    names = sorted(emotions, key=lambda e: -emotions[e]["count"])
    most = max(emotions[e]["count"] for e in names)
    row = 26
    height = row * len(names) + 12
    bars = []
    for i, name in enumerate(names):
        count, mean = emotions[name]["count"], emotions[name]["mean_intensity"]
        width = (WIDTH - 260) * count / most
        y = 6 + i * row
        bars.append(
            f'<text x="0" y="{y + 16}" font-size="13">{escape(name)}</text>'
            f'<rect x="110" y="{y + 3}" width="{width:.1f}" height="18" '
            f'data-emotion="{escape(name)}" fill="{emotion_colour(name)}">'
            f"<title>{count}</title></rect>"
            f'<text x="{116 + width:.1f}" y="{y + 16}" font-size="12">{count} '
            f"(mean {mean:.2f})</text>"
        )
    return _svg("".join(bars), "Emotions reported, with mean intensity", height)


def intensity_over_time(points: Iterable[Mapping[str, Any]]) -> Markup | None:
    """One line per emotion: the mean intensity per day."""
    points = list(points)
    if not points:
        return None
    days = sorted({p["day"] for p in points})
    names = sorted({p["emotion"] for p in points})
    span = max(len(days) - 1, 1)
    inner_w, inner_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN

    def x(day: str) -> float:
        return MARGIN + inner_w * days.index(day) / span

    def y(value: float) -> float:
        return HEIGHT - MARGIN - inner_h * value

    parts = [
        f'<line x1="{MARGIN}" y1="{y(0)}" x2="{WIDTH - MARGIN}" y2="{y(0)}" stroke="#999"/>',
        f'<line x1="{MARGIN}" y1="{y(0)}" x2="{MARGIN}" y2="{y(1)}" stroke="#999"/>',
        f'<text x="4" y="{y(1) + 4}" font-size="11">1</text>',
        f'<text x="4" y="{y(0) + 4}" font-size="11">0</text>',
        f'<text x="{MARGIN}" y="{HEIGHT - 8}" font-size="11">{escape(days[0])}</text>',
        f'<text x="{WIDTH - MARGIN}" y="{HEIGHT - 8}" font-size="11" text-anchor="end">'
        f"{escape(days[-1])}</text>",
    ]
    for i, name in enumerate(names):
        series = sorted((p for p in points if p["emotion"] == name), key=lambda p: p["day"])
        coordinates = " ".join(f"{x(p['day']):.1f},{y(p['mean_intensity']):.1f}" for p in series)
        shade = emotion_colour(name)
        parts.append(
            f'<polyline points="{coordinates}" data-emotion="{escape(name)}" fill="none" '
            f'stroke="{shade}" stroke-width="2"/>'
        )
        parts.extend(
            f'<circle cx="{x(p["day"]):.1f}" cy="{y(p["mean_intensity"]):.1f}" r="2.5" '
            f'fill="{shade}"><title>{escape(name)} {escape(p["day"])}: '
            f"{p['mean_intensity']:.2f} ({p['count']})</title></circle>"
            for p in series
        )
        parts.append(
            f'<text x="{MARGIN + 8 + 90 * (i % 6)}" y="{14 + 14 * (i // 6)}" font-size="12" '
            f'fill="{shade}">&#9632; {escape(name)}</text>'
        )
    return _svg("".join(parts), "Mean intensity per day, by emotion")


def gps_track(fixes: Sequence[Mapping[str, Any]], size: int = 220) -> Markup | None:
    """A participant's fixes in time order as a line, scaled to fit (equirectangular,
    longitudes shrunk by the cosine of the latitude so shapes keep their proportions)."""
    if not fixes:
        return None
    lats = [f["latitude"] for f in fixes]
    lons = [f["longitude"] for f in fixes]
    shrink = math.cos(math.radians(sum(lats) / len(lats)))
    xs = [lon * shrink for lon in lons]
    span = max(max(xs) - min(xs), max(lats) - min(lats), 1e-6)
    pad = 10
    scale = (size - 2 * pad) / span

    def point(lon_x: float, lat: float) -> tuple[float, float]:
        return pad + (lon_x - min(xs)) * scale, size - pad - (lat - min(lats)) * scale

    path = " ".join(
        "{:.1f},{:.1f}".format(*point(px, lat)) for px, lat in zip(xs, lats, strict=True)
    )
    start, end = point(xs[0], lats[0]), point(xs[-1], lats[-1])
    body = (
        f'<rect width="{size}" height="{size}" fill="#f8f9fa"/>'
        f'<polyline points="{path}" fill="none" stroke="#0b57d0" stroke-width="1.5"/>'
        f'<circle cx="{start[0]:.1f}" cy="{start[1]:.1f}" r="4" fill="#188038">'
        "<title>first fix</title></circle>"
        f'<circle cx="{end[0]:.1f}" cy="{end[1]:.1f}" r="4" fill="#d93025">'
        "<title>last fix</title></circle>"
    )
    return Markup(  # noqa: S704 - numbers only; no text from records
        f'<svg viewBox="0 0 {size} {size}" width="{size}" height="{size}" role="img" '
        f'aria-label="GPS track, {len(fixes)} fixes" xmlns="http://www.w3.org/2000/svg">'
        f"<title>GPS track, {len(fixes)} fixes</title>{body}</svg>"
    )
