"""The network's estimate (DIP's or DeepRED's) blended with the classical method's
(napari_dip.thinning): photon counts with Anscombe + BM3D and Gaussian noise with BM3D,
weighted by data thinning; photon-count deconvolution with Richardson-Lucy; circular
deblurring with the self-tuned Wiener filter."""

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import signal
from skimage import data
from skimage.restoration import richardson_lucy

from napari_dip import iterate, psf, restore, thinning
from napari_dip.drivers import drain
from napari_dip.noise_levels import gaussian_sigma
from napari_dip.pipeline import build_solver
from napari_dip.request import build_plan
from napari_dip.samples import cell, fluorescence

pytestmark = pytest.mark.classical_blend  # conftest turns the blend off elsewhere

PEAK = 30.0


def _counts(size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    truth = cell(size=size).truth
    clean = truth / truth.max() * PEAK
    return clean, np.random.default_rng(seed).poisson(clean).astype(np.float32)


def _psnr(x: np.ndarray, clean: np.ndarray) -> float:
    return float(10 * np.log10(PEAK ** 2 / np.mean((x - clean) ** 2)))


def test_thinning_splits_the_counts_into_two_independent_halves():
    _, counts = _counts()
    before = counts.copy()
    y1, y2 = thinning.split(counts, seed=3)
    np.testing.assert_array_equal(counts, before)  # the input is never written to
    np.testing.assert_array_equal(y1 + y2, counts)
    for half in (y1, y2):
        assert half.dtype == counts.dtype and half.min() >= 0
        np.testing.assert_array_equal(half, np.round(half))
    assert abs(y1.sum() / counts.sum() - 0.5) < 0.02
    np.testing.assert_array_equal(thinning.split(counts, seed=3)[0], y1)  # reproducible
    assert not np.array_equal(thinning.split(counts, seed=4)[0], y1)


def test_anscombe_bm3d_restores_a_flat_poisson_image_without_bias():
    counts = np.random.default_rng(1).poisson(20.0, (1, 32, 32)).astype(np.float64)
    estimate = thinning.anscombe_bm3d(counts)
    assert estimate.shape == counts.shape
    assert abs(estimate.mean() - 20) < 0.5  # the exact unbiased inverse
    assert np.mean((estimate - 20) ** 2) < 0.1 * 20  # a tenth of the Poisson variance


@pytest.mark.parametrize("kwargs, blend", [
    ({"noise": "poisson"}, "anscombe-bm3d"),
    ({"noise": "poisson", "noise_sigma": None}, None),  # ES-WMV asked for
    ({"noise": "poisson", "early_stop": 200}, None),
    ({"noise": "poisson", "early_stop": False}, None),
    ({"noise": "poisson", "scale": 0.5}, None),  # intensities, not counts
    ({"noise": "poisson", "blend": False}, None),  # asked for the network alone
    ({}, "bm3d"),  # Gaussian noise at its estimated level
    ({"noise_sigma": 2.0}, "bm3d"),  # ... or a given one
    ({"noise_sigma": None}, None),
    ({"early_stop": 200}, None),
    ({"blend": False}, None),
    ({"method": "deepred"}, "bm3d"),  # DeepRED blends as DIP does
    ({"method": "deepred", "blend": False}, None),
    ({"method": "deepred", "noise": "poisson"}, "anscombe-bm3d"),
    ({"noise": "rician", "noise_sigma": 1.0}, None),
    ({"task": "deblur", "kernel": "gaussian", "noise": "poisson"}, "richardson-lucy"),
    ({"task": "deblur", "kernel": "gaussian", "boundary": "circular"}, "wiener"),
    ({"task": "deblur", "kernel": "gaussian", "boundary": "circular", "method": "deepred"},
     "wiener"),
    ({"task": "deblur", "kernel": "gaussian"}, None),  # a valid boundary: Wiener rings
    ({"task": "deblur", "kernel": "gaussian", "boundary": "circular", "early_stop": 200},
     None),
    ({"task": "inpaint", "mask": "corner"}, None),  # inpainting blends inside its stopping rule
], ids=["counts", "noise_sigma None", "ES-WMV patience", "no early stop", "not counts",
        "counts, blend False", "gaussian", "gaussian given sigma", "gaussian ES-WMV",
        "gaussian patience", "gaussian, blend False", "deepred", "deepred, blend False",
        "deepred counts", "rician", "deconvolution counts", "deblur circular",
        "deepred deblur circular", "deblur valid", "deblur patience", "inpaint"])
def test_which_runs_blend_with_the_classical_estimate(kwargs, blend):
    _, counts = _counts(32)
    kwargs = dict(kwargs)
    image = counts * kwargs.pop("scale", 1.0) + (0.25 if "scale" in kwargs else 0)
    if kwargs.get("mask") == "corner":
        kwargs["mask"] = np.zeros(image.shape, bool)
        kwargs["mask"][:8, :8] = True
    solver = build_solver(build_plan(image, **kwargs).single_request())
    try:
        found = thinning.blend_for(solver)
        assert (None if found is None else found.name) == blend
        assert thinning.applies(solver) is (blend is not None)
    finally:
        solver.close()


def test_a_stack_plans_one_fit_per_plane_where_its_planes_blend():
    _, counts = _counts(32)
    plan = build_plan(np.stack([counts, counts]), axes="ZYX", mode="slices")
    assert not plan.single  # drivers.run_parts blends each plane
    image = np.random.default_rng(0).normal(0.5, 0.1, (2, 32, 32))
    assert build_plan(image, axes="ZYX", mode="slices").template.ensemble == 1


def test_each_plane_of_a_stack_blends_at_the_first_planes_weight():
    clean = np.stack([data.camera()[80:128, 200:248], data.camera()[300:348, 100:148]]
                     ).astype(np.float32) / 255
    noisy = clean + np.random.default_rng(1).normal(0, 25 / 255, clean.shape).astype(np.float32)
    before = noisy.copy()
    steps = []
    result = drain(iterate(noisy, axes="ZYX", mode="slices", device="cpu", seed=0),
                   steps.append)
    np.testing.assert_array_equal(noisy, before)
    assert result.image.shape == noisy.shape and result.image.dtype == np.float32
    params = result.parameters
    weight = params["classical_blend_weight"]
    assert params["classical"] == "bm3d" and 0.05 < weight < 0.95
    # one validation fit, after the first plane's own steps
    validation = [s for s in steps if s.stage == "validation"]
    assert len(validation) == params["validation_iterations"] > 0
    assert {s.plane for s in validation} == {1} and all(s.preview is None for s in validation)
    first = result.parts[0]["iterations"]
    assert validation[0].run_iteration == first + 1
    run = [s.run_iteration for s in steps]
    assert run == sorted(run)  # progress never goes back

    def db(x, truth):
        return float(10 * np.log10(1 / np.mean((x - truth) ** 2)))

    for plane in range(2):
        # each plane's blend is with BM3D at that plane's own estimated noise level
        chw = noisy[plane][None].astype(np.float64)
        classical = thinning.bm3d_at_sigma(
            chw, SimpleNamespace(noise_sigma=gaussian_sigma(chw)))[0]
        network = (result.image[plane] - (1 - weight) * classical) / weight
        # one torch thread: 28.36 / 38.02 dB against BM3D 28.26 / 37.89 and the network
        # alone 27.72 / 35.50
        assert db(result.image[plane], clean[plane]) > db(network, clean[plane]) + 0.3
        assert db(result.image[plane], clean[plane]) > db(classical, clean[plane]) + 0.05


def test_gaussian_fission_gives_two_copies_with_independent_noise():
    y = np.full((1, 64, 64), 0.5)
    request = SimpleNamespace(image=y, noise_sigma=0.1, seed=2)
    y1, y2, changes = thinning.split_gaussian(request)
    np.testing.assert_array_equal(y, 0.5)  # the input is never written to
    np.testing.assert_allclose(y1 + y2, 2 * y)
    assert abs(np.std(y1 - y2) / 2 - 0.1) < 0.005  # z ~ N(0, 0.1^2)
    assert changes == {"noise_sigma": pytest.approx(0.1 * np.sqrt(2)),
                       "noise_sigma_estimated": False}
    np.testing.assert_array_equal(thinning.split_gaussian(request)[0], y1)  # reproducible


@pytest.mark.auto_ensemble
def test_gaussian_denoising_that_blends_fits_once_by_default():
    image = np.random.default_rng(0).normal(0.5, 0.1, (32, 32))
    assert build_plan(image).template.ensemble == 1  # + the validation fit
    assert build_plan(image, noise_sigma=None).template.ensemble == 2  # no blend: two fits
    assert build_plan(image, ensemble=3).template.ensemble == 3  # asked for
    assert build_plan(image, blend=False).template.ensemble == 2  # the network alone
    with pytest.raises(ValueError, match="blend must be True .* or False"):
        build_plan(image, blend="no")
    assert build_plan(image, task="deblur", kernel="gaussian", noise="poisson").template \
        .ensemble == 2  # photon-count deconvolution averages two fits


def test_richardson_lucy_steps_match_scikit_image_on_reflected_data():
    kernel = psf(na=1.0, wavelength=0.52, pixel_size=0.1, shape=13)
    y = np.random.default_rng(0).poisson(40.0, (36, 40)).astype(np.float64)
    before = y.copy()
    ours = thinning.richardson_lucy_steps(y, kernel, (2, 7))
    np.testing.assert_array_equal(y, before)
    padded = np.pad(y, 6, mode="reflect")
    for n in (2, 7):
        theirs = richardson_lucy(padded / padded.max(), kernel, num_iter=n,
                                 clip=False)[6:-6, 6:-6] * padded.max()
        assert ours[n].shape == y.shape
        np.testing.assert_allclose(ours[n], theirs, rtol=1e-8, atol=1e-9)


# one torch thread: DIP 29.00 dB against BM3D 28.91 and the network alone 28.24 (weight
# 0.36); DeepRED 28.98 against 28.91 and DeepRED alone 28.36 (weight 0.46), by a validation
# fit of its own
@pytest.mark.parametrize("method", ["dip", "deepred"])
def test_a_gaussian_denoising_run_beats_both_the_network_and_bm3d(method):
    clean = data.camera()[80:144, 200:264].astype(np.float32) / 255
    noisy = clean + np.random.default_rng(1).normal(0, 25 / 255, clean.shape).astype(np.float32)
    steps = []
    result = drain(iterate(noisy, method=method, device="cpu", seed=0), steps.append)
    params = result.parameters
    weight = params["classical_blend_weight"]
    assert params["classical"] == "bm3d" and 0.05 < weight < 0.95
    assert params["ensemble"] == 1 and result.uncertainty is None
    # the classical estimate is clipped to the data's range, as the network's result is
    assert noisy.min() <= result.image.min() and result.image.max() <= noisy.max()
    classical = thinning.bm3d_at_sigma(noisy[None].astype(np.float64),
                                       SimpleNamespace(noise_sigma=params["noise_sigma"]))[0]
    network = (result.image - (1 - weight) * classical) / weight

    def db(x):
        return float(10 * np.log10(1 / np.mean((x - clean) ** 2)))

    assert db(result.image) > db(classical) + 0.04
    assert db(result.image) > db(network) + 0.5
    validation = [s for s in steps if s.stage == "validation"]
    assert len(validation) == params["validation_iterations"] > 0
    assert all(s.preview is None for s in validation)


def test_a_photon_count_deconvolution_averages_the_network_and_richardson_lucy():
    kernel = psf(na=1.0, wavelength=0.52, pixel_size=0.1, shape=13)
    scene = fluorescence((52, 52), 100, seed=0)
    truth = scene[6:-6, 6:-6]
    counts = np.random.default_rng(1).poisson(
        np.clip(signal.fftconvolve(scene, kernel, mode="valid"), 0, None)).astype(np.float32)
    before = counts.copy()
    steps = []
    result = drain(iterate(counts, task="deblur", kernel=kernel, noise="poisson",
                           device="cpu", seed=0, ensemble=1), steps.append)
    np.testing.assert_array_equal(counts, before)
    params = result.parameters
    assert params["classical"] == "richardson-lucy"
    assert params["classical_blend_weight"] == thinning.DECONVOLUTION_WEIGHT == 0.5
    assert params["validation_iterations"] == 0 and all(s.stage is None for s in steps)
    request = SimpleNamespace(image=counts[None].astype(np.float64), kernel=kernel, seed=0)
    classical = thinning.richardson_lucy_thinned(request.image, request)[0]
    network = 2 * result.image - classical
    tries = thinning.richardson_lucy_steps(counts, kernel, thinning.RL_ITERATIONS)

    def db(x):
        return float(10 * np.log10(truth.max() ** 2 / np.mean((x - truth) ** 2)))

    # one torch thread: 25.85 dB against Richardson-Lucy 25.53 at its thinned iteration
    # count (25.61 at the truth's best) and the network alone 24.75
    assert db(result.image) > max(db(x) for x in tries.values()) + 0.15
    assert db(result.image) > db(network) + 0.5


@pytest.mark.auto_ensemble  # the default's two fits
def test_a_photon_count_run_beats_both_the_network_and_anscombe_bm3d():
    clean, counts = _counts(48)
    before = counts.copy()
    steps = []
    result = drain(iterate(counts, noise="poisson", device="cpu", seed=0), steps.append)
    np.testing.assert_array_equal(counts, before)
    assert result.image.shape == counts.shape and result.image.dtype == np.float32
    params = result.parameters
    weight = params["classical_blend_weight"]
    assert params["classical"] == "anscombe-bm3d" and 0.05 < weight < 0.95
    classical = thinning.anscombe_bm3d(counts[None].astype(np.float64))[0]
    network = (result.image - (1 - weight) * classical) / weight
    # one torch thread (the tests'): 28.42 dB against Anscombe + BM3D 27.98 and the
    # network alone 28.61 (two threads: 28.46, the network 28.35); the thinned weight is
    # noisy on 48 px, so the blend may trail the better estimate a little
    blended = _psnr(result.image, clean)
    assert blended > _psnr(classical, clean) + 0.25
    assert blended > _psnr(network, clean) - 0.3
    # the validation fit's steps: numbered on from the run's, without previews
    validation = [s for s in steps if s.stage == "validation"]
    assert len(validation) == params["validation_iterations"] > 0
    assert all(s.preview is None for s in validation)
    assert validation[0].run_iteration == result.iterations + 1
    assert all(s.stage is None for s in steps[:result.iterations])
    assert result.uncertainty.shape == counts.shape  # two fits (auto) on 48 px


def test_a_short_run_leans_on_the_classical_estimate():
    clean, counts = _counts(48)
    result = drain(iterate(counts, noise="poisson", iterations=20, device="cpu", seed=0))
    classical = thinning.anscombe_bm3d(counts[None].astype(np.float64))[0]
    # 20 steps leave the network blurred: the thinned halves say so
    assert result.parameters["classical_blend_weight"] < 0.3
    assert _psnr(result.image, clean) > _psnr(classical, clean) - 0.3


def _circular_blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``image`` blurred by ``kernel`` (odd sizes) with wrap-around."""
    psf = np.zeros(image.shape)
    top = [n // 2 - k // 2 for n, k in zip(image.shape, kernel.shape, strict=True)]
    psf[top[0]:top[0] + kernel.shape[0], top[1]:top[1] + kernel.shape[1]] = kernel
    return np.real(np.fft.ifft2(np.fft.fft2(image) * np.fft.fft2(np.fft.ifftshift(psf))))


def test_the_self_tuned_wiener_filter_restores_a_circular_blur():
    clean = data.camera()[80:144, 200:264].astype(np.float64) / 255
    kernel = np.full((5, 5), 1 / 25)
    noisy = _circular_blur(clean, kernel) + np.random.default_rng(0).normal(0, 0.01,
                                                                            clean.shape)
    blurred = 10 + 50 * noisy  # units of its own
    before = blurred.copy()
    request = SimpleNamespace(kernel=kernel, boundary="circular", seed=0)
    estimate = thinning.unsupervised_wiener(blurred[None], request)[0]
    np.testing.assert_array_equal(blurred, before)
    assert estimate.shape == clean.shape

    def db(x):
        return float(10 * np.log10(50 ** 2 / np.mean((x - (10 + 50 * clean)) ** 2)))

    assert db(estimate) > db(blurred) + 2  # sharper than the blurred image, in its units
    np.testing.assert_array_equal(  # seeded: the same estimate again
        thinning.unsupervised_wiener(blurred[None], request)[0], estimate)


# one torch thread, after 300 steps: DIP 26.21 dB against the Wiener filter's 24.79 and
# the network's 24.18; DeepRED 27.19 against 24.79 and DeepRED alone 26.42
@pytest.mark.parametrize("method, margin", [("dip", 0.8), ("deepred", 0.5)])
def test_a_circular_deblurring_run_averages_the_network_and_the_wiener_filter(method,
                                                                               margin):
    clean = data.camera()[80:144, 200:264].astype(np.float32) / 255
    kernel = np.full((9, 9), 1 / 81)
    blurred = (_circular_blur(clean, kernel) + np.random.default_rng(1).normal(
        0, 0.01, clean.shape)).astype(np.float32)
    result = restore(blurred, task="deblur", kernel="uniform", boundary="circular",
                     method=method, iterations=300, device="cpu")
    params = result.parameters
    assert params["classical"] == "wiener" and params["validation_iterations"] == 0
    assert params["classical_blend_weight"] == thinning.DEBLUR_WEIGHT == 0.5
    request = SimpleNamespace(kernel=kernel, boundary="circular", seed=0)
    classical = thinning.unsupervised_wiener(blurred[None].astype(np.float64), request)[0]
    network = 2 * result.image - classical

    def db(x):
        return float(10 * np.log10(1 / np.mean((x - clean) ** 2)))

    assert db(result.image) > max(db(classical), db(network)) + margin
