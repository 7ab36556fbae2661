"""Masks of the usual defects of astronomical frames, for ``restore(task="inpaint")``.

Each function returns a boolean (Y, X) array, True at the pixels to fill: cosmic-ray hits
(L.A.Cosmic, through the ``astroscrappy`` package: ``pip install "napari-dip[astro]"``),
saturated pixels, NaN pixels, and a mask grown by a few pixels (defects bleed into their
neighbours). Dead columns and satellite trails are marked by the user (a mask layer) or,
when a reduction pipeline set them to NaN, by :func:`nan_mask`. Torch-free.
"""

from __future__ import annotations

import numpy as np


def _plane(image, what: str) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{what} takes a 2-D numeric frame, got shape {a.shape}, dtype "
                         f"{a.dtype}")
    return a


def nan_mask(image) -> np.ndarray:
    """True where the frame is NaN (the usual mark of a bad pixel in reduced frames)."""
    a = _plane(image, "nan_mask")
    return np.isnan(a) if a.dtype.kind == "f" else np.zeros(a.shape, bool)


def saturation_mask(image, level: float) -> np.ndarray:
    """True where the frame reaches ``level`` (the detector's saturation, in its units)."""
    a = _plane(image, "saturation_mask")
    if isinstance(level, bool) or not np.isfinite(level):
        raise ValueError(f"the saturation level must be a number, got {level!r}")
    with np.errstate(invalid="ignore"):
        return np.asarray(a >= level)


def cosmic_ray_mask(image, *, gain: float = 1.0, read_noise: float = 6.5,
                    sigclip: float = 4.5, objlim: float = 5.0, **options) -> np.ndarray:
    """True at cosmic-ray hits found by L.A.Cosmic (van Dokkum 2001, PASP 113, 1420) as
    ``astroscrappy.detect_cosmics`` implements it. ``gain`` (electrons per count) and
    ``read_noise`` (electrons) describe the detector; ``sigclip`` is the detection limit in
    noise sigmas and ``objlim`` the contrast that tells a hit from a star; ``options`` go
    to ``detect_cosmics`` unchanged. NaN pixels are ignored (and not marked)."""
    try:
        import astroscrappy
    except ImportError:
        raise ValueError("cosmic-ray masks need the optional package 'astroscrappy': pip "
                         "install astroscrappy (or pip install \"napari-dip[astro]\")") from None
    a = _plane(image, "cosmic_ray_mask").astype(np.float32)
    bad = ~np.isfinite(a)
    if bad.all():
        raise ValueError("cosmic_ray_mask: the frame has no finite pixel")
    hits, _ = astroscrappy.detect_cosmics(
        np.where(bad, np.nanmedian(a), a), inmask=bad, gain=gain, readnoise=read_noise,
        sigclip=sigclip, objlim=objlim, **options)
    return np.asarray(hits, bool) & ~bad


def grow_mask(mask, pixels: int) -> np.ndarray:
    """``mask`` grown by ``pixels`` in every direction (a disk), as a boolean array."""
    from scipy import ndimage

    m = np.asarray(mask, bool)
    if isinstance(pixels, bool) or not isinstance(pixels, (int, np.integer)) or pixels < 0:
        raise ValueError(f"the mask grows by a whole number of pixels >= 0, got {pixels!r}")
    if pixels == 0:
        return m.copy()
    yy, xx = np.mgrid[-pixels:pixels + 1, -pixels:pixels + 1]
    return ndimage.binary_dilation(m, structure=yy * yy + xx * xx <= pixels * pixels)


__all__ = ["cosmic_ray_mask", "grow_mask", "nan_mask", "saturation_mask"]
