"""Deep Image Prior on every task: quality gains measured in PSNR on small real images."""

import numpy as np
import pytest
import torch
from conftest import drain, psnr
from skimage import data

from napari_dip import iterate, restore
from napari_dip.operators import Blur, Downsample


def degrade(operator, clean_chw: np.ndarray) -> np.ndarray:
    """Apply one of the engine's operators to a (C, H, W) numpy image."""
    with torch.no_grad():
        out = operator(torch.as_tensor(clean_chw[None], dtype=torch.float32))
    return out[0].numpy()


def test_denoising_gains_3db(noisy64):
    noisy, clean = noisy64
    result = restore(noisy, task="denoise", iterations=400, early_stop=False, seed=0)
    before, after = psnr(noisy, clean), psnr(result.image, clean)
    assert after - before >= 3.0, (before, after)
    assert result.image.shape == noisy.shape and result.image.dtype == np.float32
    assert result.iterations == 400 and result.stopped_at == 400
    assert len(result.history["loss"]) == 400


def test_inpainting_beats_mean_fill_inside_the_holes(astronaut48):
    clean = astronaut48
    fill = np.zeros(clean.shape[:2], dtype=bool)
    fill[10:14, 4:44] = True  # two text-like bars
    fill[30:33, 8:40] = True
    degraded = clean * ~fill[..., None]
    result = restore(degraded, task="inpaint", mask=fill, channel_axis=-1, iterations=500,
                     early_stop=False)
    mean_fill = degraded.copy()
    mean_fill[fill] = clean[~fill].mean(axis=0)
    dip, baseline = psnr(result.image[fill], clean[fill]), psnr(mean_fill[fill], clean[fill])
    assert dip > baseline + 2.0, (dip, baseline)
    # known pixels are kept exactly as measured
    np.testing.assert_array_equal(result.image[~fill], degraded[~fill])


@pytest.mark.parametrize("factor, iterations", [(2, 600), (4, 300)])
def test_super_resolution_beats_nearest_neighbour(factor, iterations):
    clean = data.camera()[100:164, 100:164].astype(np.float32) / 255  # textured coat
    low = degrade(Downsample(factor), clean[None])[0]
    result = restore(low, task="super_resolution", factor=factor, iterations=iterations,
                     early_stop=False)
    assert result.image.shape == clean.shape
    nearest = np.kron(low, np.ones((factor, factor)))
    dip, baseline = psnr(result.image, clean), psnr(nearest, clean)
    assert dip > baseline + 1.0, (dip, baseline)


def test_deblurring_improves_over_the_blurred_input(camera64):
    clean = camera64
    rng = np.random.default_rng(0)
    blurred = degrade(Blur("uniform"), clean[None])[0] + rng.normal(0, 2**0.5 / 255, clean.shape)
    result = restore(blurred, task="deblur", kernel="uniform", iterations=300, early_stop=False)
    gain = psnr(result.image, clean) - psnr(blurred, clean)
    assert gain > 1.0, gain


def test_flash_no_flash_output_has_the_no_flash_shape(astronaut48):
    noflash = astronaut48 * 0.3
    flash = astronaut48[..., ::-1].copy()
    result = restore(noflash, task="flash_no_flash", flash=flash, channel_axis=-1,
                     iterations=60, early_stop=False)
    assert result.image.shape == noflash.shape
    assert result.parameters["input_kind"] == "image"
    # the result lies in the no-flash shot's range, not the flash shot's
    assert result.image.min() >= noflash.min() and result.image.max() <= noflash.max()
    assert psnr(result.image, noflash, 0.3) > 15


def test_early_stopping_stops_before_a_long_limit(noisy64):
    noisy, clean = noisy64
    result = restore(noisy, iterations=3000, early_stop=150)
    assert result.iterations < 3000
    assert result.stopped_at == result.iterations - 150
    assert result.parameters["early_stop_patience"] == 150
    variance = np.array(result.history["variance"])
    assert np.all(np.isnan(variance[:99])) and np.all(np.isfinite(variance[99:]))
    assert np.nanargmin(variance) + 1 == result.stopped_at
    assert psnr(result.image, clean) - psnr(noisy, clean) >= 3.0


def test_same_seed_same_result_other_seed_differs(noisy64):
    noisy, _ = noisy64
    a = restore(noisy, iterations=15, seed=3, early_stop=False)
    b = restore(noisy, iterations=15, seed=3, early_stop=False)
    c = restore(noisy, iterations=15, seed=4, early_stop=False)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.history["loss"] == b.history["loss"]
    assert np.abs(a.image - c.image).max() > 1e-3


def test_seeding_leaves_the_global_torch_rng_alone(noisy64):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    restore(noisy64[0], iterations=2, early_stop=False)
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("dtype, scale, offset", [
    (np.uint16, 4000, 100), (np.float64, 2.5, -1.0), (np.uint8, 255, 0)])
