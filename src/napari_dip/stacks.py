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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .presets import PRESETS, get_preset
from .request import (
    MIN_SIZE,
    METHODS,
    NOISE_MODELS,
    TASKS,
    Request,
    check_array,
    check_factor,
    check_kernel,
    check_noise_sigma,
    check_numbers,
)

AXIS_LETTERS = "TZYXC"
MODES = ("slices", "volume")
#: Smallest tile side, in pixels.
MIN_TILE = 32
#: Fewest slices a volume needs for mode="volume".
MIN_DEPTH = 4
#: Tasks that run on volumes, and the Z super-resolution factors they accept.
VOLUME_TASKS = ("denoise", "inpaint", "super_resolution")
VOLUME_SR_FACTORS = (2, 3, 4, 5, 6, 7, 8)
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


# -- the plan -----------------------------------------------------------------------------
@dataclass
class Plan:
    """A validated multi-part run. Arrays are views of the caller's (never written to) in
    the engine's order: ``image`` (*iterated, C, *spatial), ``mask`` (*iterated, *spatial)
    and ``flash`` (*iterated, C', *spatial)."""

    layout: Layout
    image: np.ndarray
    mask: np.ndarray | None
    flash: np.ndarray | None
    template: Request  # settings shared by every part; arrays are set per part
    planes: list[tuple[int, ...]]  # positions on the iterated axes
    boxes: list[tuple[slice, slice]] | None  # tiles of a plane (input pixels), or None
    tile: int | str | None  # as requested until set_tiles() decides: then a size or None
    overlap: int | None
    warm_start: bool | int
    cold_iterations: int
    warm_iterations: int | None  # the limit of a warm part; None: every part starts cold
    output_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    input_dtype: str
    adaptive: bool = False  # warm parts stop at the first part's loss (warm_start=True)

    @property
    def factors(self) -> tuple[int, ...]:
        """Output/input size ratio per spatial axis of a part."""
        t = self.template
        return (t.z_factor, 1, 1) if self.layout.volume else (t.factor, t.factor)

    @property
    def parts_per_plane(self) -> int:
        return 1 if self.boxes is None else len(self.boxes)

    def settings(self) -> dict[str, Any]:
        """What the driver adds to ``Result.parameters``."""
        return {
            "axes": self.layout.axes, "mode": self.layout.mode,
            "tile": self.tile if self.boxes is not None else None,
            "overlap": self.overlap if self.boxes is not None else None,
            "warm_start": self.warm_start, "warm_iterations": self.warm_iterations,
            "warm_stop": ("first part's loss" if self.adaptive else "iterations")
            if self.warm_iterations is not None else None,
            "planes": len(self.planes), "tiles": self.parts_per_plane,
        }

    def plane_range(self, index: tuple[int, ...]) -> tuple[float, float]:
        plane = self.image[index]
        return float(plane.min()), float(plane.max())

    def part(self, index: tuple[int, ...], box: tuple[slice, slice] | None,
             value_range: tuple[float, float] | None = None) -> tuple[Request | None, str | None]:
        """The request for one part, or (None, why it needs no run)."""
        sel = index + (Ellipsis,) + (tuple(box) if box is not None else ())
        image = np.array(self.image[sel], dtype=np.float64)
        mask = None if self.mask is None else np.array(self.mask[sel], dtype=bool)
        flash = None if self.flash is None else np.array(self.flash[sel], dtype=np.float64)
        if float(image.max()) == float(image.min()):
            return None, "constant"
        if mask is not None and not mask.any():
            return None, "no holes"
        if flash is not None and float(flash.max()) == float(flash.min()):
            raise ValueError(f"the flash shot is constant at position {index} of the iterated "
                             "axes; it cannot guide the restoration there")
        return replace(self.template, image=image, mask=mask, flash=flash,
                       input_shape=tuple(image.shape), value_range=value_range), None

    def skipped_output(self, index, box, reason: str) -> np.ndarray:
        """The result of a part that needs no run: a constant part stays constant, a part
        without holes stays as measured. (C, *spatial) at the output's resolution."""
        sel = index + (Ellipsis,) + (tuple(box) if box is not None else ())
        image = np.asarray(self.image[sel], dtype=np.float64)
        if reason == "constant":
            shape = (image.shape[0], *(n * f for n, f in zip(image.shape[1:], self.factors)))
            return np.full(shape, image.flat[0])
        return image


