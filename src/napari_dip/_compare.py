"""Side by side: input, result, reference and uncertainty in napari's grid mode, and back.

No Qt here (napari only for a notification): the viewer is used through ``viewer.layers``
(each layer's ``visible``) and its grid (``viewer.canvas.grid`` from napari 0.9,
``viewer.grid`` before: ``enabled``, ``shape``, ``stride``), so the round trip is easy to
test. :class:`CompareToggle` is the dock widget's side of it (the check box).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._layers import METADATA_KEY


def grid_of(viewer):
    """The viewer's grid settings (napari 0.9 moved them to ``viewer.canvas.grid``)."""
    canvas = getattr(viewer, "canvas", None)
    grid = getattr(canvas, "grid", None)
    return grid if grid is not None else viewer.grid


def canvas_size(viewer) -> tuple[float, float] | None:
    """The canvas' (height, width) in screen pixels (``viewer.canvas.size`` from napari
    0.9, ``viewer._canvas_size`` before), or None where the viewer does not say."""
    size = getattr(getattr(viewer, "canvas", None), "size", None)
    if size is None:
        size = getattr(viewer, "_canvas_size", None)
    try:
        height, width = (float(v) for v in size)
    except (TypeError, ValueError):
        return None
    return (height, width) if height > 0 and width > 0 else None


def _extent(layer) -> tuple[float, float]:
    """A layer's (height, width) in pixels; (1, 1) where it has no array."""
    shape = getattr(getattr(layer, "data", None), "shape", None)
    if shape is not None and getattr(layer, "rgb", False):
        shape = shape[:-1]
    if shape is None or len(shape) < 2:
        return (1.0, 1.0)
    return (float(shape[-2]), float(shape[-1]))


def grid_shape(n: int, canvas: tuple[float, float] | None = None,
               image: tuple[float, float] = (1.0, 1.0)) -> tuple[int, int]:
    """Rows and columns for ``n`` layers. Given the ``canvas`` (height, width) and the
    ``image``'s (height, width), the shape that shows the images largest (a tall, narrow
    canvas stacks them; fewer rows on a tie); without it, one row up to three, then two."""
    n = max(int(n), 1)
    if canvas is None:
        return (1, n) if n <= 3 else (2, (n + 1) // 2)
    height, width = canvas
    best, best_scale = (1, n), -1.0
    for rows in range(1, n + 1):
        columns = -(-n // rows)
        scale = min(width / columns / image[1], height / rows / image[0])
        if scale > best_scale * (1 + 1e-9):
            best, best_scale = (rows, columns), scale
    return best


class CompareView:
    """Shows chosen layers side by side and puts the viewer back as it was.

    :meth:`enter` remembers every layer's visibility and the grid's settings, shows only the
    given layers, each in its own grid cell; :meth:`leave` restores what it remembered (for
    layers still there) and switches the grid off if it was off.
    """

    def __init__(self, viewer):
        self._viewer = viewer
        self._saved: dict[str, Any] | None = None
        self.shown: list[Any] = []

    @property
    def active(self) -> bool:
        return self._saved is not None

    def enter(self, layers: Sequence[Any]) -> None:
        viewer = self._viewer
        layers = [layer for layer in layers if layer is not None and layer in viewer.layers]
        if not layers:
            raise ValueError("nothing to compare: run a restoration first, or select a "
                             "napari-dip result layer")
        if self._saved is None:
            grid = grid_of(viewer)
            self._saved = {
                "visible": {id(layer): (layer, layer.visible) for layer in viewer.layers},
                "grid": (grid.enabled, tuple(grid.shape), grid.stride),
            }
        for layer in viewer.layers:
            layer.visible = layer in layers
        grid = grid_of(viewer)
        grid.stride = 1
        grid.shape = grid_shape(len(layers), canvas_size(viewer), _extent(layers[0]))
        grid.enabled = True
        self.shown = layers

    def leave(self) -> None:
        if self._saved is None:
            return
        viewer, saved = self._viewer, self._saved
        self._saved, self.shown = None, []
        for layer, visible in saved["visible"].values():
            if layer in viewer.layers:
                layer.visible = visible
        enabled, shape, stride = saved["grid"]
        grid = grid_of(viewer)
        grid.enabled = enabled
        grid.shape = shape
        grid.stride = stride


class CompareToggle:
    """The dock widget's "compare side by side" toggle (a mixin of
    :class:`napari_dip._widget.DIPWidget`): input, result, reference and uncertainty of the
    selected result layer, or of the last run, through a :class:`CompareView`
    (``self._compare_view``); the check box is ``self.compare``."""

    def _compared_layers(self) -> list:
        """Input, result, reference and uncertainty of the selected result layer (or of the
        last run)."""
        layers = self._viewer.layers
        active = layers.selection.active
        if active is not None and METADATA_KEY in getattr(active, "metadata", {}):
            record = active.metadata[METADATA_KEY]
            # an uncertainty map names its result
            result = self._layer(record.get("result_layer")) or active
        elif self._result_layers and self._result_layers[0] in layers:
            result = self._result_layers[0]
            record = result.metadata.get(METADATA_KEY, {})
        else:
            return []
        names = [record.get("source_layer"), result.name, record.get("reference_layer"),
                 record.get("uncertainty_layer")]
        if self.reference.value and self.reference.value not in names:
            names[2] = names[2] or self.reference.value
        return [self._layer(name) for name in names if name]

    def _on_compare(self, *_) -> None:
        if not self.compare.value:
            self._compare_view.leave()
            return
        try:
            self._compare_view.enter(self._compared_layers())
        except ValueError as exc:
            from napari.utils.notifications import show_info

            show_info(str(exc))
            with self.compare.changed.blocked():
                self.compare.value = False

    def _leave_compare(self) -> None:
        if self._compare_view.active:
            self._compare_view.leave()
        with self.compare.changed.blocked():
            self.compare.value = False


__all__ = ["CompareToggle", "CompareView", "canvas_size", "grid_of", "grid_shape"]
