"""Estimating a noise model's parameter from the data itself (numpy and scikit-image only).

:func:`gaussian_sigma` estimates the standard deviation of white Gaussian noise from the
image itself (the noise level DIP's discrepancy rule stops at). :func:`rician_sigma` reads
the Rician noise level of a magnitude image (MRI) from its dark background, where the
noise-free signal is zero and the magnitude follows a Rayleigh distribution whose mode is
sigma.
"""

from __future__ import annotations

import numpy as np

#: Fewest pixels, as a fraction of the image, that must lie below the background's mode.
MIN_BACKGROUND_FRACTION = 0.01
#: Side, in pixels, of the box the spatial refinement averages magnitudes over.
REFINE_BOX = 5
#: Rounds of the spatial refinement (it settles in two or three).
REFINE_ROUNDS = 5
#: Side, in pixels, of the patches whose covariance :func:`pca_sigma` reads.
PCA_PATCH = 7
#: Most patches :func:`pca_sigma` takes (a regular subsample of larger images).
PCA_MAX_PATCHES = 100_000


def wavelet_sigma(image: np.ndarray) -> float:
    """Gaussian noise sigma of ``image`` (C, *spatial), in its units: Donoho and
    Johnstone's median absolute deviation of the finest diagonal wavelet coefficients
    (scikit-image's ``estimate_sigma``), averaged over the channels.

    A volume (C, Z, Y, X) is read plane by plane and the planes' estimates averaged: the
    3-D transform reads a short stack low (pure noise in 6 planes of 48x48: -11 %), and
    Z-stacks are often sampled more coarsely in Z than in X and Y."""
    from skimage.restoration import estimate_sigma

    a = np.asarray(image, np.float64)
    planes = a.reshape(a.shape[0], -1, *a.shape[-2:]) if a.ndim > 3 else a[:, None]
    return float(np.mean([estimate_sigma(planes[:, z], channel_axis=0, average_sigmas=True)
                          for z in range(planes.shape[1])]))


def pca_sigma(image: np.ndarray, patch: int = PCA_PATCH) -> float | None:
    """Gaussian noise sigma of ``image`` (C, *spatial), in its units, from the eigenvalues
    of its patches' covariance (Chen, Zhu and Heng, "An Efficient Statistical Method for
    Image Noise Level Estimation", ICCV 2015): the image's structure lives in a few large
    eigenvalues, white noise adds sigma^2 to all of them; the smallest eigenvalues whose
    mean has come down to their median are noise alone, and their mean is sigma^2.
    Patches are ``patch`` x ``patch`` x C, taken from every plane of a volume. None when
    the image holds too few patches for the estimate (fewer than 4 per dimension)."""
    from numpy.lib.stride_tricks import sliding_window_view

    a = np.moveaxis(np.asarray(image, np.float64), 0, -1)  # (*spatial, C)
    *spatial, channels = a.shape
    if len(spatial) < 2 or min(spatial[-2:]) < patch:
        return None
    planes = a.reshape(-1, *spatial[-2:], channels)
    per_plane = (spatial[-2] - patch + 1) * (spatial[-1] - patch + 1)
    step = max(1, int(np.ceil(np.sqrt(per_plane * len(planes) / PCA_MAX_PATCHES))))
    windows = sliding_window_view(planes, (patch, patch, channels), axis=(1, 2, 3))
    x = windows[:, ::step, ::step].reshape(-1, patch * patch * channels)
    if len(x) < 4 * x.shape[1]:
        return None
    x = x - x.mean(axis=0)
    eigenvalues = np.linalg.eigvalsh(x.T @ x / (len(x) - 1))[::-1]  # largest first
    for first in range(len(eigenvalues)):
        tail = eigenvalues[first:]
        if tail.mean() <= np.median(tail):
            return float(np.sqrt(max(tail.mean(), 0.0)))
    return float(np.sqrt(max(eigenvalues[-1], 0.0)))


def gaussian_sigma(image: np.ndarray) -> float:
    """Gaussian noise sigma of ``image`` (C, *spatial), in its units: the smaller of the
    wavelet estimate (:func:`wavelet_sigma`) and the patch-covariance one
    (:func:`pca_sigma`).

    Both read fine texture as noise and over-estimate there (by 10 % on barbara's cloth
    and up to 38 % on grass at sigma 15/255; within about 3 % on smooth images), rarely on
    the same images by the same amount, so the smaller one is the better guess. An
    over-estimate costs more than an under-estimate: the discrepancy rule then stops too
    early (on the barbara crop, 1.1 dB below the run's best at +10 %; 4 % low, it runs
    longer and loses 0.06 dB): ``benchmarks/results/early-stopping.md``."""
    wavelet = wavelet_sigma(image)
    pca = pca_sigma(image)
    return wavelet if pca is None else min(wavelet, pca)


