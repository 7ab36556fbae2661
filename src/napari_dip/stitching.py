"""Putting the parts of a run back together: planes go to their place in the output, tiles
are blended with smooth weights (:func:`napari_dip.stacks.blend_window`) so no seam is left at
their borders. Pure numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .plan import Plan
from .stacks import blend_window


class Stitcher:
    """The output of ``plan`` (float32, the input's axis order), filled part by part.

    Per plane: :meth:`begin_plane`, :meth:`put` for each of its parts (a whole plane, or
    tiles), :meth:`end_plane`. Parts are (C, *spatial) at the output's resolution.

    Ensembles: :attr:`uncertainty` (None for single fits) is filled alike from each part's
    standard deviation map, tiles blended with the image's weights; a part without one (no
    run was needed) contributes 0."""

    def __init__(self, plan: Plan):
        layout = plan.layout
        self.plan = plan
        self.image = np.empty(plan.output_shape, dtype=np.float32)
        order = layout.iterated + ((layout.channel,) if layout.channel is not None else ()) \
            + layout.spatial
        out_c = np.transpose(self.image, order)  # a view: writing to it fills ``image``
        if layout.channel is None:
            out_c = np.expand_dims(out_c, len(layout.iterated))
        self._out = out_c
        self.uncertainty = self._spread_out = None
        if plan.template.ensemble > 1:
            self.uncertainty = np.empty(plan.output_shape, dtype=np.float32)
            spread = np.transpose(self.uncertainty, order)
            self._spread_out = spread if layout.channel is not None \
                else np.expand_dims(spread, len(layout.iterated))
        source = layout.part_axes
        self._perm = [source.index(ax) for ax in layout.remaining]
        self._zoom = plan.factors[-1]  # in-plane output/input size ratio
        self._acc: np.ndarray | None = None
        self._acc_spread: np.ndarray | None = None
        self._weight: np.ndarray | None = None

    def to_remaining(self, part: np.ndarray) -> np.ndarray:
        """(C, *spatial) -> the part's axes in input order (no C axis for grey data)."""
        if self.plan.layout.channel is None:
            part = part[0]
        return np.ascontiguousarray(np.transpose(part, self._perm))

    def region(self, index: tuple[int, ...], box) -> tuple:
        """Where a part's preview goes in the output (see :attr:`Step.region`)."""
        layout = self.plan.layout
        where: list[Any] = [slice(None)] * len(layout.axes)
        for ax, i in zip(layout.iterated, index, strict=True):
            where[ax] = i
        if box is not None:
            f = self._zoom
            for ax, s in zip(layout.spatial[-2:], box, strict=True):
                where[ax] = slice(s.start * f, s.stop * f)
        return tuple(where)

    def _plane_shape(self) -> tuple[int, int]:
        h, w = self.plan.image.shape[-2:]
        return h, w

    def begin_plane(self, index: tuple[int, ...]) -> None:
        if self.plan.boxes is None:
            return
        h, w = self._plane_shape()
        f = self._zoom
        channels = self.plan.image.shape[len(self.plan.layout.iterated)]
        self._acc = np.zeros((channels, h * f, w * f))
        self._weight = np.zeros((h * f, w * f))
        if self.uncertainty is not None:
            self._acc_spread = np.zeros_like(self._acc)

    def put(self, index: tuple[int, ...], box, part: np.ndarray,
            spread: np.ndarray | None = None) -> None:
        """Put a part's result (and, for ensembles, its standard deviation map ``spread``,
        same layout; None: 0) in place."""
        if self.uncertainty is not None and spread is None:
            spread = np.zeros(np.shape(part))
        if box is None:
            self._out[index] = part
            if self.uncertainty is not None:
                self._spread_out[index] = spread
            return
        f = self._zoom
        win = blend_window(box, self._plane_shape(), self.plan.overlap, f)
        ys = slice(box[0].start * f, box[0].stop * f)
        xs = slice(box[1].start * f, box[1].stop * f)
        self._acc[:, ys, xs] += part * win
        self._weight[ys, xs] += win
        if self.uncertainty is not None:
            self._acc_spread[:, ys, xs] += spread * win

    def end_plane(self, index: tuple[int, ...]) -> None:
        if self.plan.boxes is not None:
            self._out[index] = self._acc / self._weight
            if self.uncertainty is not None:
                self._spread_out[index] = self._acc_spread / self._weight
            self._acc = self._acc_spread = self._weight = None
