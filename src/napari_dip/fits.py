"""FITS frames (astronomy) in and out, with astropy (``pip install "napari-dip[astro]"``).

A frame is read from the primary HDU, or the first extension that holds an image, or the
one named by ``hdu`` (an index or an EXTNAME). Its header travels with the result: the
output is one primary HDU with the original cards (WCS, exposure, units), HISTORY cards for
the run and, after super-resolution, the pixel scale and reference pixel of a linear WCS
divided and moved so the sky coordinates stay where they were. NaN pixels (the usual mark
of a bad pixel in reduced frames) are kept as NaN on reading; ``restore(task="inpaint",
mask="nan")`` fills them. Torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
#: Longest text of a HISTORY card (80 characters less the keyword and its padding).
_HISTORY_WIDTH = 72


def astropy_fits():
    """``astropy.io.fits``, or a ValueError naming the extra to install."""
    try:
        from astropy.io import fits
    except ImportError:
        raise ValueError("FITS files need the optional package 'astropy': pip install "
                         "astropy (or pip install \"napari-dip[astro]\")") from None
    return fits


def _image_hdus(hdul) -> list[int]:
    return [i for i, h in enumerate(hdul)
            if getattr(h, "is_image", False) and h.data is not None and h.data.size > 0]


def _pick_hdu(hdul, hdu, path: Path) -> int:
    """The index of the HDU to read: ``hdu`` (an index or EXTNAME), or the first image."""
    images = _image_hdus(hdul)
    if hdu is None:
        if not images:
            raise ValueError(f"cannot read {path}: it holds no image (no HDU with data)")
        return images[0]
    names = {str(h.name).upper(): i for i, h in enumerate(hdul)}
    index = names.get(str(hdu).upper())
    if index is None:
        try:
            index = int(hdu)
        except (TypeError, ValueError):
            index = -1
    if index not in images:
        listing = ", ".join(f"{i} ({hdul[i].name})" for i in images) or "none"
        raise ValueError(f"cannot read {path}: HDU {hdu!r} is not an image; the images in "
                         f"it are: {listing}")
    return index


def read_fits(path: str | Path, hdu=None) -> tuple[np.ndarray, dict[str, Any]]:
    """(the frame as float32 or its own float dtype, {"header": header, "hdu": index}).

    Integer frames with BSCALE/BZERO come back scaled (astropy applies them); the array is
    in numpy's (Y, X) order, (Z, Y, X) for cubes. NaN stays NaN."""
    fits = astropy_fits()
    path = Path(path)
    with fits.open(path, memmap=False) as hdul:
        index = _pick_hdu(hdul, hdu, path)
        chosen = hdul[index]
        data = chosen.data
        array = np.array(data, dtype=data.dtype.newbyteorder("="))  # FITS is big-endian
        header = chosen.header.copy()
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32) if array.dtype.itemsize <= 2 else \
            array.astype(np.float64)
    return array, {"header": header, "hdu": index}


def _history(parameters: dict | None) -> list[str]:
    """HISTORY lines for the run: the program, then ``key=value`` of every parameter,
    wrapped to the card width."""
    from . import __version__

    lines = [f"napari-dip {__version__} restored this image"]
    for key, value in (parameters or {}).items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, separators=(",", ":"))
        text = f"{key}={value}"
        lines += [text[i:i + _HISTORY_WIDTH] for i in range(0, len(text), _HISTORY_WIDTH)]
    return lines


def _rescale_wcs(header, factors: tuple[float, float]) -> None:
    """After super-resolution by (fy, fx): pixel scale / f and the reference pixel moved so
    that pixel centres keep their sky positions (FITS pixel centres are integers, 1-based:
    the edge of the frame, at 0.5, stays at 0.5)."""
    for axis, f in ((1, factors[1]), (2, factors[0])):  # FITS axis 1 is X
        if f == 1:
            continue
        if f"CRPIX{axis}" in header:
            header[f"CRPIX{axis}"] = (header[f"CRPIX{axis}"] - 0.5) * f + 0.5
        if f"CDELT{axis}" in header:
            header[f"CDELT{axis}"] = header[f"CDELT{axis}"] / f
        for other in (1, 2):
            key = f"CD{axis}_{other}"
            if key in header:
                header[key] = header[key] / f
            key = f"PC{axis}_{other}"
            if key in header and f"CDELT{axis}" not in header:
                header[key] = header[key] / f


def write_fits(path: str | Path, image: np.ndarray, parameters: dict | None = None,
               source_extra: dict[str, Any] | None = None,
               source_shape: tuple[int, ...] | None = None) -> None:
    """Write ``image`` (float32) as a primary HDU with the source's header (when the input
    was FITS), HISTORY cards for the run, and the WCS rescaled after super-resolution."""
    fits = astropy_fits()
    data = np.asarray(image, dtype=np.float32)
    header = fits.Header()
    if source_extra and source_extra.get("header") is not None:
        header = source_extra["header"].copy()
        for key in ("XTENSION", "PCOUNT", "GCOUNT", "EXTNAME", "BSCALE", "BZERO", "BLANK"):
            header.remove(key, ignore_missing=True, remove_all=True)
        if source_shape is not None and data.ndim >= 2 and len(source_shape) >= 2:
            _rescale_wcs(header, (data.shape[-2] / source_shape[-2],
                                  data.shape[-1] / source_shape[-1]))
    for line in _history(parameters):
        header.add_history(line)
    fits.PrimaryHDU(data=data, header=header).writeto(path, output_verify="silentfix")


__all__ = ["FITS_SUFFIXES", "astropy_fits", "read_fits", "write_fits"]