def _background_mode(values: np.ndarray) -> float:
    """The mode of the darkest class (below Otsu's threshold) of the magnitudes: for a
    Rayleigh-distributed background, its mode is sigma."""
    from scipy.ndimage import gaussian_filter1d
    from skimage.filters import threshold_otsu

    threshold = float(threshold_otsu(values))
    dark = values[values < threshold]
    hist, edges = np.histogram(dark, bins=128, range=(0.0, threshold))
    peak = int(np.argmax(gaussian_filter1d(hist.astype(np.float64), 2)))
    return 0.5 * float(edges[peak] + edges[peak + 1])


def rician_sigma(image: np.ndarray) -> float:
    """The Rician noise's standard deviation (per real/imaginary component, in the image's
    units) of a magnitude image with a dark background (air around the body or phantom).

    A first guess is the mode of the background's histogram (the Rayleigh mode is sigma).
    Tissue whose values overlap the background lifts that mode, so the estimate is refined
    from the two lowest quantiles, which only background pixels reach: for a Rayleigh
    background the share of pixels below ``a`` among those below ``b`` is
    ``(1 - exp(-a^2 / 2 s^2)) / (1 - exp(-b^2 / 2 s^2))`` (with a = mode / 2, b = mode),
    solved for ``s``; the fraction of the image that is background cancels. That estimate
    is then refined from where the background lies (:func:`_refine_spatially`).
    Raises ValueError when the image has no such background (then give ``noise_sigma``).
    """
    from scipy.optimize import brentq

    values = np.abs(np.asarray(image, dtype=np.float64)).ravel()
    advice = ("the Rician noise level is read from a dark background (air), and this image "
              "has too little of it; give noise_sigma (the noise's standard deviation in "
              "the image's units)")
    if values.size == 0 or values.max() <= 0:
        raise ValueError(f"cannot estimate the Rician noise: {advice}")
    mode = _background_mode(values)
    below_a = np.count_nonzero(values < mode / 2)
    below_b = np.count_nonzero(values < mode)
    if mode <= 0 or below_b < MIN_BACKGROUND_FRACTION * values.size or below_a == 0:
        raise ValueError(f"cannot estimate the Rician noise: {advice}")
    share = below_a / below_b
    a, b = mode / 2, mode

    def mismatch(s: float) -> float:
        return -np.expm1(-a * a / (2 * s * s)) / -np.expm1(-b * b / (2 * s * s)) - share

    try:
        sigma = float(brentq(mismatch, mode / 4, mode * 4))
    except ValueError:  # no root: the dark pixels are not Rayleigh-distributed
        raise ValueError(f"cannot estimate the Rician noise: {advice}") from None
    return _refine_spatially(np.abs(np.asarray(image, dtype=np.float64)), sigma)


def _refine_spatially(magnitudes: np.ndarray, sigma: float) -> float:
    """Refine a first Rician sigma (image units) from where the background is.

    The histogram alone cannot tell background from dim tissue whose noisy values overlap
    it (Shepp-Logan's brain, 0.2, at sigma 0.10): the first estimate came out up to 30 %
    high there. Averaged over a :data:`REFINE_BOX` square box, background magnitudes
    cluster tightly about the Rayleigh mean ``sigma sqrt(pi/2)`` (standard deviation
    ``sigma sqrt(2 - pi/2) / box``) while tissue lies above, so background is where the
    box mean is below that mean plus 3 of those deviations, shrunk by half a box (so no
    box straddles tissue). There the maximum-likelihood Rayleigh estimate is
    ``sigma^2 = mean(m^2) / 2``; repeated with the new sigma (:data:`REFINE_ROUNDS`). On
    the MRI sample (64 and 128 px, sigma 0.02-0.15, three seeds) this is within 3 % of the
    true sigma. Boxes span the last two axes (the planes of a stack, a channel's plane);
    where fewer than :data:`MIN_BACKGROUND_FRACTION` of the pixels qualify, the first
    estimate stands."""
    from scipy import ndimage

    if magnitudes.ndim < 2 or min(magnitudes.shape[-2:]) < 3 * REFINE_BOX:
        return sigma
    box = (1,) * (magnitudes.ndim - 2) + (REFINE_BOX, REFINE_BOX)
    means = ndimage.uniform_filter(magnitudes, size=box, mode="reflect")
    squares = magnitudes * magnitudes
    cross = np.zeros((1,) * (magnitudes.ndim - 2) + (3, 3), dtype=bool)
    cross[...] = ndimage.generate_binary_structure(2, 1)
    spread = np.sqrt(np.pi / 2) + 3 * np.sqrt(2 - np.pi / 2) / REFINE_BOX
    refined = sigma
    for _ in range(REFINE_ROUNDS):
        background = ndimage.binary_erosion(means < refined * spread, cross,
                                            iterations=REFINE_BOX // 2)
        if np.count_nonzero(background) < MIN_BACKGROUND_FRACTION * magnitudes.size:
            return sigma
        refined = float(np.sqrt(squares[background].mean() / 2))
    return refined


__all__ = ["gaussian_sigma", "pca_sigma", "rician_sigma", "wavelet_sigma"]