def test_output_is_float32_in_the_input_range(noisy64, dtype, scale, offset):
    noisy = np.clip(noisy64[0], 0, 1) * scale + offset
    image = noisy.astype(dtype)
    result = restore(image, iterations=40, early_stop=False)
    assert result.image.dtype == np.float32
    assert result.image.min() >= image.min() and result.image.max() <= image.max()
    # the restoration is in the input's own units (not left in [0, 1]): same mean level
    # (40 steps are too few for its detail to be stable across CPUs, so not compared)
    span = float(image.max()) - float(image.min())
    assert abs(float(result.image.mean()) - float(image.mean())) < 0.05 * span
    assert abs(result.image.mean() - image.mean()) < 0.1 * (image.max() - image.min())


@pytest.mark.parametrize("shape", [(16, 16), (40, 52), (70, 33)])
def test_odd_sizes_are_padded_and_cropped_back(shape):
    rng = np.random.default_rng(0)
    image = rng.random(shape)
    result = restore(image, iterations=3, early_stop=False)
    assert result.image.shape == shape


def test_super_resolution_of_odd_size_rgb_has_factor_times_the_shape():
    image = np.random.default_rng(0).random((20, 3, 27))  # channels in the middle
    result = restore(image, task="super_resolution", factor=2, channel_axis=1, iterations=2,
                     early_stop=False)
    assert result.image.shape == (40, 3, 54)


def test_inputs_are_never_modified(astronaut48):
    image = astronaut48.copy()
    mask = np.zeros((48, 48), dtype=np.uint8)
    mask[5:9, 5:30] = 1
    image_before, mask_before = image.copy(), mask.copy()
    restore(image, task="inpaint", mask=mask, channel_axis=-1, iterations=3)
    np.testing.assert_array_equal(image, image_before)
    np.testing.assert_array_equal(mask, mask_before)
    assert image.flags.writeable and mask.flags.writeable


def test_iterate_yields_steps_with_previews_and_returns_the_result(noisy64):
    steps = iterate(noisy64[0], iterations=20, preview_every=5, early_stop=False)
    seen, result = drain(steps)
    assert [s.iteration for s in seen] == list(range(1, 21))
    assert all(s.total == 20 for s in seen)
    with_preview = [s.iteration for s in seen if s.preview is not None]
    assert with_preview == [5, 10, 15, 20]
    assert seen[-1].preview.shape == (64, 64) and seen[-1].preview.dtype == np.float32
    np.testing.assert_array_equal(seen[-1].preview, result.image)
    assert [s.loss for s in seen] == result.history["loss"]
    assert seen[-1].elapsed > 0 and seen[5].seconds_left > 0


def test_closing_the_generator_cancels_the_run(noisy64):
    steps = iterate(noisy64[0], iterations=1000)
    for _ in range(3):
        step = next(steps)
    steps.close()
    assert step.iteration == 3
    with pytest.raises(StopIteration):
        next(steps)


def test_poisson_noise_model_denoises_photon_counts():
    from napari_dip.samples import hubble

    sample = hubble(size=64, peak=30)
    poisson = restore(sample.degraded, noise="poisson", iterations=400, early_stop=False)
    gaussian = restore(sample.degraded, noise="gaussian", iterations=400, early_stop=False)
    assert poisson.parameters["noise"] == "poisson"
    noisy = psnr(sample.degraded, sample.truth, 30)
    with_poisson = psnr(poisson.image, sample.truth, 30)
    with_mse = psnr(gaussian.image, sample.truth, 30)
    assert with_poisson - noisy > 3.0, (noisy, with_poisson)
    # the likelihood that matches the noise fits faster than squared error (measured: +1.8 dB
    # at 400 steps)
    assert with_poisson > with_mse + 1.0, (with_poisson, with_mse)


def test_parameters_record_the_run(noisy64):
    import json

    result = restore(noisy64[0], task="denoise", iterations=5, seed=7, preset="fast")
    p = json.loads(json.dumps(result.parameters))  # JSON-serialisable
    assert p["seed"] == 7 and p["task"] == "denoise" and p["method"] == "dip"
    assert p["preset"] == "fast" and p["device"] == "cpu" and p["iterations"] == 5
    assert p["network"]["channels_down"] == [8, 16, 32, 64, 128]
    assert p["input_dtype"] == "float32" and p["input_shape"] == [64, 64]
    assert isinstance(p["version"], str) and p["version"]


def test_batched_host_syncs_give_the_same_run(noisy64):
    """On accelerators the loop syncs with the host every few steps only; the steps, the
    early-stopping point and the result must not change (tested here on the CPU)."""
    from napari_dip.pipeline import build_solver
    from napari_dip.request import build_request

    def run(sync_every):
        solver = build_solver(build_request(noisy64[0][:48, :48], iterations=400, early_stop=40,
                                        preview_every=50))
        solver.sync_every = sync_every
        return drain(solver.run())

    every_step, a = run(1)
    batched, b = run(7)
    assert a.stopped_at == b.stopped_at and a.iterations < 400  # early stopping fired
    np.testing.assert_array_equal(a.image, b.image)
    n = len(every_step)
    assert [s.loss for s in batched[:n]] == [s.loss for s in every_step]
    assert [s.iteration for s in batched[:n]] == list(range(1, n + 1))
    # the stop is noticed at the next sync: at most 6 steps later
    assert 0 <= len(batched) - n <= 6
    assert [s.iteration for s in batched if s.preview is not None][:-1] == \
        [s.iteration for s in every_step if s.preview is not None][:-1]
