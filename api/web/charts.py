"""Charts as SVG drawn on the server: no script, no library, readable by screen readers
(a title and a description name the numbers)."""

from __future__ import annotations

from markupsafe import Markup, escape

COLOURS = ("#b42318", "#d97706", "#2563eb", "#15803d", "#7c3aed", "#0e7490")


def bars(counts: dict[str, int], *, label: str) -> Markup:
    """A horizontal bar per level (in level order), its count at the end."""
    width, row, left = 480, 28, 120
    height = row * max(len(counts), 1) + 8
    top = max(counts.values(), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="chart-title chart-desc" class="chart" data-testid="scorecard-chart">',
        f'<title id="chart-title">{escape(label)}</title>',
        '<desc id="chart-desc">' + escape(", ".join(f"{k}: {v}" for k, v in counts.items())) + "</desc>",
    ]
    for i, (name, count) in enumerate(counts.items()):
        y = 4 + i * row
        length = round((width - left - 60) * count / top)
        colour = COLOURS[i % len(COLOURS)]
        parts += [
            f'<text x="{left - 8}" y="{y + 18}" text-anchor="end">{escape(name)}</text>',
            f'<rect x="{left}" y="{y + 4}" width="{length}" height="{row - 8}" fill="{colour}" rx="3"/>',
            f'<text x="{left + length + 6}" y="{y + 18}">{count}</text>',
        ]
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked_trend(points: list[dict[str, object]], levels: list[str], *, label: str) -> Markup:
    """The level distribution over time: one stacked column per point."""
    width, height, bottom = 480, 160, 20
    if not points:
        return Markup("")
    step = width / len(points)
    top = max((int(p["total"]) for p in points), default=0) or 1  # type: ignore[call-overload]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="trend-title" class="chart" data-testid="scorecard-trend">',
        f'<title id="trend-title">{escape(label)}</title>',
    ]
    for i, point in enumerate(points):
        y: float = height - bottom
        dist = point["distribution"]
        assert isinstance(dist, dict)
        for j, level in enumerate(levels):
            h = (height - bottom - 4) * int(dist.get(level, 0)) / top
            y -= h
            parts.append(
                f'<rect x="{i * step + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[j % len(COLOURS)]}"><title>{escape(str(point["at"]))[:10]} {escape(level)}: '
                f"{int(dist.get(level, 0))}</title></rect>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def burn_down(points: list[dict[str, object]], *, label: str) -> Markup:
    """An initiative's burn-down: per point a column of the entities in scope (light) with those
    meeting every target over it (green); the last point's numbers in the description."""
    width, height, bottom = 480, 160, 4
    if not points:
        return Markup("")
    step = min(width / len(points), 32)  # a few points stay narrow columns from the left
    top = max((int(p["total"]) for p in points), default=0) or 1  # type: ignore[call-overload]
    last = points[-1]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="burn-title burn-desc" class="chart" data-testid="initiative-burn-down">',
        f'<title id="burn-title">{escape(label)}</title>',
        f'<desc id="burn-desc">{escape(str(last["at"]))[:10]}: {int(last["passing"])} of '  # type: ignore[call-overload]
        f"{int(last['total'])} meet every target</desc>",  # type: ignore[call-overload]
    ]
    for i, point in enumerate(points):
        total, passing = int(point["total"]), int(point["passing"])  # type: ignore[call-overload]
        x, w = i * step + 1, max(step - 2, 1)
        for count, colour in ((total, "#d0d7de"), (passing, "#15803d")):
            h = (height - bottom) * count / top
            parts.append(
                f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(str(point['at']))[:10]}: {passing} of {total}</title></rect>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
