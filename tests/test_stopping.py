"""Stopping at the noise level (discrepancy principle) and the choice between it and ES-WMV."""

import numpy as np
import pytest
import torch
from conftest import psnr

from napari_dip import iterate, restore, validate
from napari_dip.pipeline import build_solver
from napari_dip.request import build_request
from napari_dip.stabilisers import Discrepancy

SIGMA = 50 / 255


@pytest.fixture
def very_noisy64(camera64):
    rng = np.random.default_rng(1)
    return camera64 + rng.normal(0, SIGMA, camera64.shape).astype(np.float32), camera64


def test_discrepancy_stops_at_the_first_window_whose_mean_reaches_the_threshold():
    rule = Discrepancy(0.5, window=3)
    stops = []
    for iteration, loss in enumerate([2.0, 0.1, 0.1, 0.9, 0.6, 0.3, 5.0, 5.0], 1):
        rule.update(iteration, torch.tensor(loss))
        stops.append(rule.should_stop(iteration))
    # means of 3: (2, .1, .1) = .73, (.1, .1, .9) = .37 -> reached at iteration 4, and kept
    assert stops == [False, False, False, True, True, True, True, True]
    assert rule.reached_at == 4


def test_discrepancy_needs_a_positive_threshold():
    with pytest.raises(ValueError, match="must be positive"):
        Discrepancy(0.0)


def test_known_noise_level_stops_when_the_residual_reaches_it(very_noisy64):
    noisy, clean = very_noisy64
    result = restore(noisy, iterations=3000, noise_sigma=SIGMA, seed=0)
    p = result.parameters
    assert p["stopping"] == "discrepancy" and p["noise_sigma_estimated"] is False
    assert p["noise_sigma"] == pytest.approx(SIGMA)
    assert 20 < result.iterations < 3000
    assert result.stopped_at == result.iterations == p["discrepancy_reached_at"]
    # the loss is in the network's [0, 1] units: the image's range maps to 1
    threshold = (SIGMA / float(noisy.max() - noisy.min())) ** 2
    loss = np.asarray(result.history["loss"])
    assert loss[-20:].mean() <= threshold < loss[-21:-1].mean()
    assert np.all(np.isnan(result.history["variance"]))  # ES-WMV did not run
    assert psnr(result.image, clean) - psnr(noisy, clean) >= 6.0


def test_noise_level_is_in_the_images_units(very_noisy64):
    noisy, _ = very_noisy64
    unit = build_solver(build_request(noisy, noise_sigma=SIGMA))
    grey_levels = build_solver(build_request(noisy * 255 + 10, noise_sigma=SIGMA * 255))
    assert unit.discrepancy.threshold == pytest.approx(grey_levels.discrepancy.threshold)
    assert unit.discrepancy.threshold == pytest.approx(
        (SIGMA / float(noisy.max() - noisy.min())) ** 2)


def test_inpainting_threshold_counts_only_the_known_pixels(astronaut48):
    grey = astronaut48[..., 0]
    mask = np.zeros(grey.shape, bool)
    mask[:, :12] = True  # a quarter of the pixels to fill
    solver = build_solver(build_request(grey, "inpaint", mask=mask, noise_sigma=0.05))
    known = 1 - mask.mean()
    expected = (0.05 / float(grey.max() - grey.min())) ** 2 * known
    assert solver.discrepancy.threshold == pytest.approx(expected)


def test_auto_estimates_the_noise_level_when_denoising(very_noisy64):
    noisy, _ = very_noisy64
    result = restore(noisy, iterations=5, seed=0)  # noise_sigma="auto" is the default
    p = result.parameters
    assert p["stopping"] == "discrepancy" and p["noise_sigma_estimated"] is True
    assert p["noise_sigma"] == pytest.approx(SIGMA, rel=0.15)


@pytest.mark.parametrize("kwargs", [
    dict(task="super_resolution", factor=2),  # auto: denoising only
    dict(noise_sigma=None),
    dict(early_stop=50),  # a patience asks for ES-WMV
    dict(method="deepred", denoiser="tv", noise_sigma=None),
    dict(method="deepred", denoiser="tv", task="super_resolution", factor=2),
])
def test_ES_WMV_where_no_noise_level_applies(very_noisy64, kwargs):
    noisy, _ = very_noisy64
    p = build_solver(build_request(noisy, **kwargs)).parameters()
    assert p["stopping"] == "es-wmv" and "noise_sigma_estimated" not in p


