"""The validated form of a run, torch-free: a :class:`Request` per part (what one solver
restores) and the :class:`Plan` of the whole run (which parts, how they fit back together).
Both are made by :mod:`napari_dip.request`, the one validation path; a single image is a
plan of one part.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .stacks import Layout, default_overlap, tile_boxes


@dataclass(frozen=True)
class Request:
    """A validated request. Arrays are float64 copies, channels first: (C, H, W)."""

    image: np.ndarray
    task: str
    method: str
    mask: np.ndarray | None  # (H, W) bool, True = pixel to fill
    factor: int
    kernel: np.ndarray | None
    kernel_name: str | None
    flash: np.ndarray | None  # (C', H, W)
    iterations: int | None
    early_stop: bool
    patience: int | None  # ES-WMV patience given as early_stop=N; None = default
    preset: str
    seed: int
    device: str
    channel_axis: int | None
    noise: str
    preview_every: int | None
    input_shape: tuple[int, ...]
    input_dtype: str
    options: dict[str, Any] = field(default_factory=dict)
    # Set for the parts of stacks, volumes and tiles (Plan.part):
    z_factor: int = 1  # volumes: super-resolution along Z
    value_range: tuple[float, float] | None = None  # normalise by this range, not the part's
    spacing: tuple[float, float, float] | None = None  # volumes: (z, y, x) voxel size
    #: Gaussian noise standard deviation in the image's units (discrepancy-principle
    #: stopping), "auto" (estimated for DIP denoising, else ES-WMV) or None (ES-WMV).
    noise_sigma: float | str | None = "auto"
    noise_sigma_estimated: bool = False  # noise_sigma was estimated from the whole image
    #: Deblurring: "valid" (the estimate extends beyond the measurement by the kernel's
    #: half-width) or "circular"; None for the other tasks.
    boundary: str | None = None
    #: Fits averaged (DIP): members of one batched network with seeds seed, seed + 1, ...;
    #: above 1 the result carries their per-pixel standard deviation as ``uncertainty``.
    ensemble: int = 1

    def margin(self, spatial_dims: int) -> tuple[int, ...]:
        """Pixels the estimate extends beyond the measurement on each side, per spatial
        axis ((Y, X) or (Z, Y, X)): the kernel's half-width (``size // 2``) with a valid
        boundary, else 0. A 2-D kernel of a volume has no extent along Z."""
        if self.boundary != "valid" or self.kernel is None:
            return (0,) * spatial_dims
        shape = (1,) * (spatial_dims - self.kernel.ndim) + tuple(self.kernel.shape)
        return tuple(n // 2 for n in shape)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """(H, W), or (D, H, W) for a volume (image (C, D, H, W))."""
        return tuple(self.image.shape[1:])

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of ``Result.image``: the input's, with Y and X multiplied by ``factor``."""
        shape = list(self.input_shape)
        ndim = len(shape)
        cax = None if self.channel_axis is None else self.channel_axis % ndim
        spatial = [ax for ax in range(ndim) if ax != cax]
        for ax in spatial:
            shape[ax] *= self.factor
        return tuple(shape)


@dataclass
class Plan:
    """A validated run of one or more parts. Arrays are views of the caller's (never written to) in
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
    channel_axis: int | None = None  # a single image's channel axis, as the caller gave it
    nan_holes: bool = False  # mask="nan": the image's NaN pixels are the holes
    #: The least overlap of tiles (pixels): a deblurring kernel's size, since a tile's
    #: border pixels depend on pixels outside it.
    min_overlap: int = 0

    @property
    def single(self) -> bool:
        """One 2-D image (no iterated axes, no tiles, no volume): the run is one part."""
        return not self.layout.iterated and self.boxes is None and not self.layout.volume

    def single_request(self) -> Request:
        """The request of a :attr:`single` plan: a float64 (C, H, W) copy of the image, in
        the caller's layout for the result (``channel_axis`` as given)."""
        if not self.single:
            raise ValueError("this run has several parts; use the plan's parts")
        request, _ = self.part((), None)  # never skipped: validation refused those images
        return replace(request, channel_axis=self.channel_axis, input_shape=self.input_shape)

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
            "ensemble": self.template.ensemble,
        }

    def plane_range(self, index: tuple[int, ...]) -> tuple[float, float]:
        plane = self.image[index]
        if self.nan_holes:
            return float(np.nanmin(plane)), float(np.nanmax(plane))
        return float(plane.min()), float(plane.max())

    def part(self, index: tuple[int, ...], box: tuple[slice, slice] | None,
             value_range: tuple[float, float] | None = None) -> tuple[Request | None, str | None]:
        """The request for one part, or (None, why it needs no run)."""
        sel = index + (Ellipsis,) + (tuple(box) if box is not None else ())
        image = np.array(self.image[sel], dtype=np.float64)
        if self.nan_holes and np.isnan(image).any():
            # the holes' values are never used, but NaN * 0 is NaN; the part's minimum keeps
            # its value range (and so its normalisation) as it is
            np.nan_to_num(image, copy=False, nan=float(np.nanmin(image)))
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
            shape = (image.shape[0], *(n * f for n, f in zip(image.shape[1:], self.factors,
                                                                strict=True)))
            return np.full(shape, image.flat[0])
        return image


def set_tiles(plan: Plan, tile: int | None) -> Plan:
    """Split every plane into tiles of ``tile`` pixels (None: whole planes), overlapping by
    the plan's ``overlap`` (None: :func:`default_overlap`); checks that every tile of an
    inpainting mask keeps some known pixels."""
    h, w = plan.image.shape[-2:]
    if tile is None or (tile >= h and tile >= w):
        plan.tile, plan.boxes, plan.overlap = None, None, None
        return plan
    overlap = max(default_overlap(tile), plan.min_overlap) if plan.overlap is None \
        else plan.overlap
    overlap = min(overlap, tile // 2)
    if overlap < plan.min_overlap:
        raise ValueError(
            f"tiles of {tile} px cannot overlap by the blur kernel's {plan.min_overlap} px "
            f"(at most half a tile); use tiles of at least {2 * plan.min_overlap} px")
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


