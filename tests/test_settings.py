"""The widget's settings and their mapping to restore() arguments, without Qt or napari:
layers are stand-ins with the attributes the mapping reads."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from napari_dip._session import CanvasSource, RunSession, RunState, how_it_stopped
from napari_dip._settings import (
    FACTOR_CHOICES,
    METHOD_CHOICES,
    TASK_CHOICES,
    WidgetSettings,
    restore_arguments,
    stack_every_for,
)


def _layer(data, rgb=False, scale=None, axis_labels=None, multiscale=False, **extra):
    data = np.asarray(data) if not multiscale else data
    ndim = np.ndim(data[0] if multiscale else data) - (1 if rgb else 0)
    return SimpleNamespace(data=data, rgb=rgb, scale=scale or (1.0,) * ndim,
                           axis_labels=axis_labels, multiscale=multiscale, **extra)


def _image(shape=(16, 16), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _args(settings=None, plane=None, **layers):
    settings = settings or WidgetSettings(image="img")
    layers = layers or {"img": _layer(_image())}
    return restore_arguments(settings, layers, plane=plane)


# -- choices --------------------------------------------------------------------------------
def test_choices_come_from_the_registries_with_the_same_texts():
    assert TASK_CHOICES == [("denoise", "denoise"),
                            ("inpaint (fill masked pixels)", "inpaint"),
                            ("super-resolution", "super_resolution"),
                            ("deblur", "deblur"),
                            ("flash / no-flash", "flash_no_flash")]
    assert METHOD_CHOICES == [("Deep Image Prior", "dip"), ("DeepRED (DIP + denoiser)", "deepred")]
    assert FACTOR_CHOICES == [("x2", 2), ("x4", 4), ("x8", 8)]


# -- single images --------------------------------------------------------------------------
def test_denoise_defaults():
    image = _image()
    kwargs, arrays, inputs = _args(img=_layer(image))
    assert kwargs == {"task": "denoise", "method": "dip", "preset": "fast", "iterations": None,
                      "early_stop": True, "seed": 0, "device": "auto", "noise": "gaussian",
                      "channel_axis": None, "noise_sigma": "auto"}
    assert list(kwargs) == ["task", "method", "preset", "iterations", "early_stop", "seed",
                            "device", "noise", "channel_axis", "noise_sigma"]
    np.testing.assert_array_equal(arrays["image"], image)
    assert list(arrays) == ["image"] and inputs == {"image": "img"}


def test_typed_iterations_seed_device_and_rgb():
    settings = WidgetSettings(image="img", iterations=250, iterations_from_preset=False,
                              seed=7, device="cpu", preset="paper")
    kwargs, arrays, _ = _args(settings, img=_layer(_image((16, 16, 3)), rgb=True))
    assert kwargs["iterations"] == 250 and kwargs["seed"] == 7 and kwargs["device"] == "cpu"
    assert kwargs["preset"] == "paper" and kwargs["channel_axis"] == -1
    assert arrays["image"].shape == (16, 16, 3)


def test_multiscale_layers_give_their_full_resolution():
    pyramid = [_image((32, 32)), _image((16, 16))]
    _, arrays, _ = _args(img=_layer(pyramid, multiscale=True))
    assert arrays["image"].shape == (32, 32)


def test_inpaint_uses_labels_above_zero():
    labels = np.zeros((16, 16), dtype=np.int32)
    labels[2:5, 3:9] = 1
    labels[10, 10] = 4
    settings = WidgetSettings(image="img", task="inpaint", mask="holes")
    kwargs, arrays, inputs = _args(settings, img=_layer(_image()), holes=_layer(labels))
    assert kwargs["task"] == "inpaint" and "factor" not in kwargs
    assert arrays["mask"].dtype == bool
    np.testing.assert_array_equal(arrays["mask"], labels > 0)
    assert inputs == {"image": "img", "mask": "holes"}


def test_super_resolution_and_deblur_options():
    settings = WidgetSettings(image="img", task="super_resolution", factor=8)
    kwargs, arrays, _ = _args(settings)
    assert kwargs["factor"] == 8 and "kernel" not in kwargs and list(arrays) == ["image"]
    kwargs, _, _ = _args(replace(settings, task="deblur", kernel="uniform"))
    assert kwargs["kernel"] == "uniform" and "factor" not in kwargs


def test_flash_no_flash_takes_the_second_image():
    flash = _image(seed=3)
    settings = WidgetSettings(image="img", task="flash_no_flash", flash="flash")
    kwargs, arrays, inputs = _args(settings, img=_layer(_image()), flash=_layer(flash))
    np.testing.assert_array_equal(arrays["flash"], flash)
    assert inputs == {"image": "img", "flash": "flash"}
    assert "noise_sigma" not in kwargs  # no squared residual to compare with a noise level


def test_deepred_options():
    settings = WidgetSettings(image="img", method="deepred")
    kwargs, _, _ = _args(settings)
    assert kwargs["method"] == "deepred" and kwargs["denoiser"] == "nlm"
    assert "denoiser_sigma" not in kwargs  # the task's default
    assert kwargs["noise_sigma"] == "auto"  # DeepRED stops at the noise level, as DIP
    kwargs, _, _ = _args(replace(settings, sigma_mode="auto", denoiser="bm3d"))
    assert kwargs["denoiser_sigma"] == "auto" and kwargs["denoiser"] == "bm3d"
    kwargs, _, _ = _args(replace(settings, sigma_mode="fixed", denoiser_sigma=0.05,
                                 denoiser="tv"))
    assert kwargs["denoiser_sigma"] == pytest.approx(0.05) and kwargs["denoiser"] == "tv"
    kwargs, _, _ = _args(WidgetSettings(image="img", sigma_mode="fixed"))
    assert "denoiser" not in kwargs and "denoiser_sigma" not in kwargs  # DIP


def test_noise_level_mapping():
    settings = WidgetSettings(image="img")
    assert _args(settings)[0]["noise_sigma"] == "auto"
    fixed = replace(settings, noise_level="fixed", noise_sigma=12.5)
    assert _args(fixed)[0]["noise_sigma"] == pytest.approx(12.5)
    assert _args(replace(settings, noise_level="none"))[0]["noise_sigma"] is None
    for change in ({"noise": "poisson"}, {"early_stop": False},
                   {"task": "flash_no_flash", "flash": "img"}):
        assert "noise_sigma" not in _args(replace(fixed, **change))[0], change
    deepred = _args(replace(fixed, method="deepred"))[0]  # it stops at the noise level too
    assert deepred["noise_sigma"] == pytest.approx(12.5)
    for task in ("inpaint", "super_resolution", "deblur"):
        layers = {"img": _layer(_image()), "m": _layer(np.ones((16, 16), int))}
        kwargs = restore_arguments(replace(fixed, task=task, mask="m"), layers)[0]
        assert kwargs["noise_sigma"] == pytest.approx(12.5), task


# -- missing layers -------------------------------------------------------------------------
def test_missing_layers_are_errors_for_the_user():
    with pytest.raises(ValueError, match=r"^choose an Image layer to restore \(open one, or "
                       r"File > Open Sample > napari-dip\)$"):
        _args(WidgetSettings(image=None))
    with pytest.raises(ValueError, match="choose an Image layer"):
        _args(WidgetSettings(image="gone"))
    with pytest.raises(ValueError, match=r"^inpainting needs a mask: add a Labels layer and "
                       r"paint the pixels to fill \(labels > 0\), then choose it as 'mask'$"):
        _args(WidgetSettings(image="img", task="inpaint"))
    with pytest.raises(ValueError, match="^flash/no-flash needs the flash shot as a second "
                       "Image layer$"):
        _args(WidgetSettings(image="img", task="flash_no_flash", flash="gone"))
    with pytest.raises(ValueError, match="up to 4"):
        _args(img=_layer(np.zeros((2, 2, 2, 4, 4))))


# -- stacks, volumes, tiles -----------------------------------------------------------------
def test_z_stack_slices_and_volume():
    stack = _layer(_image((3, 16, 16)), scale=(2.0, 0.5, 0.5))
    kwargs, arrays, inputs = _args(img=stack)
    assert kwargs["axes"] == "ZYX" and kwargs["mode"] == "slices"
    assert kwargs["warm_start"] is True and "channel_axis" not in kwargs
    assert arrays["image"].shape == (3, 16, 16) and "plane" not in inputs
    kwargs, _, _ = _args(WidgetSettings(image="img", warm_start=False), img=stack)
    assert kwargs["warm_start"] is False
    kwargs, _, _ = _args(WidgetSettings(image="img", stack_mode="volume", tiling="fixed"),
                         img=stack)
    assert kwargs["mode"] == "volume" and kwargs["spacing"] == [2.0, 0.5, 0.5]
    assert "tile" not in kwargs  # volumes are never tiled
    assert "warm_start" not in kwargs  # one volume: one part
    assert list(kwargs)[-3:] == ["axes", "mode", "spacing"]
    movie = _layer(_image((2, 3, 16, 16)), scale=(1.0, 2.0, 0.5, 0.5))
    kwargs, _, _ = _args(WidgetSettings(image="img", stack_mode="volume"), img=movie)
    assert kwargs["axes"] == "TZYX" and kwargs["spacing"] == [2.0, 0.5, 0.5]
    assert kwargs["warm_start"] is True  # each time point from the previous one


def test_axis_labels_and_ndim_decide_the_axes():
    movie = _layer(_image((3, 16, 16)), axis_labels=("t", "y", "x"))
    assert _args(img=movie)[0]["axes"] == "TYX"
    assert _args(img=_layer(_image((2, 3, 16, 16))))[0]["axes"] == "TZYX"
    rgb_stack = _layer(_image((3, 16, 16, 3)), rgb=True)
    assert _args(img=rgb_stack)[0]["axes"] == "ZYXC"


def test_only_the_current_plane():
    data = _image((4, 16, 16))
    labels = np.zeros((4, 16, 16), dtype=np.int32)
    labels[2, 3:5, 3:5] = 1
    settings = WidgetSettings(image="img", stack_mode="plane", task="inpaint", mask="m",
                              tiling="auto")
    layers = {"img": _layer(data), "m": _layer(labels)}
    kwargs, arrays, inputs = restore_arguments(settings, layers, plane=(2,))
    np.testing.assert_array_equal(arrays["image"], data[2])
    np.testing.assert_array_equal(arrays["mask"], labels[2] > 0)
    assert inputs["plane"] == [2] and inputs["mask"] == "m"
    assert "axes" not in kwargs and "mode" not in kwargs and kwargs["channel_axis"] is None
    assert kwargs["tile"] == "auto" and kwargs["warm_start"] is True
    # the plane may be a function of the image layer (the widget's reads the viewer's dims)
    seen = []
    _, arrays, inputs = restore_arguments(settings, layers,
                                          plane=lambda layer: seen.append(layer) or (3,))
    assert seen == [layers["img"]] and inputs["plane"] == [3]
    np.testing.assert_array_equal(arrays["image"], data[3])
    # a 2-D mask is used for the plane as it is
    layers["m"] = _layer(labels[2])
    _, arrays, _ = restore_arguments(settings, layers, plane=(1,))
    np.testing.assert_array_equal(arrays["mask"], labels[2] > 0)
    # without a plane: the first
    assert restore_arguments(settings, layers)[2]["plane"] == [0]
    # the plane index is read only for "only the current plane"
    _args(WidgetSettings(image="img"), plane=lambda layer: pytest.fail("read"))


def test_tiling_fixed_and_auto():
    settings = WidgetSettings(image="img", tiling="fixed", tile_size=64, tile_overlap=48)
    kwargs, _, _ = _args(settings)
    assert kwargs["tile"] == 64 and kwargs["overlap"] == 32  # at most half a tile
    assert kwargs["warm_start"] is True and kwargs["channel_axis"] is None
    kwargs, _, _ = _args(replace(settings, tile_overlap=8, warm_start=False))
    assert kwargs["overlap"] == 8 and kwargs["warm_start"] is False
    kwargs, _, _ = _args(replace(settings, tiling="auto"))
    assert kwargs["tile"] == "auto" and "overlap" not in kwargs
    kwargs, _, _ = _args(replace(settings, tiling="none"))
    assert "tile" not in kwargs and "warm_start" not in kwargs


def test_stack_every_is_for_single_images_only():
    settings = WidgetSettings(image="img", keep_stack=True, stack_every=4)
    assert stack_every_for(settings, {}) == 4
    assert stack_every_for(settings, {"axes": "ZYX"}) is None
    assert stack_every_for(settings, {"tile": 64}) is None
    assert stack_every_for(replace(settings, keep_stack=False), {}) is None


# -- the run session ------------------------------------------------------------------------
def _source(data, **kw):
    layer = _layer(data, **kw)
    layer.translate = (0.0,) * len(layer.scale)
    layer.colormap = SimpleNamespace(name="gray")
    layer.contrast_limits = (0.0, 1.0)
    layer.gamma = 1.0
    return layer


def test_session_plan_and_state():
    data = _image((4, 16, 16))
    source = _source(data, scale=(3.0, 1.0, 1.0))
    settings = WidgetSettings(image="img", stack_mode="plane", task="super_resolution",
                              factor=2, keep_stack=True, stack_every=5)
    kwargs, arrays, inputs = restore_arguments(settings, {"img": source}, plane=(2,))
    session = RunSession.plan(settings, kwargs, arrays, inputs, source)
    assert session.name == "img · DIP super-resolution x2 · plane 2"
    assert session.preview_name == "img · DIP super-resolution x2 · plane 2 · preview"
    assert session.geometry.translate == (6.0, -0.25, -0.25)
    assert session.geometry.scale == (3.0, 0.5, 0.5)
    assert session.stack_every == 5 and session.plane == [2]
    assert session.look == {"rgb": False, "colormap": "gray", "contrast_limits": [0.0, 1.0],
                            "gamma": 1.0}
    assert session.as_layer(np.zeros((32, 32))).shape == (1, 32, 32)
    assert session.state is RunState.IDLE
    closed = []

    def steps():
        try:
            yield 1
        finally:
            closed.append(True)

    gen = steps()
    next(gen)
    session.start(gen)
    assert session.state is RunState.RUNNING
    with pytest.raises(RuntimeError):
        session.start(gen)
    session.request_stop()
    assert session.state is RunState.STOPPING
    assert session.stopped_text() == "Stopped; nothing was added."
    session.last_step = SimpleNamespace(iteration=40, planes=1)
    assert session.stopped_text() == "Stopped at iteration 40; nothing was added."
    session.last_step = SimpleNamespace(iteration=40, plane=3, planes=25)
    assert session.stopped_text() == "Stopped at iteration 40 of plane 3 / 25; nothing was added."
    session.finish()
    assert session.state is RunState.IDLE and closed == [True]


def test_session_canvas_for_planes_and_tiles():
    image = np.ones((2, 4, 4), dtype=np.float32)
    assert CanvasSource(image, 1, False, False).blank().tolist() == image.tolist()
    assert CanvasSource(image, 2, False, False).blank().shape == (2, 8, 8)
    assert CanvasSource(image, 2, True, False).blank().shape == (4, 4, 4)
    assert CanvasSource(np.ones((4, 4, 3)), 2, False, True).blank().shape == (8, 8, 3)
    session = RunSession(kwargs={}, inputs={"image": "img"}, name="r", geometry=None,
                         look={}, canvas_from=CanvasSource(image, 1, False, False))
    canvas = session.full_preview(np.full((4, 4), 5.0), (1,))
    assert canvas.shape == (2, 4, 4) and canvas[1].max() == 5 and canvas[0].max() == 1
    assert session.full_preview(np.zeros((2, 2)), None).shape == (2, 2)
    assert image.max() == 1  # the input is never written to


def _result(ran, stopped_at, elapsed=3.2, parts=None, limit=None, **parameters):
    """A Result-like record of a run of ``ran`` iterations with limit ``limit``."""
    return SimpleNamespace(iterations=ran, stopped_at=stopped_at, elapsed=elapsed,
                           parts=parts, parameters={"iterations": limit, **parameters})


@pytest.mark.parametrize("result, text", [
    (_result(1500, 1500, limit=1500, stopping=None),
     "reached the limit (1500 iterations)"),
    (_result(498, 498, limit=1500, stopping="discrepancy", discrepancy_reached_at=498),
     "stopped at the noise level at iteration 498"),
    (_result(1500, 1500, limit=1500, stopping="discrepancy", discrepancy_reached_at=None),
     "reached the limit (1500 iterations) before the noise level"),
    (_result(1212, 912, limit=1500, stopping="es-wmv"),
     "stopped by ES-WMV at iteration 1212, kept 912"),
    (_result(1500, 1477, limit=1500, stopping="es-wmv"),
     "reached the limit (1500 iterations), ES-WMV kept 1477"),
    (_result(1150, 400, limit=3000, stopping="held-out"),
     "stopped by the held-out pixels at iteration 1150, kept 400"),
    (_result(3000, 2990, limit=3000, stopping="held-out"),
     "reached the limit (3000 iterations), the held-out pixels kept 2990"),
    (_result(146, 146, limit=1500, stopping="discrepancy", discrepancy_reached_at=146,
             classical_blend_weight=0.2847, classical="anscombe-bm3d"),
     "stopped at the noise level at iteration 146, blended with Anscombe + BM3D "
     "(network 0.28)"),
    (_result(574, 574, limit=1500, stopping="discrepancy", discrepancy_reached_at=574,
             classical_blend_weight=0.1331, classical="bm3d"),
     "stopped at the noise level at iteration 574, blended with BM3D (network 0.13)"),
    (_result(771, 771, limit=1500, stopping="discrepancy", discrepancy_reached_at=771,
             classical_blend_weight=0.5, classical="richardson-lucy"),
     "stopped at the noise level at iteration 771, blended with Richardson-Lucy "
     "(network 0.50)"),
], ids=["limit", "noise level", "limit before the noise level", "ES-WMV", "limit, ES-WMV",
        "held-out", "limit, held-out", "photon counts", "gaussian", "deconvolution"])
def test_how_a_run_stopped_is_said_honestly(result, text):
    assert how_it_stopped(result) == text


def test_how_runs_in_parts_stopped():
    planes = [{"index": [p], "iterations": n, "limit": 100, "skipped": None}
              for p, n in enumerate([100, 60, 40])]
    assert how_it_stopped(_result(200, 200, parts=planes)) == \
        "3 planes: 2 of 3 planes stopped early, 200 iterations"
    tiles = [{"index": [p], "iterations": 10, "limit": 10, "skipped": None}
             for p in range(3) for _ in range(4)]
    assert how_it_stopped(_result(120, 120, parts=tiles)) == \
        "3 planes, 4 tiles each: every part ran to its limit, 120 iterations"
    one_plane = [{"index": [], "iterations": 5, "limit": 10, "skipped": None}] * 4
    assert how_it_stopped(_result(20, 20, parts=one_plane)) == \
        "4 tiles: 4 of 4 tiles stopped early, 20 iterations"


def test_session_status_text():
    session = RunSession(kwargs={}, inputs={"image": "img"}, name="r", geometry=None,
                         look={}, canvas_from=CanvasSource(np.zeros((4, 4)), 1, False, False))
    early = _result(1212, 912, elapsed=49.4, limit=1500, stopping="es-wmv")
    assert session.done_text(early) == \
        "Done in 0:49: stopped by ES-WMV at iteration 1212, kept 912. Added \u201cr\u201d."


# -- no Qt, no napari -----------------------------------------------------------------------
def test_settings_and_session_import_neither_qt_nor_napari_nor_torch():
    code = ("import napari_dip._settings, napari_dip._session, sys; "
            "print(' '.join(sys.modules))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not {"torch", "napari", "qtpy", "PyQt5", "PyQt6", "PySide6", "magicgui"} & loaded


class _FakeLayers(list):
    """Enough of napari's LayerList for RunSession's preview: remove, a selection."""

    def __init__(self):
        super().__init__()
        self.selection = SimpleNamespace(update=lambda layers: None, active=None)


class _FakeViewer:
    """``add_image`` makes a layer; ``during_add`` runs while it is being added (napari
    processes Qt events there, so the run's end can be handled inside the call)."""

    def __init__(self):
        self.layers = _FakeLayers()
        self.during_add = None

    def add_image(self, data, name, **kwargs):
        layer = SimpleNamespace(data=data, name=name)
        self.layers.append(layer)
        if self.during_add is not None:
            self.during_add()
        return layer


def _session():
    source = _source(_image())
    settings = WidgetSettings(image="img")
    kwargs, arrays, inputs = restore_arguments(settings, {"img": source})
    return RunSession.plan(settings, kwargs, arrays, inputs, source)


def test_no_preview_is_left_behind_by_an_update_that_comes_late():
    viewer, session = _FakeViewer(), _session()
    session.show_preview(viewer, np.zeros((16, 16)))
    session.show_preview(viewer, np.ones((16, 16)))  # the same layer, new data
    assert [lay.name for lay in viewer.layers] == ["img · DIP denoise · preview"]
    assert viewer.layers[0].data.max() == 1
    session.remove_preview(viewer.layers)
    assert viewer.layers == [] and session.preview is None
    session.show_preview(viewer, np.zeros((16, 16)))  # an update handled after the end
    assert viewer.layers == [] and session.preview is None


def test_no_preview_is_left_when_the_run_ends_while_its_layer_is_added():
    viewer, session = _FakeViewer(), _session()
    viewer.during_add = lambda: session.remove_preview(viewer.layers)
    session.show_preview(viewer, np.zeros((16, 16)))
    assert viewer.layers == [] and session.preview is None
