"""Make docs/screenshot.png: a real napari-dip run on a bundled sample, widget docked.

Run from the repository root; on a headless machine::

    xvfb-run -a -s "-screen 0 1920x1080x24" python docs/make_screenshot.py [sample] [out.png]

(``docs/screenshot.png`` is the MRI sample; ``docs/screenshot-sky.png`` the sky sample:
``python docs/make_screenshot.py sky docs/screenshot-sky.png``.)

The restoration uses the widget's defaults untouched (fast preset, early stopping, device
auto); afterwards the script lays out noisy input | restoration | ground truth in a grid.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

SAMPLE = sys.argv[1] if len(sys.argv) > 1 else "mri"
OUT = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_name("screenshot.png")


def main() -> None:
    import torch

    # leave a core to the GUI (on a 2-core machine this keeps the run fast)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    viewer = napari.Viewer(title="napari-dip")
    viewer.window._qt_window.resize(1700, 640)
    viewer.open_sample("napari-dip", SAMPLE)
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip", "Deep Image Prior")
    app = QApplication.instance()

    widget.run()  # the defaults: fast preset, early stopping, device auto
    start = time.perf_counter()
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.02)
    print(f"run took {time.perf_counter() - start:.0f} s: {widget.status.value}")

    # noisy input | restoration | ground truth, side by side with the truth's contrast
    names = [layer.name for layer in viewer.layers]
    truth = next(layer for layer in viewer.layers if layer.name.endswith("(ground truth)"))
    result = next(layer for layer in viewer.layers if "[DIP" in layer.name)
    noisy = viewer.layers[widget.image.value]
    for layer in [lay for lay in viewer.layers if lay not in (noisy, result, truth)]:
        viewer.layers.remove(layer)  # e.g. a mask: the grid shows the three images only
    truth.visible = True
    noisy.contrast_limits = result.contrast_limits = truth.contrast_limits
    # grid cells follow the layer list from the bottom: noisy | restored | truth
    viewer.layers.move(viewer.layers.index(truth), len(viewer.layers))
    for layer in (noisy, result, truth):
        try:  # name each grid cell (napari >= 0.6 keeps this overlay private)
            overlay = layer._overlays["layer_name"]
            overlay.font_size = 9
            overlay.visible = True
        except (AttributeError, KeyError):
            pass
    viewer.layers.selection.active = result
    viewer.canvas.grid.enabled = True
    viewer.canvas.grid.shape = (1, 3)
    viewer.reset_view()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.05)
    viewer.screenshot(path=str(OUT), canvas_only=False, flash=False)
    print("layers:", names, "->", OUT)
    viewer.close()


if __name__ == "__main__":
    main()
