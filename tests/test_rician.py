"""The Rician noise model for magnitude MR images (issue 16): its likelihood against
scipy's Rice distribution, the noise level read from the background, validation, the
restoration of the MRI sample against the Gaussian model, the Rician moments against a
Monte-Carlo estimate and the discrepancy principle built on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from napari_dip import restore, samples, validate
from napari_dip._settings import NOISE_CHOICES, WidgetSettings, noise_level_for
from napari_dip.likelihoods import RicianLikelihood, make_likelihood, rician_moments
from napari_dip.noise_levels import rician_sigma
from napari_dip.stabilisers import Discrepancy, RicianDiscrepancy, rician_discrepancy


def psnr(a, b) -> float:
    return float(10 * np.log10(1 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def test_the_likelihood_is_the_rice_negative_log_likelihood():
    rng = np.random.default_rng(0)
    sigma = 0.07
    y = torch.tensor(rng.uniform(0.01, 1.0, 50), dtype=torch.float64)
    nu1 = torch.tensor(rng.uniform(0.0, 1.0, 50), dtype=torch.float64)
    nu2 = torch.tensor(rng.uniform(0.0, 1.0, 50), dtype=torch.float64)
    nll = RicianLikelihood(sigma)
    # the terms dropped do not depend on nu: differences match scipy's log-density
    ours = float(nll(nu1, y) - nll(nu2, y))
    ref = -np.mean(stats.rice.logpdf(y.numpy(), nu1.numpy() / sigma, scale=sigma)
                   - stats.rice.logpdf(y.numpy(), nu2.numpy() / sigma, scale=sigma))
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_the_likelihood_stays_finite_where_the_bessel_function_overflows():
    nll = make_likelihood("rician", sigma=1e-3)
    y = torch.tensor([1.0, 0.5, 0.0])
    nu = torch.tensor([1.0, 0.4, -0.2], requires_grad=True)  # z = y nu / sigma^2 up to 1e6
    loss = nll(nu, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(nu.grad).all()


@pytest.mark.parametrize("sigma", [0.02, 0.06])
def test_the_noise_level_is_read_from_the_background(sigma):
    noisy = samples.mri(sigma=sigma).degraded
    assert rician_sigma(noisy) == pytest.approx(sigma, rel=0.12)
    assert rician_sigma(noisy * 1000) == pytest.approx(1000 * rician_sigma(noisy), rel=1e-6)


@pytest.mark.parametrize("size, sigma", [(64, 0.06), (64, 0.10), (128, 0.10), (64, 0.15)])
def test_dim_tissue_does_not_inflate_the_noise_level(size, sigma):
    # the phantom's brain (0.2) overlaps the background's histogram at high noise: the
    # histogram estimate alone was 15-30 % high here; the spatial refinement keeps it within
    # 5 % (measured 1-3 % low on seeds 0-2)
    for seed in (0, 1):
        noisy = samples.mri(size=size, sigma=sigma, seed=seed).degraded
        assert rician_sigma(noisy) == pytest.approx(sigma, rel=0.05)


def test_an_image_without_background_asks_for_the_noise_level():
    bright = 0.5 + 0.1 * np.random.default_rng(1).random((48, 48))
    with pytest.raises(ValueError, match="too little of it; give noise_sigma"):
        rician_sigma(bright)
    with pytest.raises(ValueError, match="give noise_sigma"):
        restore(bright, noise="rician", iterations=2, device="cpu")


def test_validation_of_the_rician_model():
    image = samples.mri(size=32).degraded
    with pytest.raises(ValueError, match="noise='rician' needs the noise's standard deviation"):
        validate(image, noise="rician", noise_sigma=None)
    with pytest.raises(ValueError, match="noise='rician' needs non-negative"):
        validate(image - 0.5, noise="rician")
    with pytest.raises(ValueError, match="not smaller than the image's whole value range"):
        validate(image, noise="rician", noise_sigma=10.0)
    # the likelihood's sigma applies whatever the stopping rule and method
    validate(image, noise="rician", noise_sigma=0.05, early_stop=False)
    validate(image, noise="rician", noise_sigma=0.05, method="deepred")


def test_the_rician_model_restores_the_mri_sample_far_above_the_gaussian_one():
    sample = samples.mri(size=64)
    truth, background = sample.truth, sample.truth < 1e-3
    kwargs = dict(seed=0, device="cpu", iterations=1000)
    gaussian = restore(sample.degraded, noise="gaussian", **kwargs)
    rician = restore(sample.degraded, **sample.kwargs, early_stop=False,
                     **{k: v for k, v in kwargs.items()})
    assert sample.kwargs["noise"] == "rician"
    gain = psnr(rician.image, truth) - psnr(gaussian.image, truth)
    assert gain >= 1.0, f"Rician {gain:+.2f} dB over Gaussian"
    # the Gaussian model keeps the magnitude's floor; the Rician one takes it away (the
    # likelihood is flat about 0: with a plain sigmoid output the floor sank slowly, 0.013
    # after these 1000 steps; the output floor lets the network reach 0)
    assert abs(float(rician.image[background].mean()) - 0.0) < 0.01  # issue 16's target
    assert np.mean(rician.image[background] == 0) > 0.5  # exact zeros, not a sigmoid's tail
    assert rician.parameters["noise"] == "rician"
    assert rician.parameters["noise_sigma_estimated"] is True
    assert rician.parameters["noise_sigma"] == pytest.approx(0.06, rel=0.05)
    assert rician.image.min() >= 0 and np.isfinite(rician.image).all()


def test_a_stack_reads_one_noise_level_for_all_its_planes():
    planes = np.stack([samples.mri(size=48, seed=s).degraded for s in (0, 1)])
    result = restore(planes, axes="ZYX", noise="rician", iterations=3, device="cpu",
                     warm_start=False)
    assert result.parameters["noise_sigma"] == pytest.approx(rician_sigma(planes))
    assert result.parameters["noise_sigma_estimated"] is True


def test_the_widget_offers_the_rician_model_and_its_noise_level():
    assert ("Rician (magnitude MRI)", "rician") in NOISE_CHOICES
    rician = WidgetSettings(noise="rician", early_stop=False)
    assert noise_level_for(rician)  # the likelihood needs it whatever the stopping rule
    assert not noise_level_for(WidgetSettings(noise="poisson"))


# -- the Rician moments and the discrepancy principle for magnitude data -----------------------


def _magnitudes(nu, sigma, rng, n=None):
    """Rician samples |nu + sigma (g1 + i g2)| (numpy), ``n`` per value of ``nu``."""
    shape = np.shape(nu) if n is None else (n, *np.shape(nu))
    return np.hypot(nu + rng.normal(0, sigma, shape), rng.normal(0, sigma, shape))


@pytest.mark.parametrize("snr", [0.0, 0.5, 1.0, 2.0, 5.0, 30.0])
def test_the_rician_moments_match_a_monte_carlo_estimate(snr):
    # 400 000 samples (numpy, seed 0): the sample mean is within 5 standard errors
    # (sqrt(var / n), 0.16 % of sigma) and the sample variance within 1.5 % (its standard
    # error is about sqrt(2 / n) = 0.22 % for these near-Gaussian shapes)
    sigma, n = 0.07, 400_000
    nu = snr * sigma
    m = _magnitudes(nu, sigma, np.random.default_rng(0), n)
    mean, variance = rician_moments(torch.tensor(nu, dtype=torch.float64), sigma)
    assert float(mean) == pytest.approx(m.mean(), abs=5 * m.std() / np.sqrt(n))
    assert float(variance) == pytest.approx(m.var(), rel=0.015)


def test_the_rician_moments_have_the_rayleigh_and_gaussian_limits():
    sigma = 0.05
    mean, variance = rician_moments(torch.tensor([0.0, -0.1], dtype=torch.float64), sigma)
    assert mean.tolist() == pytest.approx([sigma * np.sqrt(np.pi / 2)] * 2, rel=1e-12)
    assert variance.tolist() == pytest.approx([(2 - np.pi / 2) * sigma**2] * 2, rel=1e-12)
    # high SNR: nu + sigma^2 / (2 nu) + sigma^4 / (8 nu^3) (the asymptotic series; the next
    # term is below 1e-8 here) and sigma^2, finite in float32 at any SNR
    nu = torch.tensor([1.0, 10.0, 1e4], dtype=torch.float64)
    mean, variance = rician_moments(nu, sigma)
    series = nu + sigma**2 / (2 * nu) + sigma**4 / (8 * nu**3)
    assert mean.tolist() == pytest.approx(series.tolist(), rel=1e-8)
    assert variance.tolist() == pytest.approx([sigma**2] * 3, rel=2e-3)
    mean32, var32 = rician_moments(torch.tensor([0.0, 1.0, 1e4]), 1e-3)
    assert torch.isfinite(mean32).all() and torch.isfinite(var32).all()


def test_the_likelihoods_gradient_is_the_analytic_one_also_at_zero():
    from scipy.special import ive

    sigma = 0.05
    y = torch.tensor([0.0, 0.01, 0.06, 0.2, 0.5, 1.0, 1.0, 0.05], dtype=torch.float64)
    nu = torch.tensor([1e-6, 1e-3, 0.01, 0.0, 0.5, 1.0, 0.99, 0.05], dtype=torch.float64,
                      requires_grad=True)
    (RicianLikelihood(sigma)(nu, y) * len(y)).backward()
    z = (y * nu / sigma**2).detach().numpy()
    # d/dnu [-log p(y | nu)] = (nu - y I1(z) / I0(z)) / sigma^2; 0 where nu = 0
    analytic = (nu.detach().numpy() - y.numpy() * ive(1, z) / ive(0, z)) / sigma**2
    assert nu.grad.numpy() == pytest.approx(analytic, rel=1e-9, abs=1e-9)
    assert float(nu.grad[3]) == 0.0  # was -y / sigma^2 = -80 through i0e's kink
    # the value is >= 0 (the log-scaled loss plot shows it) and tends to the Gaussian term
    far = RicianLikelihood(sigma)(torch.tensor([0.8]), torch.tensor([0.9]))
    gaussian = 0.1**2 / (2 * sigma**2) + 0.5 * np.log(2 * np.pi * 0.72 / sigma**2)
    assert float(far) == pytest.approx(gaussian, rel=1e-3)
    assert float(RicianLikelihood(sigma)(torch.rand(100), torch.rand(100))) >= 0


def _phantom(size=48, sigma=0.06, seed=0):
    """A disc of 0.6 on a zero background (half the pixels) and its Rician magnitudes, as
    (1, 1, size, size) float64 tensors."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    truth = np.where(np.hypot(yy, xx) < size * 0.4, 0.6, 0.0)
    noisy = _magnitudes(truth, sigma, np.random.default_rng(seed))
    return (torch.tensor(truth, dtype=torch.float64)[None, None],
            torch.tensor(noisy, dtype=torch.float64)[None, None])


