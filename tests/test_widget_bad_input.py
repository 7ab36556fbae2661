"""Bad input in the dock widget (issue 14): refused before the run with the engine's
message naming the argument, shown as an error notification; no layer is added, no run
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
    ("constant image", np.full((48, 48), 0.5, np.float32), {}, {}, "image is constant"),
    ("image with NaN", np.where(GOOD > 0.9, np.nan, GOOD).astype(np.float32), {}, {},
     "image has .* NaN"),
    ("image beyond float32", GOOD.astype(np.float64) * 1e39, {}, {}, "image has values up to"),
    ("spread too small for float32", (1 + GOOD * 1e-6).astype(np.float64), {}, {},
     "image values span only"),
    ("mask of holes only", GOOD, {"holes": ("labels", np.ones((48, 48), np.uint8))},
     {"task": "inpaint", "mask": "holes"}, "no known pixel"),
    ("image too small", GOOD[:8, :8].copy(), {}, {}, "at least 16 pixels"),
    ("negative counts for poisson", GOOD - 0.5, {}, {"noise": "poisson"},
     "noise='poisson' needs non-negative"),
    ("mask of another shape", GOOD, {"holes": ("labels", _holes((40, 40)))},
     {"task": "inpaint", "mask": "holes"}, "mask has shape"),
    ("empty mask", GOOD, {"holes": ("labels", np.zeros((48, 48), np.uint8))},
     {"task": "inpaint", "mask": "holes"}, "mask marks no pixel"),
    ("flash of another size", GOOD, {"flash": ("image", RNG.random((40, 40)))},
     {"task": "flash_no_flash", "flash": "flash"}, "flash image is 40x40"),
    ("constant flash", GOOD, {"flash": ("image", np.ones((48, 48)))},
     {"task": "flash_no_flash", "flash": "flash"}, "flash image is constant"),
    ("noise sigma beyond the range", GOOD, {}, {"early_stop": True, "noise_level": "fixed",
                                 "noise_sigma": 50.0},
     "noise_sigma=50 is not smaller"),
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