def build_plan(image, task: str = "denoise", method: str = "dip", *, axes: str,
               mode: str | None = None, tile=None, overlap: int | None = None,
               warm_start=None, spacing=None, mask=None, factor: int | None = None,
               kernel=None, flash=None, iterations: int | None = None, early_stop=True,
               preset: str = "fast", seed: int = 0, device: str = "auto",
               noise: str = "gaussian", noise_sigma="auto", preview_every: int | None = None,
               **options) -> Plan:
    """Validate a multi-part run (see :func:`napari_dip.restore`); raises ValueError."""
    for name, value, allowed in (("task", task, TASKS), ("method", method, METHODS),
                                 ("preset", preset, PRESETS),
                                 ("noise model", noise, NOISE_MODELS)):
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; choose one of: "
                             f"{', '.join(map(str, allowed))}")
    raw = check_array(image, "image")
    layout = parse_axes(axes, raw.shape, mode)
    tile, overlap = check_tile(tile, overlap)
    warm = check_warm_start(warm_start)
    spacing = check_spacing(spacing)
    shape = raw.shape
    h, w = shape[layout.spatial[-2]], shape[layout.spatial[-1]]
    if min(h, w) < MIN_SIZE:
        raise ValueError(f"image planes are {h}x{w} pixels (Y x X); they need at least "
                         f"{MIN_SIZE} pixels on each side")

    volume = layout.volume
    if volume:
        depth = shape[layout.spatial[0]]
        if depth < MIN_DEPTH:
            raise ValueError(f"mode='volume' needs at least {MIN_DEPTH} slices along Z, the "
                             f"image has {depth}; use mode='slices'")
        if task not in VOLUME_TASKS:
            raise ValueError(f"mode='volume' runs {', '.join(VOLUME_TASKS)}, not "
                             f"task={task!r}; use mode='slices' to {task} plane by plane")
        if method != "dip":
            raise ValueError(f"mode='volume' runs method='dip' only; use mode='slices' for "
                             f"method={method!r}")
        if tile is not None:
            raise ValueError("tile= splits large 2-D planes; mode='volume' restores the whole "
                             "volume at once (use mode='slices' to tile each plane)")
        if task == "super_resolution":
            factor = check_factor(task, factor, VOLUME_SR_FACTORS)
        else:
            factor = check_factor(task, factor)
    else:
        factor = check_factor(task, factor)
    if tile is not None and task == "deblur":
        raise ValueError("task='deblur' cannot be tiled: its blur wraps around the borders of "
                         "what it restores, which would leave seams between tiles; restore "
                         "the whole image (tile=None)")

    kernel_array, kernel_name = check_kernel(task, kernel, (h, w))
    iterations, preview_every, patience, seed = check_numbers(iterations, preview_every,
                                                              early_stop, seed)

    # The engine's order: iterated axes, channels, spatial axes (views, nothing copied).
    order = layout.iterated + ((layout.channel,) if layout.channel is not None else ()) \
        + layout.spatial
    arr = np.transpose(raw, order)
    if layout.channel is None:
        arr = np.expand_dims(arr, len(layout.iterated))
    n_iter = len(layout.iterated)
    iter_shape = arr.shape[:n_iter]
    spatial_shape = arr.shape[n_iter + 1:]

    _check_values(arr)
    noise_sigma = check_noise_sigma(noise_sigma, task=task, method=method, noise=noise,
                                    early_stop=early_stop,
                                    value_range=float(arr.max()) - float(arr.min()))
    if noise == "poisson" and float(arr.min()) < 0:
        raise ValueError(
            "noise='poisson' needs non-negative photon counts, but the image has values down "
            f"to {float(arr.min()):g}; subtract the camera offset first or use "
            "noise='gaussian'")

    fill = None
    if task == "inpaint":
        fill = _check_mask(mask, raw, layout, iter_shape, spatial_shape)
    elif mask is not None:
        raise ValueError(f"mask is only used by task='inpaint', not task={task!r}; drop it")

    fl = None
    if task == "flash_no_flash":
        if flash is None:
            raise ValueError("task='flash_no_flash' needs flash=: the flash shot of the same "
                             "scene (image is the no-flash shot)")
        f_raw = check_array(flash, "flash image")
        if f_raw.shape != raw.shape:
            raise ValueError(f"flash image has shape {f_raw.shape} but the image has "
                             f"{raw.shape}; both shots must have the same shape")
        fl = np.transpose(f_raw, order)
        if layout.channel is None:
            fl = np.expand_dims(fl, n_iter)
        _check_values(fl, "flash image")
    elif flash is not None:
        raise ValueError(f"flash is only used by task='flash_no_flash', not task={task!r}")

    planes = [tuple(int(i) for i in idx) for idx in np.ndindex(*iter_shape)]

    template = Request(
        image=np.empty((0,)), task=task, method=method, mask=None,
        factor=1 if volume else factor, kernel=kernel_array, kernel_name=kernel_name,
        flash=None, iterations=iterations, early_stop=bool(early_stop), patience=patience,
        preset=preset, seed=seed, device=device, channel_axis=0, noise=noise,
        preview_every=preview_every, input_shape=(), input_dtype=str(raw.dtype),
        options=dict(options), z_factor=factor if volume else 1,
        spacing=spacing if volume else None, noise_sigma=noise_sigma,
    )
    cold = iterations or get_preset(preset, task, factor=factor).iterations
    if warm is False:
        warm_iterations = None
    elif warm is True:
        warm_iterations = cold  # a limit: warm parts stop at the first part's loss
    else:
        warm_iterations = int(warm)

    out_shape = list(raw.shape)
    for ax, f in zip(layout.spatial, (factor, 1, 1) if volume else (factor, factor)):
        out_shape[ax] *= f
    return Plan(layout=layout, image=arr, mask=fill, flash=fl, template=template,
                planes=planes, boxes=None, tile=tile, overlap=overlap, warm_start=warm,
                cold_iterations=cold, warm_iterations=warm_iterations, adaptive=warm is True,
                output_shape=tuple(out_shape), input_shape=tuple(raw.shape),
                input_dtype=str(raw.dtype))