def test_the_rician_rules_threshold_is_the_mean_rician_variance():
    sigma = 0.06
    truth, noisy = _phantom(sigma=sigma)
    rule = RicianDiscrepancy(noisy, sigma, window=3, factor=1.0)
    assert rule.threshold == pytest.approx(sigma**2)  # before a window: the high-SNR bound
    default = RicianDiscrepancy(noisy, sigma, window=3)
    assert default.factor == RicianDiscrepancy.FACTOR == 0.9
    assert default.threshold == pytest.approx(0.9 * sigma**2)
    for it in range(1, 4):
        rule.observe(it, truth, truth, torch.tensor(0.0))
        default.observe(it, truth, truth, torch.tensor(0.0))
    background = float((truth == 0).double().mean())
    # background (2 - pi/2) sigma^2, disc (SNR 10) about sigma^2 (1 - 1/(4 SNR^2))
    _, disc_var = rician_moments(torch.tensor(0.6, dtype=torch.float64), sigma)
    expected = background * (2 - np.pi / 2) * sigma**2 + (1 - background) * float(disc_var)
    assert rule.threshold == pytest.approx(expected, rel=1e-6)  # the window is float32
    assert default.threshold == pytest.approx(0.9 * expected, rel=1e-6)
    # the truth's residual about the Rician mean is the Rician variance (Monte-Carlo,
    # 2304 pixels: a few % of scatter), not the squared residual about nu (2 sigma^2
    # in the background), which a Gaussian rule at sigma^2 would wait for
    residual, bound = rule.statistics(truth)
    assert float(residual) == pytest.approx(float(bound), rel=0.08)
    assert float(((noisy - truth) ** 2).mean()) > 1.3 * sigma**2
    # pixels without data do not count: a weight of 0 over the disc leaves the background's
    masked = RicianDiscrepancy(noisy, sigma, weight=(truth == 0).double(), window=1,
                               factor=1.0)
    masked.observe(1, truth, truth, torch.tensor(0.0))
    assert masked.threshold == pytest.approx((2 - np.pi / 2) * sigma**2, rel=1e-6)
    with pytest.raises(ValueError, match="sigma > 0"):
        RicianDiscrepancy(noisy, 0.0)
    with pytest.raises(ValueError, match="factor must be > 0"):
        RicianDiscrepancy(noisy, sigma, factor=0.0)


