"""Data terms: how well a predicted measurement ``A(x)`` explains the measured ``y``.

Each noise model of :data:`napari_dip.tasks.NOISE_MODELS` has a likelihood object here,
called as ``likelihood(ax, y)`` and returning a 0-d tensor to minimise (a mean over the
measurement's values, in the network's normalised units).
"""

from __future__ import annotations

import math

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
    Dropping ``-log(y / sigma^2)``, which has no ``nu``, and writing ``I0(z) = exp(z) i0e(z)``
    with torch's exponentially scaled Bessel function leaves, per value (nats)::

        (y - nu)^2 / (2 sigma^2) - log i0e(z),   z = y nu / sigma^2

    which is >= 0 (``i0e <= 1``), finite for any ``z``, and tends to the Gaussian term plus
    ``log(2 pi z) / 2`` at high SNR; no large terms cancel (writing it as
    ``nu^2 / (2 sigma^2) - log I0(z)`` lost float32 precision at high SNR and went negative,
    which a log-scaled loss plot cannot show). ``nu`` is clamped at 0 (a magnitude).

    Its gradient in ``nu`` is ``(nu - y I1(z) / I0(z)) / sigma^2``: 0 at ``nu = 0`` (the
    likelihood is even in ``nu``) and ``(nu - y) / sigma^2 + 1 / (2 nu)`` at high SNR.
    ``i0e(z) = exp(-|z|) I0(z)`` has a kink at ``z = 0`` where torch's derivative is
    ``-sign(0) = 0`` instead of the one-sided -1, which made the gradient ``-y / sigma^2``
    at ``nu = 0`` exactly; small ``z`` therefore use ``log(i0(z)) - z`` (smooth, no overflow
    below :attr:`SMALL_Z`)."""

    name = "rician"
    #: Below this ``z = y nu / sigma^2`` the likelihood uses ``log(i0(z)) - z``.
    SMALL_Z = 1.0

    def __init__(self, sigma: float):
        if not sigma > 0:
            raise ValueError(f"the Rician likelihood needs sigma > 0, got {sigma!r}")
        self.sigma = float(sigma)

    def __call__(self, ax: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nu = ax.clamp_min(0)
        var = self.sigma ** 2
        y = y.clamp_min(0)
        z = (y * nu) / var
        small = z < self.SMALL_Z
        # each branch sees only values it is finite at, so neither makes a NaN gradient
        zs = z.clamp_max(self.SMALL_Z)
        log_i0e = torch.where(small, torch.log(torch.special.i0(zs)) - zs,
                              torch.log(torch.special.i0e(z.clamp_min(self.SMALL_Z))))
        return ((y - nu) ** 2 / (2 * var) - log_i0e).mean()


def rician_moments(nu: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of a Rician magnitude ``m = |nu + sigma (g1 + i g2)|`` (g1, g2
    standard normal) given its noise-free magnitude ``nu`` (clamped at 0) and the noise's
    standard deviation ``sigma`` per real/imaginary component, both in the same units (the
    results are in those units and their square)::

        E[m | nu]   = sigma sqrt(pi/2) L_{1/2}(-nu^2 / (2 sigma^2))
                    = sigma sqrt(pi/2) [(1 + a) I0e(a/2) + a I1e(a/2)],   a = nu^2 / (2 sigma^2)
        Var[m | nu] = nu^2 + 2 sigma^2 - E[m | nu]^2

    (Gudbjartsson & Patz, "The Rician distribution of noisy MRI data", MRM 1995, eqs. 4-6;
    Koay & Basser, "Analytically exact correction scheme for signal extraction from noisy
    magnitude MR signals", JMR 2006, eqs. 2-3). ``L_{1/2}`` is the Laguerre polynomial of
    order 1/2; the exponentially scaled Bessel functions ``i0e``/``i1e`` absorb the
    ``exp(-a/2)`` of its closed form, so both stay finite at any SNR: at ``nu = 0`` the mean
    is the Rayleigh mean ``sigma sqrt(pi/2)`` and the variance ``(2 - pi/2) sigma^2``; at
    high SNR they tend to ``nu + sigma^2 / (2 nu)`` and ``sigma^2``. Computed in ``nu``'s
    dtype (pass float64 where the variance's cancellation at high SNR matters)."""
    nu = nu.clamp_min(0)
    a = nu * nu / (2 * sigma * sigma)
    half = a / 2
    mean = sigma * math.sqrt(math.pi / 2) * (
        (1 + a) * torch.special.i0e(half) + a * torch.special.i1e(half))
    variance = (nu * nu + 2 * sigma * sigma - mean * mean).clamp_min(0)
    return mean, variance


_LIKELIHOODS = {"gaussian": GaussianLikelihood, "poisson": PoissonLikelihood,
                "rician": RicianLikelihood}


def make_likelihood(noise: str, sigma: float | None = None):
    """The likelihood object of the noise model ``noise`` (a name checked by validation);
    ``sigma`` (normalised units) for the models whose likelihood needs it (Rician)."""
    likelihood = _LIKELIHOODS[noise]
    return likelihood(sigma) if get_noise_model(noise).likelihood_sigma else likelihood()
