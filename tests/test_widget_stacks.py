"""The napari widget with stacks, volumes and large images (needs napari, Qt and a display)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dip._layers import Geometry, layer_axes
from napari_dip._runner import format_progress, progress_value
from napari_dip.records import Step


# -- Qt-free helpers -----------------------------------------------------------------------
def test_layer_axes():
    assert layer_axes(2, False) == "YX"
    assert layer_axes(2, True) == "YXC"
    assert layer_axes(3, False, ("z", "y", "x")) == "ZYX"
    assert layer_axes(3, False, ("axis -3", "axis -2", "axis -1")) == "ZYX"
    assert layer_axes(3, False, ("Time", "y", "x")) == "TYX"
    assert layer_axes(4, True) == "TZYXC"
    with pytest.raises(ValueError, match="up to 4"):
        layer_axes(5, False)


def test_progress_of_a_stack():
    step = Step(iteration=30, total=400, loss=0.002, elapsed=3.0, plane=2, planes=8,
                run_iteration=1530, run_total=4300, run_elapsed=60.0)
    text = format_progress(step)
    assert text.startswith("plane 2 / 8 \u00b7 iteration 30 / 400")
    assert progress_value(step) == (1530, 4300)
    tiled = Step(iteration=1, total=10, loss=0.1, elapsed=1.0, tile=3, tiles=9,
                 run_iteration=21, run_total=90, run_elapsed=2.0)
    assert "tile 3 / 9 \u00b7 iteration 1 / 10" in format_progress(tiled)
    assert progress_value(Step(iteration=5, total=20, loss=0.1, elapsed=1.0)) == (5, 20)


def test_geometry_of_a_plane_and_of_thin_slices():
    g = Geometry(scale=(3.0, 0.5, 0.5), translate=(10.0, 1.0, 2.0), axis_labels=("z", "y", "x"))
    plane = g.at_plane((4,))
    assert plane.translate == (22.0, 1.0, 2.0) and plane.scale == g.scale
    thin = g.upsampled(3, axes=(-3,))
    assert thin.scale == (1.0, 0.5, 0.5) and thin.translate == pytest.approx((9.0, 1.0, 2.0))


# -- in napari ------------------------------------------------------------------------------
napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from widget_helpers import (  # noqa: E402,F401
    errors,
    open_widget,
    run_for_layer,
    run_to_end,
    shown,
)

from napari_dip import _widget, restore  # noqa: E402
from napari_dip._layers import METADATA_KEY  # noqa: E402


def _stack(planes=3, size=32, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    clean = np.stack([0.5 + 0.3 * np.sin(6 * xx + k) * np.cos(4 * yy) for k in range(planes)])
    return (clean + rng.normal(0, 0.1, clean.shape)).astype(np.float32)


def _open(viewer):
    return open_widget(viewer, iterations=3)


@pytest.mark.gui
def test_stack_options_follow_the_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(_stack()[0], name="plane")
    viewer.add_image(_stack(), name="stack", scale=(2.0, 0.5, 0.5))
    viewer.add_image(_stack(), name="movie", axis_labels=("t", "y", "x"))
    widget = _open(viewer)
    widget.image.value = "plane"
    assert not shown(widget.stack_mode) and not shown(widget.warm_start)
    assert shown(widget.tiling) and not shown(widget.tile_size)
    widget.image.value = "stack"
    assert shown(widget.stack_mode) and shown(widget.warm_start)
    assert list(widget.stack_mode.choices) == ["slices", "volume", "plane"]
    kwargs, arrays, _ = widget.restore_arguments()
    assert kwargs["axes"] == "ZYX" and kwargs["mode"] == "slices"
    assert kwargs["warm_start"] is True and "channel_axis" not in kwargs
    assert arrays["image"].shape == (3, 32, 32)
    widget.stack_mode.value = "volume"
    assert not shown(widget.tiling) and not shown(widget.keep_stack)
    kwargs, _, _ = widget.restore_arguments()
    assert kwargs["mode"] == "volume" and kwargs["spacing"] == [2.0, 0.5, 0.5]
    widget.image.value = "movie"  # time, not depth: no volume
    assert list(widget.stack_mode.choices) == ["slices", "plane"]
    assert widget.restore_arguments()[0]["axes"] == "TYX"
    widget.tiling.value = "fixed"
    assert shown(widget.tile_size) and shown(widget.tile_overlap)
    widget.tile_size.value = 64
    widget.tile_overlap.value = 48
    kwargs = widget.restore_arguments()[0]
    assert kwargs["tile"] == 64 and kwargs["overlap"] == 32  # at most half a tile


@pytest.mark.gui
def test_slices_keep_the_layers_geometry_and_report_planes(make_napari_viewer, qtbot, errors,
                                                          monkeypatch):
    viewer = make_napari_viewer()
    data = _stack()
    original = data.copy()
    viewer.add_image(data, name="stack", scale=(2.0, 0.5, 0.5), translate=(5.0, 10.0, 20.0),
                     axis_labels=("z", "y", "x"), units=("um", "um", "um"))
    widget = _open(viewer)
    widget.warm_start.value = False
    widget.preview_every.value = 1
    texts: list[str] = []
    monkeypatch.setattr(_widget, "format_progress",
                        lambda step, *a: texts.append(format_progress(step, *a)) or texts[-1])
    run_to_end(qtbot, widget)
    assert errors == []
    result = viewer.layers["stack · DIP denoise"]
    assert result.data.shape == (3, 32, 32)
    np.testing.assert_allclose(result.scale, (2.0, 0.5, 0.5))
    np.testing.assert_allclose(result.translate, (5.0, 10.0, 20.0))
    assert tuple(result.axis_labels) == ("z", "y", "x")
    assert tuple(str(u) for u in result.units) == ("micrometer",) * 3
    record = result.metadata[METADATA_KEY]
    assert record["parameters"]["axes"] == "ZYX" and len(record["parts"]) == 3
    assert record["restore_kwargs"]["warm_start"] is False
    same = restore(original, **record["restore_kwargs"])
    np.testing.assert_allclose(result.data, same.image, atol=1e-5)
    assert any(t.startswith("plane 3 / 3") for t in texts)
    assert "3 planes" in widget.status.value
    np.testing.assert_array_equal(viewer.layers["stack"].data, original)


@pytest.mark.gui
def test_only_the_current_plane(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    data = _stack(planes=4)
    viewer.add_image(data, name="stack", scale=(3.0, 1.0, 1.0), translate=(1.0, 0.0, 0.0))
    widget = _open(viewer)
    viewer.dims.current_step = (2, 0, 0)
    widget.stack_mode.value = "plane"
    assert widget.current_plane(viewer.layers["stack"]) == (2,)
    run_to_end(qtbot, widget)
    assert errors == []
    result = viewer.layers["stack · DIP denoise · plane 2"]
    assert result.data.shape == (1, 32, 32)
    np.testing.assert_allclose(result.translate, (1.0 + 2 * 3.0, 0.0, 0.0))
    np.testing.assert_allclose(result.scale, (3.0, 1.0, 1.0))
    alone = restore(data[2], iterations=3, early_stop=False, seed=0, device="cpu")
    np.testing.assert_allclose(result.data[0], alone.image, atol=1e-6)
    assert result.metadata[METADATA_KEY]["inputs"]["plane"] == [2]


@pytest.mark.gui
def test_volume_and_tiles(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    viewer.add_image(_stack(planes=4, size=16), name="volume")
    viewer.add_image(_stack(planes=1, size=80)[0], name="large")
    widget = _open(viewer)
    widget.iterations.value = 1
    widget.image.value = "volume"
    widget.stack_mode.value = "volume"
    volume, record = run_for_layer(qtbot, widget, "volume · DIP denoise", errors)
    assert volume.data.shape == (4, 16, 16)
    assert record["parameters"]["mode"] == "volume"

    widget.image.value = "large"
    widget.tiling.value = "fixed"
    widget.tile_size.value = 48
    widget.tile_overlap.value = 12
    tiled, record = run_for_layer(qtbot, widget, "large · DIP denoise", errors)
    assert tiled.data.shape == (80, 80)
    params = record["parameters"]
    assert params["tile"] == 48 and params["tiles"] == 4
    assert "4 tiles" in widget.status.value
