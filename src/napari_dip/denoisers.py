"""Plug-in denoisers ``D`` for DeepRED (Regularization by Denoising).

Every denoiser has one interface::

    denoised = denoise(image, sigma, denoiser="nlm")

``image`` is a float array of shape (C, H, W) (or (H, W)) with intensities in the normalised
[0, 1] range the network works in; ``sigma`` is the noise level the denoiser is tuned to, in
the same normalised units (a fraction of the image's intensity range: 3/255 is the DeepRED
paper's value for 8-bit pictures), or ``"auto"`` to estimate it from ``image`` with
scikit-image's wavelet estimator (:func:`skimage.restoration.estimate_sigma`, averaged over
channels). The result is float32 of the same shape. ``image`` is never modified.

Denoisers (``DENOISERS``):

``"nlm"``
    scikit-image non-local means, fast mode, 5x5 patches, 13x13 search window (distance 6),
    ``h = 0.6 * sigma`` with ``sigma`` also passed to the filter (fast mode subtracts the
    expected noise distance), each channel on its own; the DeepRED reference code's setting.
``"bm3d"``
    the ``bm3d`` package (Mäkinen, Azzari, Foi): colour images (3 channels) through its RGB
    entry point ``bm3d_rgb`` (opponent colour space, block matching on luminance), every other
    image one channel at a time through ``bm3d``. Slow (about a second per call even on small
    images), the strongest of the three.
``"tv"``
    scikit-image Chambolle total variation with ``weight = sigma``, per channel; cheap.

Pure numpy/scikit-image: no torch, Qt or napari.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np

#: Smallest noise level an ``"auto"`` estimate is allowed to return (normalised units):
#: a clean or constant image would otherwise give 0, which NLM and BM3D cannot use.
AUTO_SIGMA_FLOOR = 1e-4


def _nlm(image: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    return np.stack([
        denoise_nl_means(channel, h=0.6 * sigma, sigma=sigma, fast_mode=True,
                         patch_size=5, patch_distance=6, channel_axis=None)
        for channel in image
    ])


def _bm3d(image: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    if image.shape[0] == 3:
        rgb = bm3d.bm3d_rgb(np.moveaxis(image, 0, -1), sigma)
        return np.moveaxis(np.asarray(rgb), -1, 0)
    return np.stack([np.asarray(bm3d.bm3d(channel, sigma)).reshape(channel.shape)
                     for channel in image])


def _tv(image: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return np.stack([denoise_tv_chambolle(channel, weight=sigma) for channel in image])


#: Name -> function ``(image (C, H, W) float64 copy, sigma float) -> (C, H, W) array``.
DENOISERS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "nlm": _nlm,
    "bm3d": _bm3d,
    "tv": _tv,
}


def check_denoiser(name) -> str:
    """Return ``name`` if it names a denoiser, else raise ValueError listing the choices.

    Also imports the denoiser's package, so a missing one fails here, not in a worker thread.
    """
    if not isinstance(name, str) or name not in DENOISERS:
        raise ValueError(f"unknown denoiser {name!r}; choose one of: {', '.join(DENOISERS)}")
    if name == "bm3d":
        import bm3d  # noqa: F401
    else:
        import skimage.restoration  # noqa: F401
    return name


def check_sigma(sigma) -> float | str:
    """Validate a denoiser noise level: ``"auto"`` or a positive finite number (normalised
    units). Returns ``"auto"`` or a Python float."""
    if isinstance(sigma, str):
        if sigma == "auto":
            return sigma
    elif isinstance(sigma, numbers.Real) and not isinstance(sigma, bool):
        value = float(sigma)
        if math.isfinite(value) and value > 0:
            return value
    raise ValueError(
        f"denoiser_sigma must be 'auto' or a positive number in normalised units (a fraction "
        f"of the image's intensity range, e.g. 3/255), got {sigma!r}"
    )


def estimate_noise(image: np.ndarray) -> float:
    """Noise standard deviation of a (C, H, W) or (H, W) image, averaged over channels
    (the wavelet estimator, :func:`napari_dip.noise_levels.wavelet_sigma`), at least
    :data:`AUTO_SIGMA_FLOOR`."""
    from .noise_levels import wavelet_sigma

    a = np.asarray(image, dtype=np.float64)
    value = wavelet_sigma(a[np.newaxis] if a.ndim == 2 else a)
    if not math.isfinite(value):
        value = 0.0
    return max(value, AUTO_SIGMA_FLOOR)


def resolve_sigma(image: np.ndarray, sigma) -> float:
    """The noise level to use on ``image``: ``sigma``, or the estimate when ``"auto"``."""
    sigma = check_sigma(sigma)
    return estimate_noise(image) if sigma == "auto" else sigma


def denoise_with_sigma(image: np.ndarray, sigma, denoiser: str = "nlm") -> tuple[np.ndarray, float]:
    """Like :func:`denoise`, also returning the noise level used (the estimate for "auto")."""
    check_denoiser(denoiser)
    a = np.array(image, dtype=np.float64, copy=True)
    if a.ndim not in (2, 3):
        raise ValueError(f"denoisers take a (C, H, W) or (H, W) image, got shape {a.shape}")
    grey = a.ndim == 2
    if grey:
        a = a[np.newaxis]
    value = resolve_sigma(a, sigma)
    out = np.asarray(DENOISERS[denoiser](a, value), dtype=np.float32)
    if out.shape != a.shape:
        raise ValueError(f"denoiser {denoiser!r} returned shape {out.shape} for an input of "
                         f"shape {a.shape}")
    return (out[0] if grey else out), value


def denoise(image: np.ndarray, sigma=3 / 255, denoiser: str = "nlm") -> np.ndarray:
    """Denoise a (C, H, W) or (H, W) image in [0, 1] with ``denoiser`` at noise level
    ``sigma`` (normalised units, or ``"auto"``); float32, same shape."""
    return denoise_with_sigma(image, sigma, denoiser)[0]


__all__ = ["DENOISERS", "check_denoiser", "check_sigma", "denoise", "denoise_with_sigma",
           "estimate_noise", "resolve_sigma"]
