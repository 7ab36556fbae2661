"""Large images: overlapping tiles with smooth blending, memory estimates, clear errors."""

import numpy as np
import pytest
from conftest import drain, psnr

from napari_dip import iterate, restore, sizing
from napari_dip.memory import activation_count, estimate_bytes, largest_tile
from napari_dip.presets import get_preset
from napari_dip.stacks import blend_window, ramp, tile_boxes, tile_starts


def _noisy(size=128, seed=0, sigma=0.1):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    clean = 0.5 + 0.3 * np.sin(9 * xx) * np.cos(7 * yy)
    return (clean + rng.normal(0, sigma, clean.shape)).astype(np.float32), clean


def _column_steps(image):
    """Mean absolute difference between neighbouring columns: steps[x] is between x-1 and x."""
    return np.r_[np.nan, np.abs(np.diff(image, axis=1)).mean(axis=0)]


def _seam_ratio(image, border):
    """How much larger the step at column ``border`` is than the largest nearby step."""
    steps = _column_steps(image)
    near = np.r_[steps[border - 4:border], steps[border + 1:border + 5]]
    return steps[border] / near.max()


def test_tiles_cover_the_plane_and_weights_blend_smoothly():
    assert tile_starts(100, 128, 32) == [0]
    assert tile_starts(128, 64, 16) == [0, 32, 64]
    starts = tile_starts(1000, 256, 64)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert all(b - a <= 256 - 64 for a, b in zip(starts, starts[1:], strict=False))  # overlap >= 64
    boxes = tile_boxes((100, 130), 64, 16)
    total = np.zeros((100, 130))
    for box in boxes:
        total[box] += blend_window(box, (100, 130), 16)
    assert total.min() > 0.99  # every pixel is covered with full weight
    w = ramp(64, 16, at_start=True, at_end=False)
    assert 0 < w[0] < 0.01 and w[15] > 0.99 and np.all(w[16:] == 1)
    assert np.all(np.diff(w[:16]) > 0)
    assert np.all(ramp(64, 16, False, False) == 1)  # image borders are not tapered


def test_tiled_and_untiled_agree_within_1db_and_show_no_seam():
    noisy, clean = _noisy()
    whole = restore(noisy, iterations=300, early_stop=False)
    tiled = restore(noisy, tile=64, iterations=300, early_stop=False)
    assert tiled.parameters["tile"] == 64 and tiled.parameters["overlap"] == 16
    assert tiled.parameters["tiles"] == 9 and len(tiled.parts) == 9
    assert [p["box"] for p in tiled.parts[:2]] == [[[0, 64], [0, 64]], [[0, 64], [32, 96]]]
    p_whole, p_tiled = psnr(whole.image, clean), psnr(tiled.image, clean)
    assert p_tiled - psnr(noisy, clean) > 3
    assert abs(p_tiled - p_whole) <= 1.0, (p_whole, p_tiled)
    # no step across a tile border: columns (and rows) 32, 64 and 96 start or end a tile
    for border in (32, 64, 96):
        assert _seam_ratio(tiled.image, border) < 1.5, border
        assert _seam_ratio(tiled.image.T, border) < 1.5, border
    # the measure does see a seam: the same image with a step of 0.02 at column 64
    stepped = tiled.image.copy()
    stepped[:, 64:] += 0.02
    assert _seam_ratio(stepped, 64) > 1.5


def test_tile_steps_and_previews():
    noisy, _ = _noisy(size=96)
    steps, result = drain(iterate(noisy, tile=64, iterations=3, early_stop=False,
                                  preview_every=3, warm_start=2))
    assert steps[0].tiles == 4 and steps[0].planes == 1
    assert [s.tile for s in steps] == [1, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [s.run_iteration for s in steps] == list(range(1, 10))
    last = steps[-1]
    assert last.region == (slice(32, 96), slice(32, 96)) and last.preview.shape == (64, 64)
    assert [p["warm"] for p in result.parts] == [False, True, True, True]


def test_tiled_inpainting_and_super_resolution(astronaut48):
    image = np.tile(astronaut48, (2, 2, 1))  # 96 x 96 RGB
    holes = np.zeros((96, 96), bool)
    holes[40:44, 10:80] = True
    result = restore(image * ~holes[..., None], task="inpaint", mask=holes, channel_axis=-1,
                     tile=64, iterations=2)
    np.testing.assert_array_equal(result.image[~holes], (image * ~holes[..., None])[~holes])
    sr = restore(image[:80, :72], task="super_resolution", factor=2, channel_axis=-1, tile=48,
                 iterations=1)
    assert sr.image.shape == (160, 144, 3)
    assert sr.parameters["tiles"] == 4


def test_memory_estimate_grows_with_the_image():
    config = get_preset("fast", "denoise").network
    small = estimate_bytes(config, 16, 1, (64, 64))
    large = estimate_bytes(config, 16, 1, (512, 512))
    assert 0 < small < large
    # activations scale with the area
    assert activation_count(config, 16, 1, (512, 512)) == \
        64 * activation_count(config, 16, 1, (64, 64))
    assert largest_tile(lambda s: s * s, budget=10_000, multiple=32, minimum=32,
                        maximum=1000) == 96
    assert largest_tile(lambda s: s * s, budget=100, multiple=32, minimum=32,
                        maximum=1000) is None


def test_too_large_for_memory_is_a_clear_error_and_auto_tiles_fit(monkeypatch):
    noisy, _ = _noisy(size=256)
    from napari_dip.request import build_request

    need_whole = sizing.request_bytes(build_request(noisy))
    need_128 = sizing.request_bytes(build_request(noisy[:128, :128]))
    free = int(need_128 / 0.8) + 1  # room for a 128 px tile, not for the whole image
    assert need_whole > free
    monkeypatch.setattr(sizing, "available_bytes", lambda device: free)
    with pytest.raises(ValueError, match="needs about .* but cpu has .* free.*tile='auto'"):
        iterate(noisy)
    with pytest.raises(ValueError, match="use smaller tiles"):
        iterate(noisy, tile=192)
    result = restore(noisy, tile="auto", iterations=1)
    assert result.parameters["tile"] == 128 and result.parameters["tiles"] == 9
    assert result.image.shape == (256, 256)


@pytest.mark.parametrize("kwargs, message", [
    (dict(tile=16), "at least 32 pixels"),
    (dict(tile="big"), "tile must be"),
    (dict(tile=True), "tile must be"),
    (dict(tile=64, overlap=40), "more than half"),
    (dict(tile=64, overlap=-1), "overlap must be"),
    (dict(overlap=8), "give tile= as well"),
    (dict(tile=64, task="deblur", boundary="circular"), "cannot be tiled"),
    (dict(tile=64, task="inpaint", mask=np.pad(np.ones((70, 70)), ((0, 58), (0, 58)))),
     "every pixel of the tile"),
])
def test_bad_tiling_arguments_are_refused(kwargs, message):
    noisy, _ = _noisy()
    with pytest.raises(ValueError, match=message):
        iterate(noisy, **kwargs)