def test_poisson_and_no_early_stop_use_no_gaussian_noise_level(very_noisy64):
    noisy, _ = very_noisy64
    counts = np.random.default_rng(0).poisson(np.clip(noisy, 0, None) * 30).astype(float)
    # counts stop at their own (Poisson) noise level, scaled intensities by ES-WMV
    p = build_solver(build_request(counts, noise="poisson")).parameters()
    assert p["stopping"] == "discrepancy" and p["discrepancy_noise"] == "poisson"
    assert "noise_sigma" not in p  # a Poisson variance follows the rate: no one sigma
    p = build_solver(build_request(counts / 7, noise="poisson")).parameters()
    assert p["stopping"] == "es-wmv"
    assert build_solver(build_request(noisy, early_stop=False)).parameters()["stopping"] is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(noise_sigma=-0.1), "positive number"),
    (dict(noise_sigma="high"), "positive number"),
    (dict(noise_sigma=True), "positive number"),
    (dict(noise_sigma=float("nan")), "positive number"),
    (dict(noise_sigma=25.0), "not smaller than the image's whole value range"),
    (dict(noise_sigma=0.1, noise="poisson"), "noise='poisson' has no standard deviation"),
    (dict(noise_sigma=0.1, early_stop=False), "early_stop=False runs every iteration"),
    (dict(noise_sigma=0.1, early_stop=200), "sets ES-WMV's patience"),
    (dict(noise_sigma=0.1, task="flash_no_flash"), "task='flash_no_flash' has no noise"),
])
def test_bad_noise_levels_are_refused_before_the_run(camera64, kwargs, message):
    image = camera64 + 0.05  # non-negative, for the Poisson case
    if kwargs.get("task") == "flash_no_flash":
        kwargs = dict(kwargs, flash=image)
    with pytest.raises(ValueError, match=message):
        validate(image, **kwargs)


def test_stacks_carry_the_noise_level(very_noisy64):
    from napari_dip.request import build_plan

    noisy, _ = very_noisy64
    stack = np.stack([noisy, noisy[::-1]])
    plan = build_plan(stack, "denoise", "dip", axes="ZYX", mode="slices", tile=None, overlap=None,
                      warm_start=None, spacing=None, noise_sigma=SIGMA)
    assert plan.template.noise_sigma == SIGMA
    with pytest.raises(ValueError, match="positive number"):
        validate(stack, axes="ZYX", noise_sigma=-1.0)


def test_discrepancy_progress_extrapolates_a_falling_loss_to_the_threshold():
    rule = Discrepancy(0.01, window=2)
    # the loss halves every 10 steps: from 0.64 at step 10 it reaches 0.01 six halvings on
    reports = {}
    for iteration in range(1, 31):
        rule.update(iteration, torch.tensor(0.64 * 0.5 ** ((iteration - 10) / 10)))
        rule.should_stop(iteration)
        reports[iteration] = rule.progress(iteration)
    assert reports[1] == {"threshold": 0.01}  # the window is not full yet
    expected = reports[30]["expected_stop"]
    assert abs(expected - 70) <= 2, expected  # 0.64 / 2**6 = 0.01 at step 70
    assert reports[30]["threshold"] == 0.01


def test_discrepancy_progress_gives_no_stop_for_a_flat_loss():
    rule = Discrepancy(0.01, window=2)
    for iteration in range(1, 20):
        rule.update(iteration, torch.tensor(0.5))
        report = rule.progress(iteration)
    assert "expected_stop" not in report


def test_steps_report_the_rule_the_run_stops_by(very_noisy64):
    noisy, _ = very_noisy64
    steps = []
    gen = iterate(noisy, iterations=400, noise_sigma=None, seed=0)  # ES-WMV
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as stop:
        result = stop.value
    late = [s for s in steps if s.kept is not None]
    assert late and late[0].iteration == 100  # once the 100-step window is full
    assert all(s.threshold is None for s in steps)
    patience = result.parameters["early_stop_patience"]
    assert all(s.expected_stop == s.kept + patience for s in late)
    if result.iterations < 400:  # stopped by the rule: the minimum it kept, its latest stop
        assert steps[-1].kept == result.stopped_at
        assert steps[-1].expected_stop == result.iterations
    # the time left counts to the rule's stop, not the limit, once it is known
    step = late[0]
    assert step.last_iteration == min(400, step.expected_stop)
    assert step.seconds_left == pytest.approx(
        step.elapsed / step.iteration * (step.last_iteration - step.iteration))

    gen = iterate(noisy, iterations=60, noise_sigma=SIGMA, seed=0)
    thresholds = []
    try:
        while True:
            thresholds.append(next(gen).threshold)
    except StopIteration:
        pass
    # in the loss's units: the noise variance over the image's range squared
    expected = (SIGMA / float(noisy.max() - noisy.min())) ** 2
    assert thresholds and all(t == pytest.approx(expected, rel=1e-6) for t in thresholds)
