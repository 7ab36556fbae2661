"""Data terms: how well a predicted measurement ``A(x)`` explains the measured ``y``.

Each noise model of :data:`napari_dip.tasks.NOISE_MODELS` has a likelihood object here,
called as ``likelihood(ax, y)`` and returning a 0-d tensor to minimise (a mean over the
measurement's values, in the network's normalised units).
"""

from __future__ import annotations

import torch

from .tasks import get_noise_model


class GaussianLikelihood:
    """Gaussian noise: the mean squared error (its negative log-likelihood up to a scale)."""

    name = "gaussian"

    def __call__(self, ax: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.mean((ax - y) ** 2)


class PoissonLikelihood:
    """Photon counts: the mean Poisson negative log-likelihood ``rate - y log(rate)`` (the
    constant ``log(y!)`` dropped); rates are clamped to ``floor`` before the logarithm."""

    name = "poisson"

    def __init__(self, floor: float = 1e-6):
        self.floor = floor

    def __call__(self, ax: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        rate = ax.clamp_min(self.floor)
        return (rate - y * torch.log(rate)).mean()


class RicianLikelihood:
    """Magnitude MR data: the mean Rician negative log-likelihood of the measured magnitude
    ``y`` given the noise-free magnitude ``nu = A(x)`` and the noise's standard deviation
    ``sigma`` per real/imaginary component (normalised units)::

        p(y | nu) = y / sigma^2 * exp(-(y^2 + nu^2) / (2 sigma^2)) * I0(y nu / sigma^2)

    (Rice 1944; Gudbjartsson & Patz, "The Rician distribution of noisy MRI data", MRM 1995).
    Terms without ``nu`` are dropped, leaving ``nu^2 / (2 sigma^2) - log I0(y nu / sigma^2)``;
    ``log I0(z) = log(i0e(z)) + z`` with torch's exponentially scaled Bessel function keeps
    it finite for large ``z``. ``nu`` is clamped at 0 (a magnitude)."""

    name = "rician"

    def __init__(self, sigma: float):
        if not sigma > 0:
            raise ValueError(f"the Rician likelihood needs sigma > 0, got {sigma!r}")
        self.sigma = float(sigma)

    def __call__(self, ax: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nu = ax.clamp_min(0)
        var = self.sigma ** 2
        z = (y.clamp_min(0) * nu) / var
        return (nu * nu / (2 * var) - torch.log(torch.special.i0e(z)) - z).mean()


_LIKELIHOODS = {"gaussian": GaussianLikelihood, "poisson": PoissonLikelihood,
                "rician": RicianLikelihood}


def make_likelihood(noise: str, sigma: float | None = None):
    """The likelihood object of the noise model ``noise`` (a name checked by validation);
    ``sigma`` (normalised units) for the models whose likelihood needs it (Rician)."""
    likelihood = _LIKELIHOODS[noise]
    return likelihood(sigma) if get_noise_model(noise).likelihood_sigma else likelihood()
