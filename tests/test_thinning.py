"""Photon counts blended with Anscombe + BM3D, weighted by binomial thinning
(napari_dip.thinning)."""

import numpy as np
import pytest

from napari_dip import iterate, thinning
from napari_dip.drivers import drain
from napari_dip.pipeline import build_solver
from napari_dip.request import build_plan
from napari_dip.samples import cell

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


@pytest.mark.parametrize("kwargs, blends", [
    ({"noise": "poisson"}, True),
    ({"noise": "poisson", "noise_sigma": None}, False),  # ES-WMV asked for
    ({"noise": "poisson", "early_stop": 200}, False),
    ({"noise": "poisson", "early_stop": False}, False),
    ({}, False),  # Gaussian noise
    ({"noise": "poisson", "scale": 0.5}, False),  # intensities, not counts
], ids=["counts", "noise_sigma None", "ES-WMV patience", "no early stop", "gaussian",
        "not counts"])
def test_which_runs_blend_with_the_classical_estimate(kwargs, blends):
    _, counts = _counts(32)
    kwargs = dict(kwargs)
    image = counts * kwargs.pop("scale", 1.0) + (0.25 if "scale" in kwargs else 0)
    solver = build_solver(build_plan(image, **kwargs).single_request())
    try:
        assert thinning.applies(solver) is blends
    finally:
        solver.close()


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