def set_tiles(plan: Plan, tile: int | None) -> Plan:
    """Split every plane into tiles of ``tile`` pixels (None: whole planes), overlapping by
    the plan's ``overlap`` (None: :func:`default_overlap`); checks that every tile of an
    inpainting mask keeps some known pixels."""
    h, w = plan.image.shape[-2:]
    if tile is None or (tile >= h and tile >= w):
        plan.tile, plan.boxes, plan.overlap = None, None, None
        return plan
    overlap = default_overlap(tile) if plan.overlap is None else plan.overlap
    overlap = min(overlap, tile // 2)
    plan.tile, plan.overlap = tile, overlap
    plan.boxes = tile_boxes((h, w), tile, overlap)
    if plan.mask is not None:
        for index in plan.planes:
            for box in plan.boxes:
                if plan.mask[index + (Ellipsis, *box)].all():
                    raise ValueError(
                        f"every pixel of the tile at Y {box[0].start}:{box[0].stop}, X "
                        f"{box[1].start}:{box[1].stop} is a hole, so it has nothing to fill "
                        "from; use larger tiles (tile=) or no tiling")
    return plan


def _check_values(arr: np.ndarray, what: str = "image") -> None:
    """Finite values, not all the same."""
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(np.count_nonzero(~finite))
        raise ValueError(
            f"{what} has {bad} NaN or infinite value(s); replace them first "
            "(e.g. np.nan_to_num, or mark them as holes and use task='inpaint')")
    low, high = float(arr.min()), float(arr.max())
    if low == high:
        if what == "image":
            raise ValueError(f"image is constant (every pixel is {low:g}); there is nothing "
                             "to restore")
        raise ValueError(f"{what} is constant; it cannot guide the restoration")


def _check_mask(mask, raw: np.ndarray, layout: Layout, iter_shape, spatial_shape) -> np.ndarray:
    """The inpainting mask as a bool view (*iterated, *spatial), broadcast where it covers
    fewer axes; per-part checks."""
    if mask is None:
        raise ValueError("task='inpaint' needs a mask: an array of the image's shape (without "
                         "its channel axis), or of one plane, nonzero at the pixels to fill")
    m = np.asarray(mask)
    no_c = tuple(n for ax, n in enumerate(raw.shape) if ax != layout.channel)
    plane = tuple(raw.shape[ax] for ax in layout.spatial)
    if layout.channel is not None and m.shape == raw.shape:
        m = m.any(axis=layout.channel)
    if m.shape == no_c:
        kept = [ax for ax in range(raw.ndim) if ax != layout.channel]
        order = [kept.index(ax) for ax in layout.iterated + layout.spatial]
        m = np.transpose(m, order) != 0
    elif m.shape == plane:
        m = np.broadcast_to(m != 0, tuple(iter_shape) + tuple(spatial_shape))
    else:
        raise ValueError(
            f"mask has shape {m.shape} but the image is {raw.shape} (axes "
            f"{layout.axes!r}); pass a mask of shape {no_c} (the image without channels) or "
            f"{plane} (one {'volume' if layout.volume else 'plane'}, used for every "
            f"{'time point' if layout.volume else 'plane'}), nonzero at the pixels to fill")
    if not m.any():
        raise ValueError("mask marks no pixel to fill (it is all zero); mark the holes "
                         "with nonzero values")
    n_iter = len(iter_shape)
    flat_all = m.reshape(int(np.prod(iter_shape, dtype=int)), -1).all(axis=1) if n_iter \
        else np.array([m.all()])
    if flat_all.any():
        where = ""
        if n_iter:
            first = np.unravel_index(int(np.argmax(flat_all)), iter_shape)
            where = f" at position {tuple(int(i) for i in first)}"
        raise ValueError(
            f"mask marks every pixel of a part{where} to fill, so no known pixel is left "
            "there; nonzero must mean 'fill this pixel' (invert a 'known pixel' mask)")
    return m
