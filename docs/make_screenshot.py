"""Make the README's screenshots: a real napari-dip run in a 1280x800 napari window, the
widget docked with its convergence plot, then input | result | ground truth side by side
through the widget's own "compare side by side" toggle.

Run from the repository root; on a headless machine::

    xvfb-run -a -s "-screen 0 1920x1080x24" python docs/make_screenshot.py [case] [out.png]

Cases: ``mri`` (docs/screenshot.png), ``hubble`` (docs/screenshot-hubble.png), ``sky``
(docs/screenshot-sky.png) and ``stack`` (docs/screenshot-stack.png: four noisy planes of
napari-dip's synthetic fluorescence volume, restored plane by plane with warm start).
``all`` makes the four.

The restoration uses the widget's defaults untouched (fast preset, early stopping, device
auto), apart from what a sample's hints select.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

HERE = Path(__file__).parent
OUTPUTS = {"mri": HERE / "screenshot.png", "hubble": HERE / "screenshot-hubble.png",
           "sky": HERE / "screenshot-sky.png", "stack": HERE / "screenshot-stack.png"}


def _fluorescence_stack(planes: int = 4, size: int = 96, sigma: float = 0.08, seed: int = 0):
    """Noisy planes of a synthetic fluorescence volume (filaments and blobs, made by
    :func:`napari_dip.samples.fluorescence`, nothing to download) and the clean ones, in
    [0, 1]."""
    from napari_dip import samples

    clean = samples.fluorescence((planes, size, size), peak=1.0, ramp=0.0, seed=seed)
    clean = (clean - clean.min()) / (clean.max() - clean.min())
    noisy = clean + np.random.default_rng(seed).normal(0, sigma, clean.shape)
    return noisy.astype(np.float32), clean.astype(np.float32)


def _settle(app, seconds: float = 1.0) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)


def shoot(case: str, out: Path) -> None:
    viewer = napari.Viewer(title="napari-dip")
    viewer.window._qt_window.resize(1280, 800)
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip", "Deep Image Prior")
    if case == "stack":
        noisy, clean = _fluorescence_stack()
        viewer.add_image(clean, name="filaments \u00b7 truth", visible=False)
        viewer.add_image(noisy, name="filaments")
        widget.reference.value = "filaments \u00b7 truth"
    else:
        viewer.open_sample("napari-dip", case)
    app = QApplication.instance()

    widget.run()
    start = time.perf_counter()
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.02)
    print(f"{case}: run took {time.perf_counter() - start:.0f} s: {widget.status.value}")

    for layer in [lay for lay in viewer.layers if lay.__class__.__name__ == "Labels"]:
        layer.visible = False  # the grid shows the images; the mask stays in the list
    widget.compare.value = True  # input | result | reference, by the widget's toggle
    shown = [layer for layer in viewer.layers if layer.visible]
    truth = next((lay for lay in shown if lay.name.endswith("\u00b7 truth")), None)
    if truth is not None:
        for layer in shown:
            layer.contrast_limits = truth.contrast_limits
    for layer in shown:
        try:  # name each grid cell (napari >= 0.6 keeps this overlay private)
            overlay = layer._overlays["layer_name"]
            overlay.font_size = 9
            overlay.visible = True
        except (AttributeError, KeyError):
            pass
    viewer.reset_view()
    _settle(app)
    widget.plot.flush()
    _settle(app, 0.5)
    viewer.screenshot(path=str(out), canvas_only=False, flash=False)
    print("layers:", [layer.name for layer in viewer.layers], "->", out)
    viewer.close()


def main() -> None:
    import torch

    # leave a core to the GUI (on a 2-core machine this keeps the run fast)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    case = sys.argv[1] if len(sys.argv) > 1 else "mri"
    if case == "all":
        for name, path in OUTPUTS.items():
            shoot(name, path)
        return
    shoot(case, Path(sys.argv[2]) if len(sys.argv) > 2 else OUTPUTS[case])


if __name__ == "__main__":
    main()
