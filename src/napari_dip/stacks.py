"""Stacks, time series, volumes and tiles: which parts of an array a run restores, and how
their results fit back together. Pure numpy (no torch): every error a caller can make with
``axes=``, ``mode=``, ``tile=`` and friends is raised here, before any work.

An array's axes are named by a string, one letter per axis (``axes="TZYX"``):

- ``Y`` and ``X``: the plane (required);
- ``Z``: depth, restored plane by plane (``mode="slices"``) or as one volume
  (``mode="volume"``);
- ``T``: time, always restored one time point after the other;
- ``C``: channels (colour), restored together like an RGB picture.

Every part (plane, time point or tile) is restored by the same 2-D (or 3-D) pipeline as a
single image; :mod:`napari_dip.drivers` runs the parts and stitches their results.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

AXIS_LETTERS = "TZYXC"
MODES = ("slices", "volume")
#: Smallest tile side, in pixels.
MIN_TILE = 32
#: Fewest slices a volume needs for mode="volume".
MIN_DEPTH = 4
#: Warm start: planes (time points, tiles) after the first start from the previous part's
#: network weights and Adam state, and stop once they fit their data as closely as the first
#: part did (its loss at the step it kept), at most after the iteration limit. This is the
#: fraction of the limit that takes on a real MRI stack (benchmarks/results/stacks.md); it
#: only serves to plan the run's total for progress reports.
WARM_FRACTION = 0.1
#: Whether warm start is on when ``warm_start`` is not given (benchmarks/results/stacks.md).
WARM_START_DEFAULT = True


# -- axes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """What each axis of the input is. Indices are input axes."""

    axes: str
    mode: str | None  # "slices", "volume", or None for a single plane
    iterated: tuple[int, ...]  # axes run one position after the other (T, and Z in slices)
    channel: int | None
    spatial: tuple[int, ...]  # (Y, X), or (Z, Y, X) in volume mode

    @property
    def part_axes(self) -> tuple[int, ...]:
        """Input axes of a part's array as the engine holds it: (C, Y, X) or (C, Z, Y, X),
        C only when the input has channels."""
        return ((self.channel,) if self.channel is not None else ()) + self.spatial

    @property
    def remaining(self) -> tuple[int, ...]:
        """Axes of one part of the output, in input order."""
        return tuple(ax for ax in range(len(self.axes)) if ax not in self.iterated)

    @property
    def volume(self) -> bool:
        return self.mode == "volume"


def runs_in_parts(axes: str, mode: str | None, tiled: bool) -> bool:
    """Whether a run of an image with ``axes`` (e.g. ``"TZYX"``) in ``mode`` has several
    parts, one after the other, so that warm start applies: time points, planes of a stack
    (``mode`` other than ``"volume"``), or tiles."""
    return "T" in axes or ("Z" in axes and mode != "volume") or tiled


def axes_from_channel_axis(ndim: int, channel_axis: int | None) -> str:
    """The ``axes`` string of a 2-D image with an optional ``channel_axis``: ``"YX"``,
    ``"YXC"``, ``"CYX"``..."""
    if channel_axis is None:
        return "YX" if ndim == 2 else ""
    if ndim != 3 or not -3 <= channel_axis <= 2:
        return ""
    letters = ["Y", "X"]
    letters.insert(channel_axis % 3, "C")
    return "".join(letters)


def parse_axes(axes, shape: tuple[int, ...], mode: str | None) -> Layout:
    """Check ``axes`` against an array of ``shape`` and ``mode``; ValueError says what is
    wrong and what would be right."""
    if not isinstance(axes, str):
        raise ValueError(f"axes must be a string naming each axis, e.g. axes='ZYX', "
                         f"got {axes!r}")
    name = axes.strip().upper()
    example = _example_axes(len(shape))
    if len(name) != len(shape):
        raise ValueError(
            f"axes={axes!r} names {len(name)} axes but the image has {len(shape)} "
            f"(shape {tuple(shape)}); give one letter per axis, e.g. axes={example!r}")
    unknown = sorted({c for c in name if c not in AXIS_LETTERS})
    if unknown:
        raise ValueError(
            f"axes={axes!r} has unknown letter(s) {', '.join(map(repr, unknown))}; use T "
            "(time), Z (depth), Y and X (the plane) and C (channels)")
    repeated = sorted({c for c in name if name.count(c) > 1})
    if repeated:
        raise ValueError(f"axes={axes!r} names {', '.join(map(repr, repeated))} more than "
                         "once; each of T, Z, Y, X, C may appear once")
    if "Y" not in name or "X" not in name:
        raise ValueError(f"axes={axes!r} must name the plane's Y and X axes, e.g. "
                         f"axes={example!r}")
    if mode is not None and mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    index = {c: name.index(c) for c in name}
    channel = index.get("C")
    if mode == "volume":
        if "Z" not in index:
            raise ValueError(f"mode='volume' needs a Z axis, but axes={axes!r} has none; "
                             "name it (e.g. axes='ZYX') or use mode='slices'")
        spatial = (index["Z"], index["Y"], index["X"])
        iterated = tuple(index[c] for c in name if c == "T")
    else:
        spatial = (index["Y"], index["X"])
        iterated = tuple(index[c] for c in name if c in "TZ")
        if mode is None and iterated:
            mode = "slices"
    return Layout(name, mode, tuple(sorted(iterated)), channel, spatial)


def _example_axes(ndim: int) -> str:
    return {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TZYXC"}.get(ndim, "TZYX")


# -- tiles --------------------------------------------------------------------------------
def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start positions of tiles of ``tile`` pixels covering ``length`` with neighbours
    overlapping by at least ``overlap``, spread evenly, the last one flush with the end."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - overlap) / stride)
    return [int(round(v)) for v in np.linspace(0, length - tile, count)]


def tile_boxes(shape: tuple[int, int], tile: int, overlap: int) -> list[tuple[slice, slice]]:
    """(Y, X) slices of the tiles of a plane, row by row."""
    h, w = shape
    return [(slice(y, min(y + tile, h)), slice(x, min(x + tile, w)))
            for y in tile_starts(h, tile, overlap) for x in tile_starts(w, tile, overlap)]


def ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """1-D blending weights of a tile: 1 inside, rising as sin^2 over ``overlap`` pixels at
    a side that borders another tile (``at_start``/``at_end``), never reaching 0. Where two
    tiles overlap by exactly ``overlap`` their ramps add up to 1; the blend divides by the sum
    of weights anyway, so results change smoothly across every tile border."""
    w = np.ones(length)
    n = min(overlap, length)
    if n > 0:
        rise = np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2
        if at_start:
            w[:n] = np.minimum(w[:n], rise)
        if at_end:
            w[length - n:] = np.minimum(w[length - n:], rise[::-1])
    return w


def blend_window(box: tuple[slice, slice], shape: tuple[int, int], overlap: int,
                 factor: int = 1) -> np.ndarray:
    """2-D weights of the tile ``box`` (input pixels) in a plane of ``shape``, at ``factor``
    times the resolution (super-resolution)."""
    (ys, xs), (h, w) = box, shape
    wy = ramp((ys.stop - ys.start) * factor, overlap * factor, ys.start > 0, ys.stop < h)
    wx = ramp((xs.stop - xs.start) * factor, overlap * factor, xs.start > 0, xs.stop < w)
    return np.outer(wy, wx)


def default_overlap(tile: int) -> int:
    """A quarter of the tile, at least 16 pixels."""
    return max(16, tile // 4)


def check_tile(tile, overlap) -> tuple[int | str | None, int | None]:
    """``tile``: None (no tiling), ``"auto"`` or a side in pixels; ``overlap``: pixels or
    None for the default. Returns them checked."""
    if tile is None:
        if overlap is not None:
            raise ValueError("overlap applies to tiled runs; give tile= as well (a size in "
                             "pixels, or tile='auto')")
        return None, None
    if isinstance(tile, str):
        if tile != "auto":
            raise ValueError(f"tile must be a size in pixels, 'auto' or None, got {tile!r}")
    elif isinstance(tile, bool) or not isinstance(tile, numbers.Integral):
        raise ValueError(f"tile must be a size in pixels, 'auto' or None, got {tile!r}")
    elif tile < MIN_TILE:
        raise ValueError(f"tile={tile} is too small; tiles need at least {MIN_TILE} pixels "
                         "per side (256 to 1024 are typical)")
    else:
        tile = int(tile)
    if overlap is not None:
        if isinstance(overlap, bool) or not isinstance(overlap, numbers.Integral) \
                or overlap < 0:
            raise ValueError(f"overlap must be a number of pixels >= 0, got {overlap!r}")
        overlap = int(overlap)
        if isinstance(tile, int) and overlap > tile // 2:
            raise ValueError(f"overlap={overlap} is more than half the tile ({tile} px); "
                             f"use at most {tile // 2}")
    return tile, overlap


def check_warm_start(warm_start) -> bool | int:
    """None (the default), True, False, or the iterations of a warm-started part."""
    if warm_start is None:
        return WARM_START_DEFAULT
    if isinstance(warm_start, bool):
        return warm_start
    if isinstance(warm_start, numbers.Integral) and warm_start >= 1:
        return int(warm_start)
    raise ValueError(f"warm_start must be True, False or a number of iterations for the parts "
                     f"after the first, got {warm_start!r}")


def check_spacing(spacing) -> tuple[float, float, float] | None:
    if spacing is None:
        return None
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing must be the (z, y, x) voxel size as 3 positive numbers, "
                         f"got {spacing!r}")
    return values