def test_the_rician_rule_averages_an_ensembles_members():
    """K members (K, 1, H, W): the statistics are the members' mean, with or without a
    weight (an unweighted sum over K members would count them K times)."""
    sigma = 0.06
    truth, noisy = _phantom(sigma=sigma)
    members = torch.cat([truth, 0.5 * truth + 0.5 * noisy, noisy])
    weight = (truth == 0).double()
    for rule in (RicianDiscrepancy(noisy, sigma), RicianDiscrepancy(noisy, sigma,
                                                                     weight=weight)):
        together = rule.statistics(members)
        alone = [rule.statistics(members[k:k + 1]) for k in range(3)]
        for i in range(2):
            assert float(together[i]) == pytest.approx(np.mean([float(a[i]) for a in alone]),
                                                       rel=1e-9)
        assert float(alone[2][0]) < float(alone[0][0])  # the members differ


def _path(truth, noisy, under=60, over=60):
    """Outputs of a synthetic fit: from half the truth to the truth in ``under`` steps, then
    on to the noisy data in ``over`` steps (fitting the noise)."""
    for t in range(1, under + 1):
        yield truth * (0.5 + 0.5 * t / under)
    for t in range(1, over + 1):
        yield truth + (noisy - truth) * (t / over)


def test_the_rician_rule_stops_near_the_truth_and_before_the_gaussian_one():
    sigma, window, under = 0.06, 5, 60
    truth, noisy = _phantom(sigma=sigma)
    # factor 1: the plain principle, which stops at the truth's residual
    rician = RicianDiscrepancy(noisy, sigma, window=window, factor=1.0)
    default = RicianDiscrepancy(noisy, sigma, window=window)  # factor 0.9
    gaussian = Discrepancy(sigma**2, window=window)
    outputs = list(_path(truth, noisy, under=under))
    stops = {}
    for it, out in enumerate(outputs, start=1):
        rician.observe(it, out, out, torch.tensor(0.0))
        default.observe(it, out, out, torch.tensor(0.0))
        gaussian.observe(it, out, out, torch.mean((out - noisy) ** 2))
        for name, rule in (("rician", rician), ("default", default), ("gaussian", gaussian)):
            if name not in stops and rule.should_stop(it):
                stops[name] = it
    # the averaged residual reaches the averaged variance within a few steps of the truth
    # (step `under`; the window adds at most window - 1 steps of delay)
    assert under - 2 <= stops["rician"] <= under + window + 3, stops
    kept = outputs[stops["rician"] - 1]
    truth_residual, _ = rician.statistics(truth)
    kept_residual, _ = rician.statistics(kept)
    assert float(kept_residual) == pytest.approx(float(truth_residual), rel=0.15)
    assert abs(float(kept[truth == 0].mean())) < 0.01  # the floor is not fitted
    # a Gaussian rule at sigma^2 fits the floor first (2 sigma^2 per background pixel)
    assert stops["gaussian"] >= stops["rician"] + 8, stops  # measured: 61 and 73
    assert float(outputs[stops["gaussian"] - 1][truth == 0].mean()) > 0.01
    # factor 0.9 waits a little longer (for the averaged estimate), still before the
    # Gaussian rule and with the floor under 0.01
    assert stops["rician"] < stops["default"] < stops["gaussian"], stops
    assert abs(float(outputs[stops["default"] - 1][truth == 0].mean())) < 0.01


