"""Small server-side SVG charts: bars, lines, histograms (no JavaScript, no CDN; presentation
attributes only, so the Content-Security-Policy's style rules are not involved)."""

from django.utils.html import escape
from django.utils.safestring import mark_safe

COLOURS = ["#2f5fd0", "#1b7f4b", "#b36b00", "#8e44ad", "#b3261e", "#16838f", "#5b6474"]


def bar_chart(title: str, items: list[tuple[str, float]], *, value_format: str = "{:g}", width: int = 460,
              max_value: float | None = None, bar_height: int = 22) -> str:
    """Horizontal bars, one per (label, value)."""
    label_width, gap, top = 170, 6, 28
    height = top + len(items) * (bar_height + gap) + 8
    peak = max_value if max_value is not None else max([v for _, v in items] + [0]) or 1
    span = width - label_width - 70
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" aria-label="{escape(title)}">',
             f'<text x="0" y="16" font-size="14" font-weight="600" fill="#1d2330">{escape(title)}</text>']
    for index, (label, value) in enumerate(items):
        y = top + index * (bar_height + gap)
        length = max(0.0, span * (value / peak)) if peak else 0.0
        colour = COLOURS[index % len(COLOURS)]
        parts.append(f'<text x="{label_width - 6}" y="{y + bar_height * 0.7:.1f}" font-size="12" '
                     f'text-anchor="end" fill="#1d2330">{escape(str(label)[:28])}</text>')
        parts.append(f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}" rx="3" '
                     f'fill="{colour}"><title>{escape(str(label))}: '
                     f'{escape(value_format.format(value))}</title></rect>')
        parts.append(f'<text x="{label_width + length + 6:.1f}" y="{y + bar_height * 0.7:.1f}" font-size="12" '
                     f'fill="#5b6474">{escape(value_format.format(value))}</text>')
    if not items:
        parts.append(f'<text x="0" y="{top + 14}" font-size="12" fill="#5b6474">no data</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 — every text in it is escaped above


def _svg_open(title: str, width: int, height: int) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" aria-label="{escape(title)}">',
            f'<text x="0" y="16" font-size="14" font-weight="600" fill="#1d2330">{escape(title)}</text>']


def _axes(parts: list[str], *, left: int, top: int, right: int, bottom: int, x_range, y_range, y_format: str,
          x_label: str) -> None:
    (x0, x1), (y0, y1) = x_range, y_range
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#b8bfcc"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#b8bfcc"/>')
    for value, y in ((y1, top), (y0, bottom)):
        parts.append(f'<text x="{left - 4}" y="{y + 4}" font-size="11" text-anchor="end" fill="#5b6474">'
                     f'{escape(y_format.format(value))}</text>')
    parts.append(f'<text x="{left}" y="{bottom + 14}" font-size="11" fill="#5b6474">{escape(f"{x0:g}")}</text>')
    parts.append(f'<text x="{right}" y="{bottom + 14}" font-size="11" text-anchor="end" fill="#5b6474">'
                 f'{escape(f"{x1:g}")} {escape(x_label)}</text>')


def line_chart(title: str, points: list[tuple[float, float]], *, x_label: str = "step", y_format: str = "{:.3g}",
               width: int = 460, height: int = 200, colour: str = COLOURS[0]) -> str:
    """One series as a polyline, e.g. a training curve (x: step)."""
    return lines_chart(title, {title: points}, x_label=x_label, y_format=y_format, width=width, height=height,
                       colours=[colour], legend=False)


def lines_chart(title: str, series: dict[str, list[tuple[float, float]]], *, x_label: str = "step",
                y_format: str = "{:.3g}", width: int = 460, height: int = 200, colours: list[str] = COLOURS,
                legend: bool = True) -> str:
    """Several series on one pair of axes, each a polyline with its label in a legend below."""
    parts = _svg_open(title, width, height)
    left, top, right, bottom = 56, 28, width - 10, height - (36 if legend else 22)
    finite = {label: [(x, y) for x, y in points if y == y and abs(y) != float("inf")]
              for label, points in series.items()}
    finite = {label: points for label, points in finite.items() if points}
    if not finite:
        parts.append(f'<text x="{left}" y="{top + 20}" font-size="12" fill="#5b6474">no data yet</text></svg>')
        return mark_safe("".join(parts))  # noqa: S308 — escaped
    xs = [x for points in finite.values() for x, _ in points]
    ys = [y for points in finite.values() for _, y in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    _axes(parts, left=left, top=top, right=right, bottom=bottom, x_range=(x0, x1), y_range=(y0, y1),
          y_format=y_format, x_label=x_label)

    def at(x, y):
        return (left + (right - left) * (x - x0) / (x1 - x0), bottom - (bottom - top) * (y - y0) / (y1 - y0))

    for index, (label, points) in enumerate(finite.items()):
        colour = colours[index % len(colours)]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in (at(x, y) for x, y in points))
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        last_x, last_y = points[-1]
        px, py = at(last_x, last_y)
        parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}"><title>{escape(label)} at '
                     f'{last_x:g}: {escape(y_format.format(last_y))}</title></circle>')
        if legend:
            parts.append(f'<rect x="{left + index * 110}" y="{height - 12}" width="10" height="10" '
                         f'fill="{colour}"/><text x="{left + index * 110 + 14}" y="{height - 3}" font-size="11" '
                         f'fill="#1d2330">{escape(label)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 — every text in it is escaped above


def histogram_chart(title: str, histograms: dict[str, dict], *, width: int = 460, height: int = 200) -> str:
    """Overlaid histograms on one axis ({label: {"edges": [...], "counts": [...]}}), e.g. the reward
    model's scores of chosen and rejected responses."""
    parts = _svg_open(title, width, height)
    left, top, right, bottom = 56, 28, width - 10, height - 34
    filled = {label: h for label, h in histograms.items() if h and h.get("counts")}
    if not filled:
        parts.append(f'<text x="{left}" y="{top + 20}" font-size="12" fill="#5b6474">no data</text></svg>')
        return mark_safe("".join(parts))  # noqa: S308 — escaped
    x0 = min(h["edges"][0] for h in filled.values())
    x1 = max(h["edges"][-1] for h in filled.values())
    x1 = x1 if x1 > x0 else x0 + 1
    peak = max(max(h["counts"]) for h in filled.values()) or 1
    _axes(parts, left=left, top=top, right=right, bottom=bottom, x_range=(x0, x1), y_range=(0, peak),
          y_format="{:g}", x_label="score")
    for index, (label, h) in enumerate(filled.items()):
        colour = ("#1b7f4b", "#b3261e")[index] if index < 2 else COLOURS[index % len(COLOURS)]
        for count, low, high in zip(h["counts"], h["edges"], h["edges"][1:]):
            x = left + (right - left) * (low - x0) / (x1 - x0)
            w = max(1.0, (right - left) * (high - low) / (x1 - x0))
            bar = (bottom - top) * count / peak
            parts.append(f'<rect x="{x:.1f}" y="{bottom - bar:.1f}" width="{w:.1f}" height="{bar:.1f}" '
                         f'fill="{colour}" fill-opacity="0.45"><title>{escape(label)} {low:.3g}…{high:.3g}: '
                         f'{count}</title></rect>')
        parts.append(f'<rect x="{left + index * 110}" y="{height - 12}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{left + index * 110 + 14}" y="{height - 3}" font-size="11" fill="#1d2330">'
                     f'{escape(label)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 — every text in it is escaped above
