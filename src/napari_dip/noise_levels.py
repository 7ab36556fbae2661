"""Estimating a noise model's parameter from the data itself (numpy and scikit-image only).

:func:`rician_sigma` reads the Rician noise level of a magnitude image (MRI) from its dark
background, where the noise-free signal is zero and the magnitude follows a Rayleigh
distribution whose mode is sigma.
"""

from __future__ import annotations

import numpy as np

#: Fewest pixels, as a fraction of the image, that must lie below the background's mode.
MIN_BACKGROUND_FRACTION = 0.01


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
    solved for ``s``; the fraction of the image that is background cancels.
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
    return sigma


__all__ = ["rician_sigma"]
