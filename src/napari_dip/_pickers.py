"""The dock widget's layer pickers: which layers each combo box offers, which one the image
picker takes by itself (it follows the layer the user adds or selects, never a hidden
ground truth, nor the widget's own preview or result), the sample layers' hints applied
only while that layer is the image, and the reference layer's pixels for the PSNR.

:class:`LayerPickers` is a mixin of :class:`napari_dip._widget.DIPWidget`: it uses the
widget's viewer (``self._viewer``), its combo boxes (``image``, ``mask``, ``flash``,
``psf_layer``, ``reference``) and its run in progress (``self._session``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_info

from ._layers import METADATA_KEY, sample_hints
from ._settings import axes_of, layer_data, spatial_ndim

#: The controls a sample layer's hints set (while that layer is the image), with the hint
#: that sets each; a ``noise_sigma`` hint (the sample's known noise level) also sets the
#: noise level to "fixed" at that value.
HINTED = {"task": "task", "noise": "noise", "mask": "mask_layer", "reference": "truth_layer"}


class LayerPickers:
    """The widget's layer choices (see the module's docstring)."""

    _before_hints: dict[str, Any]  # values the sample hints replaced
    _adding: bool  # True while the widget adds layers itself

    def _axes(self) -> str | None:
        """The axes of the chosen image layer (None if there is none, or it has too many)."""
        layer = self._layer(self.image.value)
        if layer is None:
            return None
        try:
            return axes_of(layer)
        except ValueError:
            return None

    def _names(self, kind) -> list[str]:
        # Topmost first, so a freshly opened image is the default choice.
        return [layer.name for layer in reversed(list(self._viewer.layers))
                if isinstance(layer, kind)]

    def _image_choices(self, _widget=None) -> list:
        own = {None if self._session is None else self._session.preview_name}
        return [name for name in self._names(Image) if name not in own]

    def _labels_choices(self, _widget=None) -> list:
        return self._names(Labels)

    def _reference_choices(self, _widget=None) -> list:
        return [None, *self._image_choices()]

    def _refresh_choices(self, *_) -> None:
        before = self.image.value
        for combo in (self.image, self.mask, self.flash, self.psf_layer, self.reference):
            combo.reset_choices()
        if before is not None and before in self.image.choices:
            if self.image.value != before:
                self.image.value = before
        elif self._session is None:  # the chosen layer went: take one the picker may take
            good = [name for name in self.image.choices if self._follows(self._layer(name))]
            self.image.value = good[0] if good else None

    def _follows(self, layer) -> bool:
        """Whether the image picker may choose ``layer`` by itself: an Image layer that is
        not a hidden sample's ground truth, nor the widget's own preview or result."""
        if not isinstance(layer, Image) or layer.name not in self.image.choices:
            return False
        if sample_hints(layer.metadata).get("role") == "truth" or not layer.visible:
            return False
        return METADATA_KEY not in layer.metadata

    def _on_layer_inserted(self, event) -> None:
        self._refresh_choices()
        layer = event.value
        if self._session is None and not self._adding and self._follows(layer):
            self.image.value = layer.name

    def _on_active_layer(self, event) -> None:
        """The picker follows the Image layer the user selects (not while a run goes, nor
        when the widget adds its own layers)."""
        layer = event.value
        if self._session is None and not self._adding and isinstance(layer, Image) \
                and layer.name in self.image.choices and METADATA_KEY not in layer.metadata:
            self.image.value = layer.name

    def _apply_sample_hints(self, *_) -> None:
        """Sample layers carry the settings they were made for: they apply while that layer
        is the image; choosing another layer gives the hinted controls back the values they
        had before (the defaults, or what the user set)."""
        layer = self._layer(self.image.value)
        hints = sample_hints(getattr(layer, "metadata", None))
        if hints.get("role") != "degraded":
            for name, value in self._before_hints.items():
                control = getattr(self, name)
                if value is None or not hasattr(control, "choices") or value in control.choices:
                    control.value = value
            self._before_hints = {}
            return
        values = {name: hints.get(hint) for name, hint in HINTED.items()}
        values["noise"] = values["noise"] or "gaussian"
        if hints.get("noise_sigma") is not None:  # the sample's known noise level
            values.update(noise_level="fixed", noise_sigma=float(hints["noise_sigma"]))
        for name, value in values.items():
            control = getattr(self, name)
            if value is None or (hasattr(control, "choices") and value not in control.choices):
                continue
            self._before_hints.setdefault(name, control.value)
            control.value = value

    def _layer(self, name):
        if name is None:
            return None
        try:
            return self._viewer.layers[name]
        except (KeyError, ValueError):
            return None

    def current_plane(self, layer) -> tuple[int, ...]:
        """Index, on the layer's leading (non-Y, non-X) axes, of the plane on screen."""
        leading = spatial_ndim(layer) - 2
        position = layer.world_to_data(self._viewer.dims.point)
        shape = layer_data(layer).shape
        return tuple(int(np.clip(np.round(position[ax]), 0, shape[ax] - 1))
                     for ax in range(leading))

    def _reference_for(self, session) -> np.ndarray | None:
        """The reference layer's pixels when they match the result's shape, else None."""
        layer = self._layer(self.reference.value)
        if layer is None:
            return None
        data = layer_data(layer)
        expected = session.canvas_from.blank().shape
        if session.plane is not None:  # only the current plane: compare that plane
            data = data[tuple(session.plane)]
            expected = expected[len(session.plane):]
        if data.shape != tuple(expected):
            show_info(f"reference {layer.name!r} is {data.shape}, the result will be "
                      f"{tuple(expected)}: no PSNR is plotted")
            return None
        return np.asarray(data, dtype=np.float32)
