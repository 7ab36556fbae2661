"""Numeric kernels (numpy, no torch): the Lanczos-2 downsampling filter and blur kernels."""

from __future__ import annotations

import numpy as np

#: Named blur kernels of the deblurring task (as in the DeepRED paper's experiments).
BLUR_KERNELS = ("gaussian", "uniform")


def lanczos2_taps(factor: int) -> np.ndarray:
    """1-D Lanczos-2 anti-aliasing filter for downsampling by ``factor``, phase 1/2.

    The kernel has ``4 * factor`` taps at high-resolution positions
    ``t = (i - (4 * factor - 1) / 2) / factor`` (in low-resolution pixels), weights
    ``sinc(t) * sinc(t / 2)`` (Lanczos window with a = 2, as in the DIP paper's
    super-resolution operator) and sums to 1. The 2-D filter is ``np.outer(taps, taps)``.
    """
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    size = 4 * factor
    t = (np.arange(size) - (size - 1) / 2) / factor
    taps = np.sinc(t) * np.sinc(t / 2)
    return (taps / taps.sum()).astype(np.float64)


def gaussian_kernel(size: int = 25, sigma: float = 1.6) -> np.ndarray:
    """Normalised ``size`` x ``size`` Gaussian kernel of standard deviation ``sigma`` pixels."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    k = np.outer(g, g)
    return k / k.sum()


def uniform_kernel(size: int = 9) -> np.ndarray:
    """Normalised ``size`` x ``size`` box kernel."""
    return np.full((size, size), 1.0 / size**2)


def blur_kernel(kernel, ndims: tuple[int, ...] = (2,)) -> np.ndarray:
    """The blur kernel a ``kernel=`` argument names: ``"gaussian"`` (25x25, sigma 1.6),
    ``"uniform"`` (9x9 box) or an array of ``ndims`` dimensions (2-D; (2, 3) also allows a
    3-D (Z, Y, X) PSF), non-negative, normalised here to sum to 1."""
    if isinstance(kernel, str):
        if kernel == "gaussian":
            return gaussian_kernel(25, 1.6)
        if kernel == "uniform":
            return uniform_kernel(9)
        raise ValueError(
            f"unknown blur kernel {kernel!r}; use 'gaussian', 'uniform' or a 2-D array"
        )
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim not in ndims or k.size == 0:
        raise ValueError(
            f"a blur kernel array must be 2-D, got shape {k.shape}; "
            "pass e.g. a 9x9 array or the name 'gaussian'"
            + (" (or a 3-D (Z, Y, X) PSF)" if 3 in ndims else "")
        )
    if not np.all(np.isfinite(k)) or np.any(k < 0) or k.sum() <= 0:
        bad = int(np.count_nonzero(~np.isfinite(k)))
        raise ValueError(
            "a blur kernel must be finite and non-negative with a positive sum "
            "(it is normalised to sum to 1)"
            + (f"; kernel has {bad} NaN or infinite value(s)" if bad else "")
        )
    return k / k.sum()


def kernel_offset(kernel: np.ndarray) -> tuple[float, ...]:
    """Centre of mass of a (normalised, non-negative) kernel minus its centre, per axis, in
    pixels. The centre is ``(size - 1) / 2``: the centre pixel of odd sizes, halfway between
    the two middle pixels of even ones."""
    k = np.asarray(kernel, dtype=np.float64)
    total = k.sum()
    offsets = []
    for axis, size in enumerate(k.shape):
        profile = k.sum(axis=tuple(a for a in range(k.ndim) if a != axis))
        offsets.append(float(np.dot(profile, np.arange(size)) / total - (size - 1) / 2))
    return tuple(offsets)
