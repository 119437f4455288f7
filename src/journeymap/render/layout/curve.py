"""Smooth curves through points without overshoot (Fritsch–Carlson monotone cubic).

A spline through emotion points must not dip below a low point or above a high one: the
curve would then claim a feeling nobody reported. Monotone cubic Hermite interpolation keeps
every segment between its end values (Fritsch & Carlson 1980,
https://doi.org/10.1137/0717021), and each Hermite segment is one cubic Bézier.
"""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, float]


def monotone_tangents(points: Sequence[Point]) -> list[float]:
    n = len(points)
    if n < 2:
        return [0.0] * n
    dx = [points[i + 1][0] - points[i][0] for i in range(n - 1)]
    slopes = [(points[i + 1][1] - points[i][1]) / dx[i] for i in range(n - 1)]
    tangents = (
        [slopes[0]]
        + [
            0.0 if slopes[i - 1] * slopes[i] <= 0 else (slopes[i - 1] + slopes[i]) / 2
            for i in range(1, n - 1)
        ]
        + [slopes[-1]]
    )
    for i, s in enumerate(slopes):
        if s == 0:
            tangents[i] = tangents[i + 1] = 0.0
            continue
        a, b = tangents[i] / s, tangents[i + 1] / s
        h = a * a + b * b
        if h > 9:  # restrict to the circle of radius 3 (monotonicity region)
            t = 3 / h**0.5
            tangents[i], tangents[i + 1] = t * a * s, t * b * s
    return tangents


def bezier_segments(points: Sequence[Point]) -> list[tuple[Point, Point, Point, Point]]:
    """Each segment as (start, control 1, control 2, end)."""
    m = monotone_tangents(points)
    out = []
    for i in range(len(points) - 1):
        (x0, y0), (x1, y1) = points[i], points[i + 1]
        h = (x1 - x0) / 3
        out.append(((x0, y0), (x0 + h, y0 + m[i] * h), (x1 - h, y1 - m[i + 1] * h), (x1, y1)))
    return out


def _p(pt: Point) -> str:
    return f"{pt[0]:.1f},{pt[1]:.1f}"


def segment_path(seg: tuple[Point, Point, Point, Point], move: bool = True) -> str:
    a, c1, c2, b = seg
    head = f"M{_p(a)}" if move else ""
    return f"{head}C{_p(c1)} {_p(c2)} {_p(b)}"


def smooth_path(points: Sequence[Point]) -> str:
    if not points:
        return ""
    if len(points) == 1:
        return f"M{_p(points[0])}"
    segs = bezier_segments(points)
    return segment_path(segs[0]) + "".join(segment_path(s, move=False) for s in segs[1:])
