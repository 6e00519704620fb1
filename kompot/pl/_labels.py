"""Point labels that overlap neither each other nor the labelled points.

A small greedy scheme instead of a dependency: labels are placed one by one,
most important first, at the first of a fixed sequence of candidate offsets
(rings of increasing distance around the point). Candidates are tried in
tiers: close to the point, inside the axes and off every drawn point; then
anywhere inside the axes off the labelled points; then anywhere. A candidate
must always be clear of the labels placed before it. Offsets are stored in
points, so they survive a change of figure size; overlaps are checked for the
layout at the time of the call.
"""

from __future__ import annotations

import logging

import numpy as np
from matplotlib.axes import Axes
from matplotlib.transforms import Bbox

logger = logging.getLogger("kompot")

# Distances of the label box from its point, in points; the first rings keep
# the label next to its point, the later ones trade closeness for space.
_RINGS_PT = (2.0, 6.0, 12.0, 20.0, 30.0, 42.0, 56.0, 72.0, 90.0, 110.0, 135.0, 160.0)
# The first tier (off all points) only tries rings up to here.
_NEAR_PT = 30.0
# Directions tried on each ring (degrees); mirrored for points left of centre,
# so that labels point outward.
_ANGLES_DEG = (0, 30, -30, 60, -60, 90, -90, 120, -120, 150, -150, 180)
# From this distance (points) on a thin line joins label and point.
_LEADER_MIN_PT = 8.0
_PAD_PX = 1.5


def _clear(box: Bbox, others: list[Bbox]) -> bool:
    grown = box.padded(_PAD_PX)
    return not any(grown.overlaps(o) for o in others)


def _segment_hits(start, end, box: Bbox) -> bool:
    """Whether the segment from ``start`` to ``end`` passes through ``box`` (sampled)."""
    t = np.linspace(0.0, 1.0, 24)[:, None]
    samples = (1 - t) * np.asarray(start) + t * np.asarray(end)
    return bool(np.any((samples[:, 0] > box.x0) & (samples[:, 0] < box.x1)
                       & (samples[:, 1] > box.y0) & (samples[:, 1] < box.y1)))


def _covers_none(box: Bbox, centres: np.ndarray, radius: float) -> bool:
    """No marker of radius ``radius`` centred at ``centres`` touches ``box``."""
    if centres.size == 0:
        return True
    inside_x = (centres[:, 0] > box.x0 - radius) & (centres[:, 0] < box.x1 + radius)
    inside_y = (centres[:, 1] > box.y0 - radius) & (centres[:, 1] < box.y1 + radius)
    return not np.any(inside_x & inside_y)


