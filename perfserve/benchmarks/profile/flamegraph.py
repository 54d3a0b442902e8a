"""Flame graphs as self-contained SVG: one of a profile, and a differential one of two.

Drawn here rather than by py-spy because the differential graph has to be computed from
two recordings (py-spy draws one), and because both are drawn in µs per request, so two
runs at different rates or lengths compare. Each frame is a box as wide as its cost,
its callers below it; hovering shows its name and cost. In the differential graph the
boxes are as wide as the second profile's cost and coloured by how each frame's own
cost moved from the first: red where it grew, blue where it shrank, paler the less.
"""

from __future__ import annotations

import html
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

WIDTH = 1200.0
ROW = 17.0
FONT = 11.0
CHAR_PX = 6.2
MIN_PX = 0.3
TOP = 40.0
"""Room for the title above the graph."""


@dataclass
class Node:
    name: str
    value: float = 0.0
    """The frame's cost with everything it called."""
    own_before: float = 0.0
    own_after: float = 0.0
    before: float = 0.0
    """In a differential graph: the first profile's cost of the same frame and its callees."""
    children: dict[str, Node] = field(default_factory=dict)


Weights = Mapping[tuple[str, ...], float]
"""Cost by stack (µs per request), frames from the outermost to the innermost."""


def build_tree(after: Weights, before: Weights | None = None) -> Node:
    root = Node("all")
    for stack, weight in after.items():
        _add(root, stack, weight, after=True)
    for stack, weight in (before or {}).items():
        _add(root, stack, weight, after=False)
    return root


def _add(root: Node, stack: tuple[str, ...], weight: float, *, after: bool) -> None:
    node = root
    for frame in ("", *stack):
        if frame:
            node = node.children.setdefault(frame, Node(frame))
        if after:
            node.value += weight
        else:
            node.before += weight
    if after:
        node.own_after += weight
    else:
        node.own_before += weight


def render(after: Weights, title: str, path: Path, before: Weights | None = None) -> None:
    """Write the flame graph of `after` (differential against `before` when given)."""
    root = build_tree(after, before)
    depth = _depth(root)
    height = TOP + (depth + 1) * ROW + 10
    boxes: list[str] = []
    scale = WIDTH / root.value if root.value > 0 else 0.0
    _draw(root, 0.0, 0, scale, height, boxes, differential=before is not None)
    subtitle = (
        "width: cost in the second profile; red: grew from the first, blue: shrank"
        if before is not None
        else "width: CPU per request; hover a box for its cost"
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH:.0f} {height:.0f}" font-family="Verdana, sans-serif" '
        f'font-size="{FONT:g}">\n'
        f'<rect width="100%" height="100%" fill="#f8f8f8"/>\n'
        f'<text x="{WIDTH / 2:.0f}" y="18" text-anchor="middle" font-size="15">'
        f"{html.escape(title)}</text>\n"
        f'<text x="{WIDTH / 2:.0f}" y="33" text-anchor="middle" fill="#555">'
        f"{html.escape(subtitle)}</text>\n" + "".join(boxes) + "</svg>\n"
    )
    path.write_text(svg)


def _depth(node: Node) -> int:
    return 1 + max((_depth(child) for child in node.children.values()), default=0)


def _draw(
    node: Node,
    x: float,
    level: int,
    scale: float,
    height: float,
    boxes: list[str],
    *,
    differential: bool,
) -> None:
    width = node.value * scale
    if width < MIN_PX:
        return
    y = height - 10 - (level + 1) * ROW
    if differential:
        fill = _diff_colour(node.own_after - node.own_before, node.own_after + node.own_before)
        tip = (
            f"{node.name}: {node.value:.2f} µs/req (was {node.before:.2f}, "
            f"{node.value - node.before:+.2f}); own {node.own_after:.2f} "
            f"(was {node.own_before:.2f})"
        )
    else:
        fill = _warm_colour(node.name)
        tip = f"{node.name}: {node.value:.2f} µs/req (own {node.own_after:.2f})"
    label = _fit(node.name, width)
    boxes.append(
        f'<g><title>{html.escape(tip)}</title><rect x="{x:.2f}" y="{y:.1f}" '
        f'width="{width:.2f}" height="{ROW - 1:g}" fill="{fill}" rx="2"/>'
        + (
            f'<text x="{x + 3:.2f}" y="{y + ROW - 5:.1f}">{html.escape(label)}</text>'
            if label
            else ""
        )
        + "</g>\n"
    )
    offset = x
    for child in sorted(node.children.values(), key=lambda c: c.name):
        _draw(child, offset, level + 1, scale, height, boxes, differential=differential)
        offset += child.value * scale


def _fit(name: str, width: float) -> str:
    room = int((width - 6) / CHAR_PX)
    if room < 3:
        return ""
    return name if len(name) <= room else name[: room - 2] + ".."


def _warm_colour(name: str) -> str:
    """A stable warm colour per frame name, as flame graphs are drawn."""
    h = zlib.crc32(name.encode())
    return f"rgb({205 + h % 50},{80 + (h >> 8) % 120},{(h >> 16) % 60})"


def _diff_colour(delta: float, scale: float) -> str:
    if scale <= 0 or abs(delta) < 1e-9:
        return "rgb(235,235,235)"
    strength = min(1.0, abs(delta) / scale)
    fade = int(235 - 175 * strength)
    return f"rgb(235,{fade},{fade})" if delta > 0 else f"rgb({fade},{fade},235)"
