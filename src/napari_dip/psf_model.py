"""Modelled point spread functions (PSFs) of a widefield fluorescence microscope, from the
objective's parameters, for deconvolution (``restore(..., task="deblur", kernel=psf(...))``).

The optics are not written here: :func:`psf` calls the psfmodels package (Talley Lambert,
https://github.com/tlambert03/PSFmodels; ``pip install "napari-dip[psf]"``), which
implements the vectorial model of Aguet et al. (Opt. Express 17(8), 6829-6848, 2009) and the
scalar model of Gibson & Lanni (J. Opt. Soc. Am. A 8(10), 1601-1613, 1991). This module only
chooses a default size, checks the arguments (in micrometres) and normalises the result.

Numpy only; psfmodels is imported when a PSF is computed.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

#: PSF models of psfmodels: Aguet's vectorial model, Gibson & Lanni's scalar one, and a
#: Gaussian approximation.
MODELS = ("vectorial", "scalar", "gaussian")
#: Immersion refractive index of oil objectives (the usual design value).
OIL = 1.515
#: Lengths above this many micrometres are taken for a unit mistake (nanometres).
_MAX_MICRONS = {"wavelength": 5.0, "pixel_size": 10.0, "z_step": 50.0}
_INSTALL = 'pip install "napari-dip[psf]"'


def _positive(name: str, value, *, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    value = float(value)
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}={value:g} is in micrometres (um): did you give nanometres? "
                         f"(520 nm is 0.52 um); {name} must be at most {maximum:g} um")
    return value


def _odd_shape(shape, ndim: int) -> tuple[int, ...]:
    """``shape`` as ``ndim`` odd sizes: an int is the lateral size (Y = X); a 3-D PSF may
    give (z, y, x) or (y, x) with the depth from the default."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (int(shape),) * 2
    try:
        sizes = tuple(int(s) for s in shape)
        exact = all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape)
    except (TypeError, ValueError):
        sizes, exact = (), False
    if not exact or len(sizes) not in (2, ndim) or any(s < 1 or s % 2 == 0 for s in sizes):
        want = "(z, y, x) or (y, x)" if ndim == 3 else "(y, x)"
        raise ValueError(f"shape must be an odd size or {want} of odd sizes (a centred PSF "
                         f"needs a centre pixel), got {shape!r}")
    return sizes


def default_shape(na: float, wavelength: float, pixel_size: float, z_step: float | None,
                  ni: float = OIL) -> tuple[int, ...]:
    """The size :func:`psf` uses when none is given (odd sizes, in pixels).

    Laterally 4 Airy radii (0.61 wavelength / NA) on each side of the centre; a 3-D PSF
    spans twice the depth of field (wavelength * ni / NA**2) above and below focus, and
    laterally also the light cone at its end planes (half-angle asin(NA / ni))."""
    airy = 0.61 * wavelength / na
    half = max(2, math.ceil(4 * airy / pixel_size))
    if z_step is None:
        return (2 * half + 1,) * 2
    depth = 2 * wavelength * ni / na**2
    half_z = max(1, math.ceil(depth / z_step))
    cone = half_z * z_step * math.tan(math.asin(min(na / ni, 0.999)))
    half = max(half, math.ceil(cone / pixel_size))
    return (2 * half_z + 1, 2 * half + 1, 2 * half + 1)