def place_labels(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    *,
    marker_size: float,
    avoid: np.ndarray | None = None,
    fontsize: float | str | None = None,
    color: str = "0.15",
) -> list:
    """Annotate points ``(x[i], y[i])`` with ``labels[i]``, in that order of priority.

    Parameters
    ----------
    ax
        Axes holding the points (data coordinates).
    x, y
        Coordinates of the labelled points.
    labels
        Texts, most important first (placed first, closest to their points).
    marker_size
        Marker area of the points in points squared (as ``scatter``'s ``s``),
        so that labels keep clear of the markers.
    avoid
        ``(n, 2)`` data coordinates of other drawn points that labels should
        preferably not cover.
    fontsize
        Font size of the labels; ``None`` uses ``"small"``.
    color
        Colour of text and leader lines.

    Returns
    -------
    The :class:`~matplotlib.text.Annotation` objects, in the order of ``labels``.
    """
    fig = ax.figure
    # Final axes position (layout engines run at draw time) before measuring.
    fig.draw_without_rendering()
    px_per_pt = fig.dpi / 72.0
    points = ax.transData.transform(np.column_stack([x, y]).astype(np.float64))
    others = np.empty((0, 2)) if avoid is None else ax.transData.transform(np.asarray(avoid, float))
    frame = ax.get_window_extent()
    radius = 0.5 * np.sqrt(marker_size) * px_per_pt + 1.0
    # Labelled markers are obstacles from the start, so no label hides another's point.
    obstacles = [Bbox.from_extents(px - radius, py - radius, px + radius, py + radius)
                 for px, py in points]
    fontsize = "small" if fontsize is None else fontsize
    centre_x = 0.5 * (frame.x0 + frame.x1)

    labels_placed: list[Bbox] = []
    leaders: list[tuple] = []  # (point, label centre) of the lines drawn so far
    annotations = []
    for (px, py), xi, yi, text in zip(points, x, y, labels, strict=True):
        probe = ax.text(0, 0, text, fontsize=fontsize, transform=None)
        extent = probe.get_window_extent()
        probe.remove()
        size = (extent.width, extent.height)
        mirror = 1.0 if px >= centre_x else -1.0
        placement = _free_offset((px, py), size, radius, px_per_pt, mirror, frame, obstacles,
                                 (others, radius), (labels_placed, leaders))
        if placement is None:
            logger.debug("No free place for label %r; it may overlap another.", text)
            placement = (mirror * (radius + size[0] / 2), 0.0, 0.0)
        dx, dy, ring = placement
        box = Bbox.from_bounds(px + dx - size[0] / 2, py + dy - size[1] / 2, *size)
        obstacles.append(box)
        labels_placed.append(box)
        if ring >= _LEADER_MIN_PT:
            leaders.append(((px, py), (px + dx, py + dy)))
        leader = dict(arrowstyle="-", lw=0.5, color=color, shrinkA=1, shrinkB=2)
        annotations.append(
            ax.annotate(
                text,
                xy=(xi, yi),
                xytext=(dx / px_per_pt, dy / px_per_pt),
                textcoords="offset points",
                ha="center",
                va="center",
                fontsize=fontsize,
                color=color,
                arrowprops=leader if ring >= _LEADER_MIN_PT else None,
            )
        )
    return annotations


def _free_offset(point, size, radius, px_per_pt, mirror, frame, obstacles, points_to_avoid,
                 placed):
    """First clear candidate offset ``(dx, dy, ring)`` in pixels, by tier; ``None`` if none.

    Besides boxes, a candidate must not put its leader line through a placed
    label, nor its box across a placed leader line.
    """
    px, py = point
    w, h = size
    centres, marker_radius = points_to_avoid
    labels_placed, leaders = placed
    far = _RINGS_PT[-1]
    tiers = (  # (largest ring, inside the axes, off all points, leaders cross no label)
        (_NEAR_PT, True, True, True),
        (far, True, False, True),
        (far, True, False, False),  # a crossed line is better than hidden text
        (far, False, False, False),
    )
    for max_ring, inside_only, off_points, strict_leaders in tiers:
        for ring in (r for r in _RINGS_PT if r <= max_ring):
            gap = radius + ring * px_per_pt
            for angle in np.deg2rad(_ANGLES_DEG):
                dx = mirror * np.cos(angle) * (gap + w / 2)
                dy = np.sin(angle) * (gap + h / 2)
                box = Bbox.from_bounds(px + dx - w / 2, py + dy - h / 2, w, h)
                inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1
                          and box.y0 >= frame.y0 and box.y1 <= frame.y1)
                if inside_only and not inside:
                    continue
                if off_points and not _covers_none(box, centres, marker_radius):
                    continue
                if not _clear(box, obstacles):
                    continue
                if not strict_leaders:
                    return dx, dy, ring
                grown = box.padded(_PAD_PX)
                if any(_segment_hits(a, b, grown) for a, b in leaders):
                    continue
                if ring >= _LEADER_MIN_PT and any(
                    _segment_hits((px, py), (px + dx, py + dy), other) for other in labels_placed
                ):
                    continue
                return dx, dy, ring
    return None
