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
#: Quantile of a pure-noise patch's gradient energy below which a patch counts as weakly
#: textured (:func:`weak_texture_sigma`; Liu, Tanaka and Okutomi use 0.99).
WEAK_TEXTURE_QUANTILE = 0.99
#: Fewest weakly textured patches per patch dimension :func:`weak_texture_sigma` reads.
WEAK_TEXTURE_MIN_RATIO = 20


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


def _patches(image: np.ndarray, patch: int) -> np.ndarray | None:
    """Every ``patch`` x ``patch`` x C patch of every plane of ``image`` (C, *spatial), a
    regular subsample of at most PCA_MAX_PATCHES, flattened to rows. None when the image
    holds too few patches (fewer than 4 per dimension)."""
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
    return None if len(x) < 4 * x.shape[1] else x


def _energies(x: np.ndarray, patch: int, channels: int) -> np.ndarray:
    """Each patch's (row of :func:`_patches`) sum of squared differences between
    horizontal and vertical neighbours: its gradient energy."""
    cube = x.reshape(-1, patch, patch, channels)
    return (np.diff(cube, axis=2) ** 2).sum(axis=(1, 2, 3)) \
        + (np.diff(cube, axis=1) ** 2).sum(axis=(1, 2, 3))


def _tail_sigma(x: np.ndarray) -> float:
    """Chen, Zhu and Heng's estimate from patches ``x`` (rows): the smallest eigenvalues of
    their covariance whose mean has come down to their median are noise alone, and their
    mean is sigma^2."""
    x = x - x.mean(axis=0)
    eigenvalues = np.linalg.eigvalsh(x.T @ x / (len(x) - 1))[::-1]  # largest first
    for first in range(len(eigenvalues)):
        tail = eigenvalues[first:]
        if tail.mean() <= np.median(tail):
            return float(np.sqrt(max(tail.mean(), 0.0)))
    return float(np.sqrt(max(eigenvalues[-1], 0.0)))


def pca_sigma(image: np.ndarray, patch: int = PCA_PATCH) -> float | None:
    """Gaussian noise sigma of ``image`` (C, *spatial), in its units, from the eigenvalues
    of its patches' covariance (Chen, Zhu and Heng, "An Efficient Statistical Method for
    Image Noise Level Estimation", ICCV 2015): the image's structure lives in a few large
    eigenvalues, white noise adds sigma^2 to all of them; the smallest eigenvalues whose
    mean has come down to their median are noise alone, and their mean is sigma^2.
    Patches are ``patch`` x ``patch`` x C, taken from every plane of a volume. None when
    the image holds too few patches for the estimate (fewer than 4 per dimension)."""
    x = _patches(image, patch)
    return None if x is None else _tail_sigma(x)


def weak_texture_threshold(sigma: float, patch: int, channels: int) -> float:
    """The gradient energy (see :func:`_energies`) that a patch of white Gaussian noise of
    ``sigma`` stays below with probability WEAK_TEXTURE_QUANTILE. The energy is the
    quadratic form n^T M n of the patch's noise n with M = Dh^T Dh + Dv^T Dv (the
    neighbour differences), a weighted sum of chi-squares, approximated by the gamma law of
    the same mean sigma^2 tr(M) and variance 2 sigma^4 tr(M^2) (Liu, Tanaka and Okutomi
    match the mean only, which puts about 97.5 % of noise patches below their 99 %)."""
    from scipy.stats import gamma

    index = np.arange(patch * patch).reshape(patch, patch)
    pairs = np.concatenate([np.stack([index[:, :-1].ravel(), index[:, 1:].ravel()], 1),
                            np.stack([index[:-1].ravel(), index[1:].ravel()], 1)])
    differences = np.zeros((len(pairs), patch * patch))
    differences[np.arange(len(pairs)), pairs[:, 0]] = 1
    differences[np.arange(len(pairs)), pairs[:, 1]] = -1
    m = differences.T @ differences  # one channel's; the channels are independent
    mean = sigma**2 * np.trace(m) * channels
    variance = 2 * sigma**4 * np.sum(m * m) * channels
    return float(gamma.ppf(WEAK_TEXTURE_QUANTILE, mean**2 / variance,
                           scale=variance / mean))


def weak_texture_sigma(image: np.ndarray, sigma: float, patch: int = PCA_PATCH
                       ) -> float | None:
    """Gaussian noise sigma of ``image`` (C, *spatial) from its weakly textured patches
    only (Liu, Tanaka and Okutomi, "Single-Image Noise Level Estimation for Blind
    Denoising", IEEE TIP 2013): the patches whose gradient energy a patch of pure noise of
    the first guess ``sigma`` would reach (:func:`weak_texture_threshold`), read by
    :func:`pca_sigma`'s rule. One round from the first guess; repeating it lowers the
    threshold with the estimate and spirals down on fur and foliage (-20 % on a 96 px cat
    crop at sigma 10/255). None when fewer than WEAK_TEXTURE_MIN_RATIO patches per
    dimension qualify (then the sample covariance's noise eigenvalues spread too widely,
    the Marchenko-Pastur law, and the rule reads low)."""
    return _weak_texture_sigma(_patches(image, patch), sigma, patch, np.shape(image)[0])


def _weak_texture_sigma(x: np.ndarray | None, sigma: float, patch: int, channels: int
                        ) -> float | None:
    """:func:`weak_texture_sigma` from the image's patches ``x`` (:func:`_patches`)."""
    if x is None or not sigma > 0:
        return None
    weak = x[_energies(x, patch, channels) < weak_texture_threshold(sigma, patch, channels)]
    if len(weak) < WEAK_TEXTURE_MIN_RATIO * x.shape[1]:
        return None
    return _tail_sigma(weak)


def gaussian_sigma(image: np.ndarray) -> float:
    """Gaussian noise sigma of ``image`` (C, *spatial), in its units: the smaller of the
    wavelet estimate (:func:`wavelet_sigma`) and the patch-covariance one
    (:func:`pca_sigma`), then read again from the weakly textured patches alone
    (:func:`weak_texture_sigma`, with the first as its guess), keeping the smaller.

    The wavelet and covariance estimates read fine texture as noise and over-estimate there
    (by 10 % on barbara's cloth and up to 38 % on grass at sigma 15/255; within about 3 % on
    smooth images), rarely on the same images by the same amount, so the smaller one is the
    better guess; leaving the textured patches out takes the largest over-estimate on the
    crops of ``benchmarks/early_stopping.py`` from +13 % to +5 % at sigma 10/255 and from
    +6 % to +3 % at 25/255. An over-estimate costs more than an under-estimate: the
    discrepancy rule then stops too early (on the barbara crop, 1.1 dB below the run's best
    at +10 %; 4 % low, it runs longer and loses 0.06 dB):
    ``benchmarks/results/early-stopping.md``. Pure texture (grass, gravel) stays
    over-estimated, by 15-35 % at 25/255."""
    wavelet = wavelet_sigma(image)
    x = _patches(image, PCA_PATCH)  # one set of patches for both patch estimates
    first = wavelet if x is None else min(wavelet, _tail_sigma(x))
    weak = _weak_texture_sigma(x, first, PCA_PATCH, np.shape(image)[0])
    return first if weak is None else min(first, weak)


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
