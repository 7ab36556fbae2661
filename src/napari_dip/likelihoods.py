"""Data terms: how well a predicted measurement ``A(x)`` explains the measured ``y``.

Each noise model of :data:`napari_dip.tasks.NOISE_MODELS` has a likelihood object here,
called as ``likelihood(ax, y)`` and returning a 0-d tensor to minimise (a mean over the
measurement's values, in the network's normalised units).
"""

from __future__ import annotations

import torch


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


_LIKELIHOODS = {"gaussian": GaussianLikelihood, "poisson": PoissonLikelihood}


def make_likelihood(noise: str):
    """The likelihood object of the noise model ``noise`` (a name checked by validation)."""
    return _LIKELIHOODS[noise]()
