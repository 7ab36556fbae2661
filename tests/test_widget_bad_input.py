"""Bad input in the dock widget (issues 14, 17): refused before the run with a message in
the widget's words (its controls, not keyword arguments) that ends with what to do, shown
as an error notification; no layer is added, no run
starts, and the input layers' data stay as they were.

Needs napari, Qt and a display (run under ``xvfb-run -a``)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from widget_helpers import errors, open_widget  # noqa: F401

pytestmark = pytest.mark.gui

RNG = np.random.default_rng(3)
GOOD = RNG.random((48, 48)).astype(np.float32)


def _holes(shape=(48, 48)):
    labels = np.zeros(shape, np.uint8)
    labels[10:16, 10:16] = 1
    return labels


# (name, image data, extra layers {name: (kind, data)}, widget settings, expected text)
CASES = [
    ("constant image", np.full((48, 48), 0.5, np.float32), {}, {},
     r"^Image is constant .* Choose an image layer that has some contrast\.$"),
    ("image with NaN", np.where(GOOD > 0.9, np.nan, GOOD).astype(np.float32), {}, {},
     "^Image has 235 NaN .* run the \u201cinpaint\u201d task with it as the mask\\.$"),
    ("image beyond float32", GOOD.astype(np.float64) * 1e39, {}, {},
     r"^Image has values up to 1e\+39.* Scale the layer down"),
    ("spread too small for float32", (1 + GOOD * 1e-6).astype(np.float64), {}, {},
     "^Image values span only .* Subtract the layer's minimum"),
    ("mask of holes only", GOOD, {"holes": ("labels", np.ones((48, 48), np.uint8))},
     {"task": "inpaint", "mask": "holes"}, "no known pixel"),
    ("image too small", GOOD[:8, :8].copy(), {}, {},
     "^Image is 8x8 pixels\\. Choose an image of at least 16\u00d716 pixels\\.$"),
    ("negative counts for poisson", GOOD - 0.5, {}, {"noise": "poisson"},
     r"^The Poisson \(photon counts\) noise model needs non-negative.* or choose the "
     r"Gaussian noise model\.$"),
    ("mask of another shape", GOOD, {"holes": ("labels", _holes((40, 40)))},
     {"task": "inpaint", "mask": "holes"},
     "^Mask has shape \\(40, 40\\).* same size as the image \\(48\u00d748\\)\\.$"),
    ("empty mask", GOOD, {"holes": ("labels", np.zeros((48, 48), np.uint8))},
     {"task": "inpaint", "mask": "holes"}, "^Mask marks no pixel .* Paint the pixels to fill"),
    ("flash of another size", GOOD, {"flash": ("image", RNG.random((40, 40)))},
     {"task": "flash_no_flash", "flash": "flash"},
     "^Flash image is 40x40 .* Choose a flash image of the same size"),
    ("constant flash", GOOD, {"flash": ("image", np.ones((48, 48)))},
     {"task": "flash_no_flash", "flash": "flash"},
     r"^Flash image is constant\. Choose a flash shot"),
    ("noise sigma beyond the range", GOOD, {}, {"early_stop": True, "noise_level": "fixed",
                                                 "noise_sigma": 50.0},
     "^A noise \u03c3 of 50 is not smaller .* Give the noise \u03c3 in the image's own units"),
]


@pytest.mark.parametrize("name, image, extra, settings, message", CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input_in_the_widget_is_refused_before_the_run(make_napari_viewer, errors, name,
                                                           image, extra, settings, message):
    import re

    viewer = make_napari_viewer()
    viewer.add_image(image, name="input")
    for layer_name, (kind, data) in extra.items():
        (viewer.add_labels if kind == "labels" else viewer.add_image)(data, name=layer_name)
    copies = {layer.name: np.array(layer.data, copy=True) for layer in viewer.layers}
    widget = open_widget(viewer, iterations=5)
    widget.image.value = "input"
    for control, value in settings.items():
        getattr(widget, control).value = value
    names = [layer.name for layer in viewer.layers]
    assert widget.run() is None  # refused: no worker
    assert widget.worker is None and widget.run_button.text == "Run"
    assert len(errors) == 1 and re.search(message, errors[0]), errors
    assert [layer.name for layer in viewer.layers] == names
    for layer in viewer.layers:
        np.testing.assert_array_equal(layer.data, copies[layer.name])
        assert layer.data.dtype == copies[layer.name].dtype
