"""The napari plugin: manifest, dock widgets, runs in a thread worker, sample data.

Needs napari, Qt and a display (run under ``xvfb-run -a``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari.layers import Image, Labels  # noqa: E402
from widget_helpers import (  # noqa: E402,F401
    PLUGIN,
    TIMEOUT_MS,
    errors,
    open_widget,
    run_for_layer,
    run_to_end,
    shown,
)

import napari_dip  # noqa: E402
from napari_dip import _widget  # noqa: E402
from napari_dip._layers import METADATA_KEY  # noqa: E402

pytestmark = pytest.mark.gui

WIDGETS = {"Deep Image Prior": "dip", "DeepRED": "deepred"}


def _noisy(size=48, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    clean = 0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy)
    return (clean + rng.normal(0, 0.1, clean.shape)).astype(np.float32)


def _open(viewer, name="Deep Image Prior"):
    return open_widget(viewer, name, iterations=12)


# -- manifest and widgets ----------------------------------------------------------------
def test_manifest_validates():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution(PLUGIN)
    manifest.validate_imports()  # every python_name resolves
    path = Path(napari_dip.__file__).parent / "napari.yaml"
    assert PluginManifest.from_file(path).name == PLUGIN
    assert {w.display_name for w in manifest.contributions.widgets} == set(WIDGETS)
    filters = manifest.contributions.menus["napari/layers/filter"]
    assert {item.command for item in filters} == {"napari-dip.dip_widget",
                                                  "napari-dip.deepred_widget"}
    assert {s.key for s in manifest.contributions.sample_data} >= {"hubble", "cell", "mri",
                                                                   "inpainting"}


def test_widgets_open_from_the_layers_filter_menu(make_napari_viewer):
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    app = get_app_model()
    commands = [item.command.id for item in app.menus.get_menu("napari/layers/filter")
                if hasattr(item, "command")]
    for display, method in WIDGETS.items():
        command = f"napari-dip.{method}_widget"
        assert command in commands
        app.commands.execute_command(command).result()
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, display)  # the docked one
        assert isinstance(widget, _widget.DIPWidget)
        assert widget.method.value == method
        assert "cpu" in widget.device.choices and widget.device.value == "auto"
    assert len(viewer.window.dock_widgets) == 2


def test_task_dependent_options(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(_noisy(), name="noisy")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Deep Image Prior")
    # the iteration limit follows preset and task until the user sets one
    assert widget.iterations.value == 1500
    assert widget.restore_arguments()[0]["iterations"] is None
    widget.task.value = "inpaint"
    assert widget.iterations.value == 3000
    widget.preset.value = "paper"
    assert widget.iterations.value == 6000
    widget.iterations.value = 250
    widget.task.value = "denoise"
    assert widget.iterations.value == 250
    assert widget.restore_arguments()[0]["iterations"] == 250
    options = {"inpaint": "mask", "super_resolution": "factor", "deblur": "kernel",
               "flash_no_flash": "flash"}
    for task in ("denoise", *options):
        widget.task.value = task
        for other_task, option in options.items():
            assert shown(getattr(widget, option)) == (task == other_task)
    assert not shown(widget.denoiser)
    kwargs, _, _ = widget.restore_arguments()
    assert "denoiser" not in kwargs and "denoiser_sigma" not in kwargs
    widget.method.value = "deepred"
    assert shown(widget.denoiser) and shown(widget.sigma_mode)
    assert not shown(widget.denoiser_sigma)
    kwargs, _, _ = widget.restore_arguments()
    assert kwargs["denoiser"] == "nlm" and "denoiser_sigma" not in kwargs  # task default
    widget.sigma_mode.value = "auto"
    assert widget.restore_arguments()[0]["denoiser_sigma"] == "auto"
    widget.sigma_mode.value = "fixed"
    assert shown(widget.denoiser_sigma)
    widget.denoiser_sigma.value = 0.05
    widget.denoiser.value = "tv"
    kwargs = widget.restore_arguments()[0]
    assert kwargs["denoiser_sigma"] == pytest.approx(0.05) and kwargs["denoiser"] == "tv"


def test_noise_level_options(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(_noisy(), name="noisy")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Deep Image Prior")
    assert shown(widget.noise_level) and not shown(widget.noise_sigma)
    assert widget.restore_arguments()[0]["noise_sigma"] == "auto"
    widget.noise_level.value = "fixed"
    assert shown(widget.noise_sigma)
    widget.noise_sigma.value = 0.1
    assert widget.restore_arguments()[0]["noise_sigma"] == pytest.approx(0.1)
    widget.noise_level.value = "none"
    assert widget.restore_arguments()[0]["noise_sigma"] is None
    widget.noise_level.value = "fixed"
    # where no noise level applies the control hides and the engine's default goes
    for control, value in ((widget.noise, "poisson"), (widget.early_stop, False),
                           (widget.task, "flash_no_flash")):
        before = control.value
        control.value = value
        assert not shown(widget.noise_level) and not shown(widget.noise_sigma)
        assert "noise_sigma" not in widget.restore_arguments()[0]
        control.value = before
        assert shown(widget.noise_sigma), control.label
    widget.method.value = "deepred"  # DeepRED stops at the noise level too
    assert shown(widget.noise_level) and shown(widget.noise_sigma)
    assert widget.restore_arguments()[0]["noise_sigma"] == pytest.approx(0.1)


# -- runs ----------------------------------------------------------------------------------
@pytest.mark.classical_blend
@pytest.mark.auto_ensemble
def test_a_default_run_says_it_blended_with_bm3d(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    viewer.add_image(_noisy(), name="noisy")
    widget = _open(viewer)
    widget.early_stop.value = True  # the default (the helper turns it off)
    run_to_end(qtbot, widget)
    assert errors == []
    record = viewer.layers["noisy · DIP denoise"].metadata[METADATA_KEY]
    params = record["parameters"]
    assert params["classical"] == "bm3d" and params["ensemble"] == 1
    assert "blend" not in record["restore_kwargs"]  # the default stays out of the call
    assert [lay.name for lay in viewer.layers] == ["noisy", "noisy · DIP denoise"]
    weight = params["classical_blend_weight"]
    assert f"blended with BM3D (network {weight:.2f})" in widget.status.value
    assert not widget.blend.native.isHidden()
    widget.method.value = "deepred"
    assert not widget.blend.native.isHidden()  # DeepRED blends too
    widget.blend.value = False
    assert widget.restore_arguments()[0]["blend"] is False


@pytest.mark.auto_ensemble
def test_run_adds_result_with_geometry_metadata_and_stack(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    data = _noisy()
    original = data.copy()
    layer = viewer.add_image(data, name="noisy", scale=(0.5, 0.5), translate=(10.0, 20.0),
                             units=("um", "um"), axis_labels=("y", "x"))
    widget = _open(viewer)
    widget.keep_stack.value = True
    widget.stack_every.value = 4
    widget.preview_every.value = 3
    widget.seed.value = 7
    assert widget.blend.value is True
    widget.blend.value = False  # the network alone, whose "auto" is two fits
    run_to_end(qtbot, widget)

    assert errors == []
    names = [lay.name for lay in viewer.layers]
    # ensemble "auto" (the control's 0) averages two fits on a plane this small
    assert widget.ensemble.value == 0 and widget.ensemble.label == "ensemble (0: auto)"
    assert names == ["noisy", "noisy · DIP denoise · iterations", "noisy · DIP denoise",
                     "noisy · DIP denoise · uncertainty"]
    result = viewer.layers["noisy · DIP denoise"]
    assert result.data.shape == (48, 48)
    np.testing.assert_allclose(result.scale, (0.5, 0.5))
    np.testing.assert_allclose(result.translate, (10.0, 20.0))
    assert tuple(str(u) for u in result.units) == ("micrometer", "micrometer")
    assert tuple(result.axis_labels) == ("y", "x")
    record = result.metadata[METADATA_KEY]
    assert record["seed"] == 7 and record["version"] == napari_dip.__version__
    assert record["iterations_run"] == 12 and record["stopped_at"] == 12
    assert record["parameters"]["task"] == "denoise" and record["parameters"]["seed"] == 7
    assert record["parameters"]["ensemble"] == 2 and "ensemble" not in record["restore_kwargs"]
    assert record["restore_kwargs"]["iterations"] == 12
    assert record["restore_kwargs"]["blend"] is False and "classical" not in record["parameters"]
    assert len(record["history"]["loss"]) == 12

    stack = viewer.layers["noisy · DIP denoise · iterations"]
    assert stack.data.shape == (3, 48, 48)  # iterations 4, 8, 12
    np.testing.assert_allclose(stack.scale, (4, 0.5, 0.5))
    assert stack.metadata[METADATA_KEY]["stack_iterations"] == [4, 8, 12]

    # the input layer is untouched
    assert layer.data is data
    np.testing.assert_array_equal(layer.data, original)

    # parameters out: clipboard and JSON file, enough to re-run from Python
    viewer.layers.selection.active = result
    text = widget.copy_parameters()
    from qtpy.QtWidgets import QApplication

    assert json.loads(QApplication.clipboard().text()) == json.loads(text)
    assert json.loads(text)["restore"]["seed"] == 7


def test_export_json_reruns(make_napari_viewer, qtbot, errors, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(_noisy(), name="noisy")
    widget = _open(viewer)
    widget.iterations.value = 3
    run_to_end(qtbot, widget)
    path = widget.export_parameters(tmp_path / "run.json")
    saved = json.loads(path.read_text())
    assert saved["restore"]["iterations"] == 3 and saved["inputs"] == {"image": "noisy"}
    again = napari_dip.restore(_noisy(), **saved["restore"])
    np.testing.assert_allclose(again.image, viewer.layers["noisy · DIP denoise"].data,
                               atol=1e-5)


def test_super_resolution_geometry(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    viewer.add_image(_noisy(), name="small", scale=(2.0, 3.0), translate=(1.0, -1.0))
    widget = _open(viewer)
    widget.task.value = "super_resolution"
    widget.factor.value = 2
    widget.iterations.value = 4
    run_to_end(qtbot, widget)
    assert errors == []
    result = viewer.layers["small · DIP super-resolution x2"]
    assert result.data.shape == (96, 96)
    np.testing.assert_allclose(result.scale, (1.0, 1.5))
    np.testing.assert_allclose(result.translate, (1.0 - 2.0 / 4, -1.0 - 3.0 / 4))
    assert result.metadata[METADATA_KEY]["parameters"]["factor"] == 2


@pytest.mark.parametrize("display", list(WIDGETS))
def test_stop_leaves_the_viewer_as_it_was(make_napari_viewer, qtbot, errors, display):
    import threading

    if WIDGETS[display] == "deepred":
        deepred = pytest.importorskip("napari_dip.solvers.deepred")
    viewer = make_napari_viewer()
    viewer.add_image(_noisy(), name="noisy")
    widget = _open(viewer, display)
    widget.iterations.value = 100_000
    widget.preview_every.value = 1
    before = [lay.name for lay in viewer.layers]
    assert viewer.layers.selection.active.name == "noisy"
    worker = widget.run()
    assert widget.run_button.text == "Stop" and not widget.image.enabled
    # wait until the preview layer is there, then press Stop
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=TIMEOUT_MS)
    label = "DIP" if WIDGETS[display] == "dip" else "DeepRED"
    assert viewer.layers[-1].name == f"noisy · {label} denoise · preview"
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert not worker.is_running
    from napari.qt.threading import WorkerBase

    qtbot.waitUntil(lambda: worker not in WorkerBase._worker_set, timeout=5000)
    assert [lay.name for lay in viewer.layers] == before
    assert viewer.layers.selection.active.name == "noisy"
    assert errors == []
    assert widget.run_button.text == "Run" and widget.image.enabled
    assert re.fullmatch(r"Stopped at iteration [1-9]\d*; nothing was added\.",
                        widget.status.value), widget.status.value
    if WIDGETS[display] == "deepred":  # its background denoiser thread is gone too, once
        from napari_dip.cancel import join_leftovers  # its call in flight has finished

        join_leftovers(timeout=10)
        assert not [t for t in threading.enumerate()
                    if t.name.startswith(deepred.THREAD_PREFIX)]


def test_flash_no_flash_uses_the_second_image(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    viewer.add_image(_noisy(seed=2) * 0.3, name="no flash")
    viewer.add_image(_noisy(seed=3), name="flash")
    widget = _open(viewer)
    widget.image.value = "no flash"
    widget.task.value = "flash_no_flash"
    widget.flash.value = "flash"
    widget.iterations.value = 3
    _, record = run_for_layer(qtbot, widget, "no flash · DIP flash/no-flash", errors)
    assert record["inputs"] == {"image": "no flash", "flash": "flash"}


def test_closing_the_widget_stops_the_run(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    viewer.add_image(_noisy(), name="noisy")
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Deep Image Prior")
    widget.device.value = "cpu"
    widget.iterations.value = 100_000
    worker = widget.run()
    qtbot.waitUntil(lambda: widget.progress.value > 0, timeout=TIMEOUT_MS)
    viewer.window.remove_dock_widget(dock)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert not worker.is_running
    assert [lay.name for lay in viewer.layers] == ["noisy"]


def test_inpainting_with_a_labels_mask(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    truth = _noisy(seed=1)
    mask = np.zeros((48, 48), dtype=np.int32)
    mask[20:26, 10:40] = 1
    mask[5:9, 5:9] = 3
    degraded = truth * (mask == 0)
    viewer.add_image(degraded, name="holes")
    viewer.add_labels(mask, name="mask")
    widget = _open(viewer)
    widget.image.value = "holes"
    widget.task.value = "inpaint"
    widget.mask.value = "mask"
    widget.iterations.value = 15
    run_to_end(qtbot, widget)
    assert errors == []
    result = viewer.layers["holes · DIP inpaint"].data
    assert result.shape == (48, 48)
    filled = result[mask > 0]
    assert filled.mean() > 0.2  # the holes (0 in the input) are filled with image values
    assert viewer.layers["holes · DIP inpaint"].metadata[METADATA_KEY]["inputs"]["mask"] \
        == "mask"
    np.testing.assert_array_equal(viewer.layers["holes"].data, degraded)


def test_wrong_mask_shape_is_an_error_notification(make_napari_viewer, errors):
    viewer = make_napari_viewer()
    viewer.add_image(_noisy(), name="holes")
    viewer.add_labels(np.ones((40, 40), dtype=np.int32), name="small mask")
    widget = _open(viewer)
    widget.task.value = "inpaint"
    widget.mask.value = "small mask"
    assert widget.run() is None
    assert widget.worker is None
    assert len(errors) == 1 and errors[0].startswith("Mask has shape (40, 40)")
    assert [lay.name for lay in viewer.layers] == ["holes", "small mask"]


def test_failure_inside_the_run_is_reported(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    viewer.add_image(_noisy(), name="noisy")
    widget = _open(viewer)
    widget.device.choices = ["auto", "cpu", "cuda:7"]  # a device this machine lacks
    widget.device.value = "cuda:7"
    run_to_end(qtbot, widget)
    assert len(errors) == 1 and "not available" in errors[0]
    assert [lay.name for lay in viewer.layers] == ["noisy"]


def test_missing_mask_layer_is_an_error(make_napari_viewer, errors):
    viewer = make_napari_viewer()
    viewer.add_image(_noisy(), name="holes")
    widget = _open(viewer)
    widget.task.value = "inpaint"
    assert widget.run() is None
    assert len(errors) == 1 and "Labels layer" in errors[0]


def test_deepred_run(make_napari_viewer, qtbot, errors):
    pytest.importorskip("napari_dip.solvers.deepred")
    viewer = make_napari_viewer()
    viewer.add_image(_noisy(), name="noisy")
    widget = _open(viewer, "DeepRED")
    widget.denoiser.value = "tv"
    widget.sigma_mode.value = "fixed"
    widget.denoiser_sigma.value = 0.04
    _, record = run_for_layer(qtbot, widget, "noisy · DeepRED denoise", errors)
    assert record["method"] == "deepred" and record["iterations_run"] == 12
    assert record["parameters"]["denoiser"] == "tv"
    assert record["parameters"]["denoiser_sigma"] == pytest.approx(0.04)


# -- samples -------------------------------------------------------------------------------
SAMPLES = {
    "hubble": ("hubble", "denoise", "poisson", False),
    "cell": ("cell", "denoise", "gaussian", False),
    "mri": ("mri phantom", "denoise", "rician", False),
    "inpainting": ("astronaut", "inpaint", "gaussian", True),
    "sky": ("sky", "inpaint", "gaussian", True),
}


@pytest.mark.parametrize("key", list(SAMPLES))
def test_samples_open_with_their_layers(make_napari_viewer, key):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Deep Image Prior")
    viewer.open_sample(PLUGIN, key)
    name, task, noise, has_mask = SAMPLES[key]
    degraded = viewer.layers[name]
    truth = viewer.layers[f"{name} · truth"]
    assert isinstance(degraded, Image) and isinstance(truth, Image)
    assert truth.data.shape == degraded.data.shape
    assert not truth.visible
    masks = [lay for lay in viewer.layers if isinstance(lay, Labels)]
    assert len(masks) == int(has_mask)
    if has_mask:
        assert masks[0].data.shape == degraded.data.shape[:2]
        assert degraded.rgb == (key == "inpainting")
    # the widget picks the degraded layer and the settings the sample is made for
    assert widget.image.value == name
    assert widget.task.value == task and widget.noise.value == noise
    if has_mask:
        assert widget.mask.value == masks[0].name
    # a sample with a known noise level (the sky's read noise) stops there
    assert widget.noise_level.value == ("fixed" if key == "sky" else "auto")
    if key == "sky":
        assert widget.noise_sigma.value == pytest.approx(0.01)
        assert widget.restore_arguments()[0]["noise_sigma"] == pytest.approx(0.01)
        # choosing another layer gives the hinted controls their values back
        viewer.add_image(np.zeros((8, 8), np.float32), name="other")
        widget.image.value = "other"
        assert widget.noise_level.value == "auto" and widget.noise_sigma.value == 0.1
