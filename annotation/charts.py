"""Small server-side SVG bar charts (no JavaScript, no CDN; presentation attributes only, so the
Content-Security-Policy's style rules are not involved)."""

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
                     f'text-anchor="end" fill="#1d2330">{escape(str(label))[:28]}</text>')
        parts.append(f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}" rx="3" '
                     f'fill="{colour}"><title>{escape(str(label))}: {escape(value_format.format(value))}</title></rect>')
        parts.append(f'<text x="{label_width + length + 6:.1f}" y="{y + bar_height * 0.7:.1f}" font-size="12" '
                     f'fill="#5b6474">{escape(value_format.format(value))}</text>')
    if not items:
        parts.append(f'<text x="0" y="{top + 14}" font-size="12" fill="#5b6474">no data</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 — every text in it is escaped above