def test_the_rician_rules_progress_and_parameters():
    sigma, window = 0.06, 4
    truth, noisy = _phantom(sigma=sigma)
    rule = RicianDiscrepancy(noisy, sigma, window=window, factor=1.0)
    # its statistic is not the loss the steps report: no threshold for the loss plot
    assert rule.progress(0) == {}
    reports = {}
    for it, out in enumerate(_path(truth, noisy, under=40, over=40), start=1):
        rule.observe(it, out, out, torch.tensor(0.0))
        stop = rule.should_stop(it)
        reports[it] = rule.progress(it)
        if stop:
            break
    assert all("threshold" not in r for r in reports.values())
    assert reports[window - 1] == {}  # before a full window
    # while falling, the extrapolation to the threshold points ahead, near the truth (40)
    falling = [r["expected_stop"] for i, r in reports.items() if 25 <= i < rule.reached_at]
    assert falling and all(30 <= e <= 50 for e in falling), falling
    assert reports[it] == {"expected_stop": rule.reached_at} and rule.reached_at == it
    params = rule.parameters()
    assert params == {"stopping": "discrepancy", "discrepancy_window": window,
                      "discrepancy_reached_at": it, "discrepancy_noise": "rician",
                      "discrepancy_factor": 1.0}
    # the Gaussian rule still reports its threshold
    assert Discrepancy(0.5, window=2).progress(1) == {"threshold": 0.5}


