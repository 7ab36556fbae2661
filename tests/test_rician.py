"""The Rician noise model for magnitude MR images (issue 16): its likelihood against
scipy's Rice distribution, the noise level read from the background, validation, and the
restoration of the MRI sample against the Gaussian model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from napari_dip import restore, samples, validate
from napari_dip._settings import NOISE_CHOICES, WidgetSettings, noise_level_for
from napari_dip.likelihoods import RicianLikelihood, make_likelihood
from napari_dip.noise_levels import rician_sigma


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
    # the Gaussian model keeps the magnitude's floor; the Rician one takes it away
    assert abs(float(gaussian.image[background].mean()) - 0.0) > 0.05
    assert abs(float(rician.image[background].mean()) - 0.0) < 0.01
    assert rician.parameters["noise"] == "rician"
    assert rician.parameters["noise_sigma_estimated"] is True
    assert rician.parameters["noise_sigma"] == pytest.approx(0.06, rel=0.2)
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
