"""A widget a scientist reads at a glance (issue 17): texts that fit at 1280x800, progress
in napari's activity dock and a status line that says "plane", errors in full in the widget,
settings that follow the layer, the live convergence plot, compare side by side, short
layer names.

Needs napari, Qt and a display (run under ``xvfb-run -a``)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytest.importorskip("pyqtgraph")

from widget_helpers import errors, open_widget, run_for_layer, run_to_end  # noqa: E402,F401

from napari_dip import _widget  # noqa: E402
from napari_dip._compare import grid_of  # noqa: E402
from napari_dip._layers import METADATA_KEY  # noqa: E402

pytestmark = pytest.mark.gui


def _noisy(size=48, seed=0, sigma=0.1):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    clean = (0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy)).astype(np.float32)
    return (clean + rng.normal(0, sigma, clean.shape)).astype(np.float32), clean


def _shown_viewer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    qtbot.wait(50)
    return viewer


def _cut_texts(widget) -> list[str]:
    """Texts of visible labels, buttons and check boxes that do not fit their widget."""
    from qtpy.QtWidgets import QAbstractButton, QCheckBox, QLabel

    cut = []
    for child in widget.native.findChildren(QLabel) + widget.native.findChildren(
            QAbstractButton):
        if not child.isVisibleTo(widget.native) or not child.text():
            continue
        metrics = child.fontMetrics()
        if isinstance(child, QLabel) and child.wordWrap():
            # a wrapping label must be as tall as its text needs at its width
            if child.height() + 1 < child.heightForWidth(child.width()):
                cut.append(f"{child.text()!r}: {child.height()} px high, needs "
                           f"{child.heightForWidth(child.width())}")
            continue
        needed = metrics.horizontalAdvance(child.text())
        if isinstance(child, QCheckBox):
            needed += 24  # the box itself and its spacing
        elif isinstance(child, QAbstractButton):
            needed += 8
        if needed > child.width():
            cut.append(f"{child.text()!r}: {child.width()} px wide, needs {needed}")
    return cut


def test_every_text_fits_at_1280x800(make_napari_viewer, qtbot, errors):
    viewer = _shown_viewer(make_napari_viewer, qtbot)
    noisy, _ = _noisy()
    viewer.add_image(np.stack([noisy, noisy[::-1], noisy.T]), name="stack")
    widget = open_widget(viewer, iterations=6)
    widget.warm_start.value = False
    statuses: list[str] = []
    original = widget._run_panel.set_status

    def record(text):
        original(text)
        statuses.append(text)
        # a wrapping label takes its new height at the next layout pass or two
        try:
            qtbot.waitUntil(lambda: not _cut_texts(widget), timeout=1000)
        except AssertionError:
            cut.extend(_cut_texts(widget))

    cut: list[str] = []

    widget._run_panel.set_status = record
    run_to_end(qtbot, widget)
    assert errors == [] and cut == []
    assert any(text.startswith("plane 2 / 3 \u00b7 iteration") for text in statuses)
    assert "3 planes" in widget.status.value and "Added \u201cstack \u00b7 DIP denoise\u201d" \
        in widget.status.value
    qtbot.wait(50)
    assert not _cut_texts(widget)
    # the settings scroll; Run, the status and the plot stay in view of a 1280x800 window,
    # which keeps its size
    window = viewer.window._qt_window
    assert window.height() <= 800, f"the widget made the window {window.height()} px high"
    scroll = widget._scroll
    assert scroll.verticalScrollBar().maximum() > 0  # more settings than the dock shows
    for control in (widget.iterations, widget.reference):
        assert scroll.isAncestorOf(control.native)
    for shown_whole in (widget.run_button.native, widget.status.native, widget.plot.native):
        assert not scroll.isAncestorOf(shown_whole)
        assert shown_whole.visibleRegion().boundingRect().size() == shown_whole.size()
    # a long error wraps to several lines and is shown whole
    widget._report_error(ValueError("mask has shape (40, 40) but the image is 48x48 pixels "
                                    "(Y, X); pass a 2-D mask of the same Y, X shape"))
    qtbot.wait(50)
    assert widget.error.native.isVisible()
    assert widget.error.native.height() > 2 * widget.error.native.fontMetrics().height()
    assert not _cut_texts(widget)


def test_errors_are_shown_in_full_in_the_widget(make_napari_viewer, errors):
    viewer = make_napari_viewer()
    noisy, _ = _noisy()
    viewer.add_image(noisy, name="noisy")
    holes = np.zeros((40, 40), np.uint8)
    holes[3:9, 3:9] = 1
    viewer.add_labels(holes, name="holes")
    widget = open_widget(viewer, iterations=5)
    widget.image.value = "noisy"
    widget.task.value = "inpaint"
    widget.mask.value = "holes"
    assert widget.run() is None
    text = widget.error.value
    assert text.startswith("Mask has shape (40, 40) but the image is 48x48 pixels")
    assert text.endswith("Choose a mask layer of the same size as the image (48\u00d748).")
    assert errors == [text]  # the notification says the same
    assert not widget.error.native.isHidden()
    # the next run that starts clears it
    widget.task.value = "denoise"
    widget.run()
    assert widget.error.native.isHidden() and widget.error.value == ""
    widget.stop()


def test_sample_settings_apply_only_while_the_sample_is_chosen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    widget.noise.value = "gaussian"
    viewer.open_sample("napari-dip", "hubble")
    assert widget.image.value == "hubble"  # not the hidden ground truth added first
    assert widget.noise.value == "poisson"
    assert widget.reference.value == "hubble \u00b7 truth"
    noisy, _ = _noisy()
    viewer.add_image(noisy, name="my image")  # the user's own image: the picker follows
    assert widget.image.value == "my image"
    assert widget.noise.value == "gaussian" and widget.reference.value is None
    viewer.layers.selection.active = viewer.layers["hubble"]  # selecting follows too
    assert widget.image.value == "hubble" and widget.noise.value == "poisson"
    # what the user set before choosing the sample comes back
    viewer.layers.selection.active = viewer.layers["my image"]
    widget.task.value = "deblur"
    viewer.layers.selection.active = viewer.layers["hubble"]
    assert widget.task.value == "denoise"
    viewer.layers.selection.active = viewer.layers["my image"]
    assert widget.task.value == "deblur"


def test_the_picker_never_takes_a_hidden_ground_truth_by_itself(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    viewer.open_sample("napari-dip", "cell")
    noisy, _ = _noisy()
    viewer.add_image(noisy, name="other")
    viewer.layers.remove("other")
    assert widget.image.value == "cell"
    viewer.layers.remove("cell")  # only the truth is left: it stays available, not chosen
    assert widget.image.value is None
    assert "cell \u00b7 truth" in widget.image.choices
    widget.image.value = "cell \u00b7 truth"  # chosen by the user: kept
    noisy, _ = _noisy()
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="labels")
    assert widget.image.value == "cell \u00b7 truth"


def test_the_plot_draws_the_whole_run(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    noisy, clean = _noisy(sigma=0.1)
    viewer.add_image(noisy, name="noisy")
    viewer.add_image(clean, name="clean", visible=False)
    widget = open_widget(viewer, iterations=300)
    widget.ensemble.value = 1  # one fit (the compare view below shows no uncertainty)
    widget.early_stop.value = True
    widget.noise_level.value = "fixed"
    widget.noise_sigma.value = 0.1
    widget.reference.value = "clean"
    widget.preview_every.value = 10
    result, record = run_for_layer(qtbot, widget, "noisy \u00b7 DIP denoise", errors)
    history = record["history"]["loss"]
    x, y = widget.plot.series()["loss"]
    assert len(x) == len(history) == record["iterations_run"]  # one point per step
    np.testing.assert_allclose(y, history, rtol=1e-6)
    expected = (0.1 / float(noisy.max() - noisy.min())) ** 2  # sigma^2 in the loss's units
    assert widget.plot.threshold == pytest.approx(expected, rel=1e-6)
    assert widget.plot.kept_line == record["stopped_at"]
    px, py = widget.plot.series()["psnr"]
    assert len(px) >= record["iterations_run"] // 10
    assert np.all(np.isfinite(py)) and py.max() > 20
    # the plot's drawing stays within its budget of the run's time
    assert widget.plot.spent < 0.05 * record["elapsed_s"] + 0.05
    # the compare toggle: input, result and reference side by side, then back
    before = {layer.name: layer.visible for layer in viewer.layers}
    widget.compare.value = True
    assert grid_of(viewer).enabled
    assert {layer.name for layer in viewer.layers if layer.visible} == \
        {"noisy", "noisy \u00b7 DIP denoise", "clean"}
    widget.compare.value = False
    assert not grid_of(viewer).enabled
    assert {layer.name: layer.visible for layer in viewer.layers} == before


def test_runs_show_in_napari_activity_and_name_layers_short(make_napari_viewer, qtbot,
                                                            monkeypatch):
    from napari.utils import progress

    bars = []
    real = _widget.napari_progress

    def keep(*args, **kwargs):
        bars.append(real(*args, **kwargs))
        return bars[-1]

    monkeypatch.setattr(_widget, "napari_progress", keep)
    viewer = make_napari_viewer()
    noisy, _ = _noisy()
    viewer.add_image(noisy, name="noisy")
    widget = open_widget(viewer, iterations=20)
    widget.ensemble.value = 1  # one fit: no uncertainty layer
    run_to_end(qtbot, widget)
    assert len(bars) == 1 and bars[0].total == 20 and bars[0].n == 20
    assert bars[0].desc.startswith("napari-dip: noisy \u00b7 DIP denoise")
    assert bars[0] not in progress._all_instances  # closed
    names = [layer.name for layer in viewer.layers]
    assert names == ["noisy", "noisy \u00b7 DIP denoise"]
    description = viewer.layers[-1].metadata[METADATA_KEY]["description"]
    assert description.startswith("noisy restored with DIP denoise (gaussian noise model")
    assert "reached the limit (20 iterations)" in widget.status.value


def test_an_ensemble_adds_its_uncertainty_and_compare_shows_it(make_napari_viewer, qtbot,
                                                               errors):
    viewer = make_napari_viewer()
    noisy, _ = _noisy(size=32)
    viewer.add_image(noisy * 1000, name="noisy")  # the uncertainty is in the input's units
    widget = open_widget(viewer, iterations=8)
    widget.ensemble.value = 3
    result, record = run_for_layer(qtbot, widget, "noisy \u00b7 DIP denoise", errors)
    assert record["parameters"]["ensemble"] == 3
    spread = viewer.layers["noisy \u00b7 DIP denoise \u00b7 uncertainty"]
    assert record["uncertainty_layer"] == spread.name
    assert spread.data.shape == result.data.shape == noisy.shape
    assert spread.data.dtype == np.float32 and not spread.visible
    assert np.all(spread.data >= 0) and 1 < float(spread.data.mean()) < 1000
    assert spread.metadata[METADATA_KEY]["holds"].startswith("the ensemble's per-pixel")
    assert viewer.layers.selection.active.name == result.name  # not the hidden map
    compared = ["noisy", "noisy \u00b7 DIP denoise", "noisy \u00b7 DIP denoise \u00b7 uncertainty"]
    for selected in (result, spread):  # the map's own record names its result
        viewer.layers.selection.active = selected
        widget.compare.value = True
        assert [layer.name for layer in viewer.layers if layer.visible] == compared
        widget.compare.value = False
        assert not spread.visible and viewer.layers["noisy"].visible