def test_the_factory_reads_the_problems_measured_pixels():
    from types import SimpleNamespace

    from napari_dip.operators import Identity, Mask

    truth, noisy = _phantom(size=32)
    known = (torch.arange(32 * 32).reshape(32, 32) % 2).double()
    for operator, share in ((Identity(), 1.0), (Mask(known.numpy()), 0.5)):
        rule = rician_discrepancy(SimpleNamespace(y=noisy * operator.A(torch.ones_like(noisy)),
                                                  operator=operator), 0.06, window=1,
                                  factor=1.0)
        rule.observe(1, truth.float(), truth, torch.tensor(0.0))
        weight = rule._weight
        assert (1.0 if weight is None else float(weight.mean())) == share
        # holes (y = 0, A(x) = 0) would count as background pixels: they must not count
        assert rule.threshold == pytest.approx(float(rician_moments(
            truth[known.expand_as(truth) > 0] if share < 1 else truth, 0.06)[1].mean()),
            rel=1e-6)


def test_a_run_stopped_by_the_rician_rule():
    # the default for Rician data with early stopping on (solvers.dip.rician_stopping)
    sample = samples.mri(size=48, sigma=0.10)
    result = restore(sample.degraded, **sample.kwargs, seed=0, device="cpu", iterations=800)
    params = result.parameters
    assert params["stopping"] == "discrepancy" and params["discrepancy_noise"] == "rician"
    assert params["discrepancy_reached_at"] is not None and result.iterations < 800
    assert result.stopped_at == result.iterations
    assert psnr(result.image, sample.truth) > psnr(sample.degraded, sample.truth) + 3