def psf(*, na: float, wavelength: float, pixel_size: float, z_step: float | None = None,
        shape=None, ni: float = OIL, ns: float | None = None, depth: float = 0.0,
        model: str = "vectorial") -> np.ndarray:
    """The PSF of a widefield fluorescence microscope, normalised to sum 1 (float64).

    Parameters (lengths in micrometres, um):

    na
        Numerical aperture of the objective (below ``ni``).
    wavelength
        Emission wavelength in um (GFP: 0.52).
    pixel_size
        Pixel size in the sample (camera pixel / magnification), um.
    z_step
        None: a 2-D PSF, the in-focus plane (Y, X). A number: a 3-D PSF (Z, Y, X) sampled
        every ``z_step`` um, focus in its centre plane; use the Z step of the stack it
        deconvolves.
    shape
        Odd size(s) in pixels: an int (Y = X), (y, x), or for a 3-D PSF (z, y, x). None:
        :func:`default_shape`.
    ni
        Refractive index of the immersion medium (oil 1.515, water 1.333, silicone 1.406).
    ns
        Refractive index of the sample (None: ``ni``, no index mismatch).
    depth
        Depth of the point source below the coverslip, um; with ``ns != ni`` it brings the
        spherical aberration of an index mismatch (Gibson & Lanni 1991).
    model
        ``"vectorial"`` (Aguet et al. 2009, default), ``"scalar"`` (Gibson & Lanni 1991) or
        ``"gaussian"`` (an approximation).

    The centre pixel (``shape // 2`` on every axis) is the point source's position. Needs
    the psfmodels package (``pip install "napari-dip[psf]"``): a ValueError says so when it
    is missing.
    """
    na = _positive("na", na)
    wavelength = _positive("wavelength", wavelength, maximum=_MAX_MICRONS["wavelength"])
    pixel_size = _positive("pixel_size", pixel_size, maximum=_MAX_MICRONS["pixel_size"])
    if z_step is not None:
        z_step = _positive("z_step", z_step, maximum=_MAX_MICRONS["z_step"])
    ni = _positive("ni", ni)
    ns = ni if ns is None else _positive("ns", ns)
    if isinstance(depth, bool) or not isinstance(depth, numbers.Real) \
            or not math.isfinite(float(depth)) or float(depth) < 0:
        raise ValueError(f"depth must be a number of um >= 0, got {depth!r}")
    if na >= ni:
        raise ValueError(f"na={na:g} must be below the immersion index ni={ni:g} (an "
                         "objective cannot collect more than its medium carries)")
    if not isinstance(model, str) or model not in MODELS:
        raise ValueError(f"unknown PSF model {model!r}; choose one of: {', '.join(MODELS)}")
    ndim = 2 if z_step is None else 3
    default = default_shape(na, wavelength, pixel_size, z_step, ni)
    sizes = default if shape is None else _odd_shape(shape, ndim)
    if len(sizes) == 2 and ndim == 3:
        sizes = (default[0], *sizes)
    if sizes[-1] != sizes[-2]:
        raise ValueError(f"shape {sizes} must be square in Y and X (psfmodels computes "
                         "square planes)")
    try:
        import psfmodels
    except ImportError:
        raise ValueError(f"napari_dip.psf needs the psfmodels package; install it with "
                         f"{_INSTALL}") from None
    # psfmodels puts the point source in the centre plane of an odd number of planes
    planes = 1 if ndim == 2 else sizes[0]
    volume = psfmodels.make_psf(planes, sizes[-1], dxy=pixel_size, dz=z_step or pixel_size,
                                pz=float(depth), NA=na, wvl=wavelength, ns=ns, ni=ni, ni0=ni,
                                model=model)
    volume = np.clip(np.asarray(volume, dtype=np.float64), 0, None)
    out = volume[0] if ndim == 2 else volume
    return out / out.sum()


def spacing_mismatch(z_step: float | None, pixel_size: float, spacing) -> str | None:
    """Why a PSF sampled every (``z_step``, ``pixel_size``) does not fit data of voxel size
    ``spacing`` = (z, y, x), or None where it fits or one cannot tell.

    Only the ratio Z / Y is compared (so the data's unit does not matter, and NIfTI's
    millimetres compare with the PSF's micrometres); spacing whose Y and X are both 1 is taken
    for unknown (TIFF files and napari layers without a scale say 1)."""
    if z_step is None or spacing is None:
        return None
    sz, sy, sx = (float(s) for s in spacing)
    if sy == sx == 1.0 or min(sz, sy, sx) <= 0:
        return None
    data, model = sz / sy, z_step / pixel_size
    if abs(data - model) <= 0.05 * data:
        return None
    return (f"the PSF's Z step / pixel size is {z_step:g} / {pixel_size:g} = {model:.3g} but "
            f"the data's voxel size (z, y, x) = ({sz:g}, {sy:g}, {sx:g}) has Z / Y = "
            f"{data:.3g}; model the PSF at the data's Z step (z_step = {pixel_size * data:.3g} "
            "um at this pixel size)")


__all__ = ["MODELS", "default_shape", "psf", "spacing_mismatch"]
