"""Stacks and time series: ``axes=``, ``mode="slices"``, warm start, nested progress."""

import numpy as np
import pytest
from conftest import drain

from napari_dip import iterate, restore
from napari_dip.stacks import Layout, parse_axes


def _stack(planes=4, size=32, seed=0, sigma=0.1):
    """(noisy, clean): smooth planes that change a little from one to the next."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    clean = np.stack([0.5 + 0.3 * np.sin(6 * xx + 0.3 * k) * np.cos(4 * yy)
                      for k in range(planes)])
    return (clean + rng.normal(0, sigma, clean.shape)).astype(np.float32), clean


def test_slices_without_warm_start_equal_each_plane_alone():
    noisy, _ = _stack(planes=4)
    result = restore(noisy, axes="ZYX", iterations=8, early_stop=False, seed=5,
                     warm_start=False)
    assert result.image.shape == noisy.shape and result.image.dtype == np.float32
    for k in range(4):
        alone = restore(noisy[k], iterations=8, early_stop=False, seed=5)
        np.testing.assert_array_equal(result.image[k], alone.image)
    assert result.iterations == 32 and result.stopped_at == 32
    assert len(result.history["loss"]) == 32
    assert result.history["plane"] == [1] * 8 + [2] * 8 + [3] * 8 + [4] * 8
    assert [p["plane"] for p in result.parts] == [1, 2, 3, 4]
    assert [p["index"] for p in result.parts] == [[0], [1], [2], [3]]
    assert not any(p["warm"] for p in result.parts)
    params = result.parameters
    assert params["axes"] == "ZYX" and params["mode"] == "slices"
    assert params["input_shape"] == [4, 32, 32] and params["planes"] == 4
    assert params["warm_start"] is False and params["warm_iterations"] is None


def test_warm_start_carries_weights_and_runs_fewer_iterations():
    noisy, _ = _stack(planes=3)
    result = restore(noisy, axes="ZYX", iterations=40, early_stop=False, seed=1,
                     warm_start=10)
    assert [p["iterations"] for p in result.parts] == [40, 10, 10]
    assert [p["warm"] for p in result.parts] == [False, True, True]
    assert result.parameters["warm_iterations"] == 10
    assert result.parameters["warm_stop"] == "iterations"
    # the first plane is exactly a cold run; the others differ from one
    alone = restore(noisy[0], iterations=40, early_stop=False, seed=1)
    np.testing.assert_array_equal(result.image[0], alone.image)
    # a warm plane starts from a fitted network: its first step's loss is far below a cold
    # start's, and after 10 steps it still fits better
    cold = restore(noisy[1], iterations=10, early_stop=False, seed=1)
    warm = result.history["loss"][40:50]
    assert warm[0] < 0.5 * cold.history["loss"][0]  # measured 0.32
    assert warm[-1] < cold.history["loss"][-1]


def test_default_warm_start_stops_at_the_first_planes_fit():
    from napari_dip.drivers import LOSS_WINDOW

    noisy, _ = _stack(planes=3)
    result = restore(noisy, axes="ZYX", iterations=200, early_stop=False, seed=1)
    assert result.parameters["warm_start"] is True
    assert result.parameters["warm_stop"] == "first part's loss"
    loss = np.array(result.history["loss"])
    plane = np.array(result.history["plane"])
    assert result.parts[0]["iterations"] == 200 and not result.parts[0]["warm"]
    target = loss[plane == 1][-LOSS_WINDOW:].mean()
    for k in (2, 3):
        part = result.parts[k - 1]
        assert part["warm"] and LOSS_WINDOW <= part["iterations"] < 100
        assert part["stopped_at"] == part["iterations"]
        mine = loss[plane == k]
        assert len(mine) == part["iterations"]
        assert mine[-LOSS_WINDOW:].mean() <= target  # it stopped once it fitted as well
        if part["iterations"] > LOSS_WINDOW:  # and not before (the first check is at step 20)
            assert mine[-LOSS_WINDOW - 1:-1].mean() > target
    assert result.iterations == len(loss) < 300


def test_nested_progress_and_previews_fill_the_result():
    noisy, _ = _stack(planes=3)
    steps, result = drain(iterate(noisy, axes="ZYX", iterations=6, early_stop=False,
                                   preview_every=3, warm_start=False))
    assert [(s.plane, s.iteration) for s in steps] == \
        [(p, i) for p in (1, 2, 3) for i in range(1, 7)]
    assert all(s.planes == 3 and s.total == 6 and s.tiles == 1 for s in steps)
    assert [s.run_iteration for s in steps] == list(range(1, 19))
    assert all(s.run_total == 18 for s in steps)
    assert steps[-1].fraction == 1.0 and steps[8].fraction == pytest.approx(0.5)
    assert steps[5].seconds_left > 0
    canvas = np.zeros_like(result.image)
    for s in steps:
        if s.preview is not None:
            assert s.region[0] == s.index[0] == s.plane - 1
            canvas[s.region] = s.preview
    np.testing.assert_array_equal(canvas, result.image)


@pytest.mark.parametrize("axes, shape, plane_of", [
    ("YXZ", (32, 24, 3), lambda a, k: a[:, :, k]),
    ("TZYX", (2, 2, 24, 20), lambda a, k: a[k // 2, k % 2]),
    ("ZCYX", (2, 3, 20, 20), lambda a, k: np.moveaxis(a[k], 0, -1)),
    ("TYXC", (2, 20, 24, 3), lambda a, k: a[k]),
])
def test_any_axis_order(axes, shape, plane_of):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    result = restore(image, axes=axes, iterations=3, early_stop=False, warm_start=False)
    assert result.image.shape == shape
    n = int(np.prod([shape[i] for i, c in enumerate(axes) if c in "TZ"]))
    assert len(result.parts) == n
    channels = -1 if "C" in axes else None
    for k in (0, n - 1):
        alone = restore(plane_of(image, k), iterations=3, early_stop=False,
                        channel_axis=channels)
        np.testing.assert_array_equal(plane_of(result.image, k), alone.image)


def test_axes_naming_a_single_image_is_the_single_image_run(astronaut48):
    rgb = restore(astronaut48, axes="YXC", iterations=3, early_stop=False)
    same = restore(astronaut48, channel_axis=-1, iterations=3, early_stop=False)
    np.testing.assert_array_equal(rgb.image, same.image)
    grey = astronaut48[..., 0]
    np.testing.assert_array_equal(
        restore(grey, axes="yx", iterations=3, early_stop=False).image,
        restore(grey, iterations=3, early_stop=False).image)


def test_constant_planes_are_kept_and_skipped():
    noisy, _ = _stack(planes=3)
    noisy[1] = 7.0  # e.g. an empty slice at the edge of a volume
    result = restore(noisy, axes="ZYX", iterations=4, early_stop=False, warm_start=False)
    assert [p["skipped"] for p in result.parts] == [None, "constant", None]
    np.testing.assert_array_equal(result.image[1], 7.0)
    assert result.iterations == 8 and result.history["plane"] == [1] * 4 + [3] * 4


def test_inpainting_a_stack_with_one_mask_for_every_plane():
    noisy, clean = _stack(planes=3, sigma=0.0)
    holes = np.zeros((32, 32), bool)
    holes[10:13, 4:28] = True
    degraded = clean * ~holes
    result = restore(degraded, axes="ZYX", task="inpaint", mask=holes, iterations=5,
                     early_stop=False)
    np.testing.assert_array_equal(result.image[:, ~holes], degraded[:, ~holes].astype(np.float32))
    # a full (Z, Y, X) mask with a plane that has no holes: that plane is left as it is
    full = np.zeros(clean.shape, bool)
    full[0, 5:8, 5:20] = True
    full[2, 20:25, 3:9] = True
    result = restore(clean * ~full, axes="ZYX", task="inpaint", mask=full, iterations=3)
    assert [p["skipped"] for p in result.parts] == [None, "no holes", None]
    np.testing.assert_array_equal(result.image[1], clean[1].astype(np.float32))


def test_super_resolution_of_each_plane():
    image = np.random.default_rng(0).random((2, 20, 18))
    result = restore(image, axes="ZYX", task="super_resolution", factor=2, iterations=2)
    assert result.image.shape == (2, 40, 36)
    assert result.parameters["factor"] == 2 and result.parameters["factor_axes"] == "YX"


def test_the_callers_arrays_are_never_modified():
    noisy, _ = _stack(planes=2)
    view = np.moveaxis(noisy, 0, -1)  # a non-contiguous view, axes YXZ
    view.flags.writeable = False
    before = view.copy()
    mask = np.zeros(view.shape, bool)
    mask[3:6, 3:20, :] = True
    mask_before = mask.copy()
    restore(view, axes="YXZ", iterations=2)
    restore(view, axes="YXZ", task="inpaint", mask=mask, iterations=2)
    np.testing.assert_array_equal(view, before)
    np.testing.assert_array_equal(mask, mask_before)


def test_closing_a_stack_run_cancels_it():
    noisy, _ = _stack(planes=3)
    steps = iterate(noisy, axes="ZYX", iterations=1000)
    for _ in range(3):
        step = next(steps)
    steps.close()
    assert step.plane == 1 and step.iteration == 3
    with pytest.raises(StopIteration):
        next(steps)


def test_early_stopping_per_plane():
    noisy, _ = _stack(planes=2)
    result = restore(noisy, axes="ZYX", iterations=600, early_stop=20, warm_start=False)
    for part in result.parts:
        assert part["iterations"] < 600 and part["stopped_at"] == part["iterations"] - 20
    assert result.iterations == sum(p["iterations"] for p in result.parts)
    assert result.stopped_at == sum(p["stopped_at"] for p in result.parts)


def test_parse_axes():
    assert parse_axes("tzyx", (2, 3, 16, 16), None) == Layout("TZYX", "slices", (0, 1), None,
                                                                (2, 3))
    volume = parse_axes("TZYXC", (2, 5, 16, 16, 3), "volume")
    assert volume.iterated == (0,) and volume.spatial == (1, 2, 3) and volume.channel == 4
    assert parse_axes("YXC", (16, 16, 3), None).mode is None


IMG3 = np.random.default_rng(0).random((3, 32, 32))


@pytest.mark.parametrize("image, kwargs, message", [
    (IMG3, dict(axes="YX"), "names 2 axes but the image has 3"),
    (IMG3, dict(axes="QYX"), "unknown letter"),
    (IMG3, dict(axes="YYX"), "more than once"),
    (IMG3, dict(axes="ZTX"), "must name the plane's Y and X"),
    (IMG3, dict(axes=3), "must be a string"),
    (IMG3, dict(axes="ZYX", mode="planes"), "unknown mode"),
    (IMG3, dict(axes="TYX", mode="volume"), "needs a Z axis"),
    (IMG3, dict(mode="slices"), "needs axes="),
    (IMG3, dict(axes="ZYX", channel_axis=0), "either axes="),
    (IMG3, dict(), "axes='ZYX'"),  # a 3-D array without axes says how to name them
    (np.random.rand(3, 8, 32), dict(axes="ZYX"), "at least 16 pixels"),
    (IMG3, dict(axes="ZYX", warm_start=-1), "warm_start"),
    (IMG3, dict(axes="ZYX", mask=np.ones((3, 32, 32))), "only used by task='inpaint'"),
    (IMG3, dict(axes="ZYX", task="inpaint", mask=np.ones((2, 32, 32))), "mask has shape"),
    (IMG3, dict(axes="ZYX", task="inpaint", mask=np.zeros((32, 32))), "all zero"),
    (IMG3, dict(axes="ZYX", task="inpaint",
                mask=np.stack([np.ones((32, 32)), np.eye(32), np.eye(32)])),
     "every pixel of a part at position \\(0,\\)"),
    (np.where(IMG3 > 0.9, np.nan, IMG3), dict(axes="ZYX"), "NaN"),
    (np.ones((3, 32, 32)), dict(axes="ZYX"), "constant"),
    (-IMG3, dict(axes="ZYX", noise="poisson"), "non-negative"),
    (IMG3, dict(axes="ZYX", task="super_resolution", factor=3), "must be 2, 4 or 8"),
    (IMG3, dict(axes="ZYX", task="flash_no_flash", flash=IMG3[:2]), "same shape"),
    (IMG3, dict(axes="ZYX", iterations=0), "positive integer"),
    (IMG3, dict(axes="ZYX", method="red"), "unknown method"),
])
def test_bad_stack_arguments_are_refused(image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        iterate(image, **kwargs)


def test_deepred_and_flash_no_flash_run_plane_by_plane():
    noisy, _ = _stack(planes=2)
    result = restore(noisy, axes="ZYX", method="deepred", denoiser="tv", iterations=3)
    assert result.image.shape == noisy.shape and result.parameters["method"] == "deepred"
    flash = noisy[:, ::-1].copy()
    result = restore(noisy * 0.3, axes="ZYX", task="flash_no_flash", flash=flash,
                     iterations=2)
    assert result.image.shape == noisy.shape
    flash[1] = 1.0
    with pytest.raises(ValueError, match="flash shot is constant"):
        restore(noisy * 0.3, axes="ZYX", task="flash_no_flash", flash=flash, iterations=2)


def test_planning_needs_neither_torch_nor_qt():
    import subprocess
    import sys

    code = ("import numpy as np, sys; from napari_dip import validate; "
            "import napari_dip.stacks, napari_dip.memory; "
            "validate(np.random.rand(3, 32, 32), axes='ZYX', tile=64); "
            "print(' '.join(sys.modules))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not {"torch", "napari", "qtpy", "PyQt6"} & loaded
