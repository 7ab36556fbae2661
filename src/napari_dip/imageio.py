"""Reading and writing images for the command line: TIFF images and stacks (tifffile),
PNG/JPEG/BMP (scikit-image), and, when the optional packages are installed, NIfTI volumes
(.nii, .nii.gz: nibabel) and DICOM files (.dcm: pydicom) (``pip install "napari-dip[io]"``
installs both), and FITS frames (.fits: astropy, ``pip install "napari-dip[astro]"``; see
:mod:`napari_dip.fits`). Qt-free and torch-free.

Every read problem (a missing file, a folder, no permission, an empty or corrupt file) is a
ValueError ``cannot read PATH: reason``. :func:`check_output_format` tells before a run
whether a file type can hold its result; :func:`write_image` writes atomically (see
:mod:`napari_dip.safe_write`) and reports a failed write as ``cannot write PATH: reason``.
"""

from __future__ import annotations

import contextlib
import errno
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .fits import FITS_SUFFIXES
from .safe_write import atomic_write

TIFF_SUFFIXES = (".tif", ".tiff")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")

#: The file type named in read errors, by suffix.
_LABELS = {".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG",
           ".bmp": "BMP", ".nii": "NIfTI", ".nii.gz": "NIfTI", ".dcm": "DICOM",
           ".dicom": "DICOM", ".npy": "NumPy .npy",
           **dict.fromkeys(FITS_SUFFIXES, "FITS")}

#: What each picture format holds, as Pillow writes it: {dtype: channel counts} and the
#: same in words. Pillow writes 16-bit PNGs in grey only; JPEG and BMP are 8-bit, and
#: neither keeps an alpha channel (JPEG refuses one, BMP drops it).
PICTURE_FORMATS: dict[str, tuple[dict[str, tuple[int, ...]], str]] = {
    ".png": ({"uint8": (1, 3, 4), "uint16": (1,)}, "8-bit grey, RGB or RGBA, or 16-bit grey"),
    ".jpg": ({"uint8": (1, 3)}, "8-bit grey or RGB"),
    ".jpeg": ({"uint8": (1, 3)}, "8-bit grey or RGB"),
    ".bmp": ({"uint8": (1, 3)}, "8-bit grey or RGB"),
}
_TIFF_ADVICE = "write a .tif (float32, keeps the values)"


def file_stem(path: str | Path) -> str:
    """The file's name without its image suffix (``scan.nii.gz`` -> ``scan``)."""
    path = Path(path)
    suffix = _suffix(path)
    return path.name[:len(path.name) - len(suffix)] if suffix else path.name


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for double in (".nii.gz", *(s for s in FITS_SUFFIXES if s.endswith(".gz"))):
        if name.endswith(double):
            return double
    return path.suffix.lower()


def _optional(module: str, what: str):
    """Import an optional reader, or a ValueError naming the package to install."""
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError:
        raise ValueError(
            f"{what} files need the optional package {module!r}: pip install {module} "
            "(or pip install \"napari-dip[io]\" for NIfTI and DICOM support)") from None


@dataclass
class ImageData:
    """An image read from a file: the array, its axes where the file names them (letters
    T, Z, Y, X, C, as ``restore(axes=...)`` takes them; None when unknown), the voxel size
    (z, y, x) where known, and what writing a result in the same format needs."""

    array: np.ndarray
    axes: str | None = None
    spacing: tuple[float, float, float] | None = None
    format: str = "tiff"
    extra: dict[str, Any] = field(default_factory=dict)

    def layout(self, name: str) -> dict[str, Any]:
        """The ``restore`` layout argument the file implies when the user gives none:
        ``channel_axis=-1`` for an RGB(A) picture, ``axes`` for a stack that names its axes,
        nothing for a 2-D image. ValueError (naming the file as ``name``) for a stack that
        does not name its axes."""
        image = self.array
        if image.ndim == 3 and image.shape[-1] in (3, 4) and self.axes in (None, "YXC"):
            return {"channel_axis": -1}
        if image.ndim > 2:
            if self.axes is None:
                raise ValueError(
                    f"{name} has {image.ndim} dimensions (shape {image.shape}) and does not "
                    f"name them; pass --axes, e.g. --axes "
                    f"{'ZYX' if image.ndim == 3 else 'TZYX'}")
            return {"axes": self.axes}
        return {}


_TIFF_AXES = {"T": "T", "Z": "Z", "Y": "Y", "X": "X", "C": "C"}


def _tiff_axes(axes: str) -> str | None:
    """tifffile's axis letters as ours; None if any is unknown (Q, I, ...) or repeated."""
    out = []
    for i, letter in enumerate(axes):
        if letter == "S" and i == len(axes) - 1:  # contiguous samples: colour
            out.append("C")
        elif letter in _TIFF_AXES:
            out.append(_TIFF_AXES[letter])
        else:
            return None
    name = "".join(out)
    return name if len(set(name)) == len(name) else None


# --- reading ------------------------------------------------------------------------------

def _short(error: BaseException) -> str:
    """An exception's message as a short reason: its first line, at most 120 characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    if len(text) > 80 and ". " in text:  # a long explanation: its first sentence
        text = text[:text.index(". ")]
    return text if len(text) <= 120 else text[:117] + "..."


def _check_readable(path: Path) -> None:
    """A ValueError ``cannot read PATH: reason`` unless ``path`` is a non-empty regular
    file this process may read."""
    where = f"cannot read {path}"
    if not path.exists():
        broken = " (a broken symbolic link)" if path.is_symlink() else ""
        raise ValueError(f"{where}: no such file{broken}")
    if path.is_dir():
        raise ValueError(f"{where}: is a folder, not an image file")
    if not path.is_file():
        raise ValueError(f"{where}: is not a regular file (a device, pipe or socket)")
    try:
        with open(path, "rb") as fh:
            first = fh.read(1)
    except PermissionError:
        raise ValueError(f"{where}: permission denied") from None
    except OSError as error:
        raise ValueError(f"{where}: {error.strerror or _short(error)}") from None
    if not first:
        raise ValueError(f"{where}: the file is empty (0 bytes)")


def _picture_reason(path: Path, error: BaseException) -> str:
    """Why a picture cannot be read, in Pillow's words (scikit-image's are about plugins)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            picture.load()
    except UnidentifiedImageError:
        return "not recognised as an image"
    except Exception as pillow_error:  # any decoder failure is the reason
        return _short(pillow_error)
    return _short(error)


@contextlib.contextmanager
def _decoding(path: Path, reason: Callable[[Path, BaseException], str] | None = None
              ) -> Iterator[None]:
    """Turn a decoder's failure (an OSError, a library's own error) into ``cannot read PATH:
    not a valid TIFF file (reason)``. MemoryError, KeyboardInterrupt and SystemExit pass."""
    try:
        yield
    except MemoryError:
        raise
    except PermissionError:
        raise ValueError(f"cannot read {path}: permission denied") from None
    except Exception as error:
        if isinstance(error, ValueError) and str(error).startswith("cannot read "):
            raise  # a reader's own message, as it is
        why = reason(path, error) if reason is not None else _short(error)
        label = _LABELS.get(_suffix(path), "image")
        raise ValueError(f"cannot read {path}: not a valid {label} file ({why})") from error


def _unknown_type(path: Path) -> ValueError:
    suffix = _suffix(path)
    kind = f"unknown file type {suffix!r}" if suffix else "no file type (suffix)"
    return ValueError(
        f"cannot read {path}: {kind}; use a TIFF ({', '.join(TIFF_SUFFIXES)}), picture "
        f"({', '.join(PICTURE_SUFFIXES)}), NIfTI ({', '.join(NIFTI_SUFFIXES)}), DICOM "
        f"({', '.join(DICOM_SUFFIXES)}) or FITS ({', '.join(FITS_SUFFIXES[:3])}) file")


def _read_tiff(path: Path) -> ImageData:
    import tifffile

    with _decoding(path), tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        array = series.asarray()
        axes = _tiff_axes(series.axes) if array.ndim > 2 else None
        spacing = None
        meta = tif.imagej_metadata or {}
        if meta.get("spacing") and axes and "Z" in axes:
            spacing = (float(meta["spacing"]), 1.0, 1.0)
    return ImageData(array, axes, spacing, "tiff")


def _read_nifti(path: Path) -> ImageData:
    nibabel = _optional("nibabel", "NIfTI (.nii, .nii.gz)")
    with _decoding(path):
        image = nibabel.load(str(path))
        array = np.asarray(image.get_fdata(dtype=np.float32))
        zooms = [float(z) for z in image.header.get_zooms()[:3]] + [1.0] * 3
    if array.ndim not in (2, 3, 4):
        raise ValueError(f"cannot read {path}: it has {array.ndim} dimensions; NIfTI images "
                         "with 2 to 4 (X, Y, Z, time) are supported")
    axes = "XYZT"[:array.ndim]
    spacing = (zooms[2], zooms[1], zooms[0]) if array.ndim >= 3 else None
    return ImageData(array, axes, spacing, "nifti",
                     {"affine": image.affine, "header": image.header})


def _read_dicom(path: Path) -> ImageData:
    pydicom = _optional("pydicom", "DICOM (.dcm)")
    with _decoding(path):
        ds = pydicom.dcmread(str(path))
        array = np.asarray(ds.pixel_array)
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        colour = int(getattr(ds, "SamplesPerPixel", 1) or 1) > 1
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1) > 1
        pixel = getattr(ds, "PixelSpacing", None)
        spacing = None
        if pixel is not None:
            thick = getattr(ds, "SpacingBetweenSlices", None) or \
                getattr(ds, "SliceThickness", None) or 1.0
            spacing = (float(thick), float(pixel[0]), float(pixel[1]))
    if slope != 1 or intercept != 0:
        array = array.astype(np.float32) * slope + intercept
    axes = ("Z" if frames else "") + "YX" + ("C" if colour else "")
    return ImageData(array, axes if array.ndim > 2 else None, spacing, "dicom")


def _read_picture(path: Path) -> np.ndarray:
    from skimage import io

    with _decoding(path, _picture_reason):
        image = io.imread(path)
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    return image


def _read_fits(path: Path, hdu) -> ImageData:
    from .fits import astropy_fits, read_fits

    astropy_fits()  # a missing package is named, not reported as a corrupt file
    with _decoding(path):
        array, extra = read_fits(path, hdu)
    axes = {3: "ZYX", 4: "TZYX"}.get(array.ndim) if array.ndim > 2 else None
    return ImageData(array, axes, None, "fits", extra)


def read_data(path: str | Path, hdu=None) -> ImageData:
    """Read any supported file, with axis names and voxel size where the format has them;
    ``hdu`` picks a FITS file's HDU (an index or EXTNAME; default: the first image).

    Raises ValueError ``cannot read PATH: reason`` for a missing, unreadable, empty, corrupt
    or unknown file (and names the package to install for NIfTI, DICOM or FITS without
    it)."""
    path = Path(path)
    _check_readable(path)
    suffix = _suffix(path)
    if hdu is not None and suffix not in FITS_SUFFIXES:
        raise ValueError(f"an HDU ({hdu!r}) applies to FITS files, not {path.name}")
    if suffix in FITS_SUFFIXES:
        return _read_fits(path, hdu)
    if suffix in TIFF_SUFFIXES:
        return _read_tiff(path)
    if suffix in NIFTI_SUFFIXES:
        return _read_nifti(path)
    if suffix in DICOM_SUFFIXES:
        return _read_dicom(path)
    if suffix in PICTURE_SUFFIXES:
        return ImageData(_read_picture(path), None, None, "picture")
    raise _unknown_type(path)


def read_image(path: str | Path) -> np.ndarray:
    """Read a TIFF, PNG/JPEG/BMP, NIfTI or DICOM file as an array (alpha channels of
    pictures dropped); errors as :func:`read_data`'s."""
    return read_data(path).array


def read_npy(path: str | Path) -> np.ndarray:
    """Read a NumPy ``.npy`` array (no pickled objects); errors as :func:`read_data`'s."""
    path = Path(path)
    _check_readable(path)
    with _decoding(path):
        return np.load(path, allow_pickle=False)


# --- what a file type can hold ------------------------------------------------------------

def _picture_channels(shape: tuple[int, ...]) -> int | None:
    """1 (grey), 3 (RGB) or 4 (RGBA) for a picture's shape; None for anything else."""
    if len(shape) == 2:
        return 1
    if len(shape) == 3 and shape[-1] in (3, 4):
        return shape[-1]
    return None


def _small_integer(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2


def picture_dtype(input_dtype: str, value_range: tuple[float, float]) -> np.dtype:
    """The dtype a picture of the result gets: an integer input of 8 or 16 bits keeps its
    dtype; any other input whose values lie in [0, 1] (``value_range``: its minimum and
    maximum) becomes 8-bit (0..1 scaled to 0..255). Anything else raises ValueError."""
    dtype = np.dtype(input_dtype)
    if _small_integer(dtype):
        return dtype
    low, high = value_range
    if low >= 0 and high <= 1:
        return np.dtype(np.uint8)
    raise ValueError(
        f"a {input_dtype} image with values in [{low:g}, {high:g}] gives a result in that "
        "range, which an 8/16-bit picture cannot hold (pictures take integer images, or "
        f"values in [0, 1] as 8-bit); {_TIFF_ADVICE}")


def _check_picture(path: Path, shape: tuple[int, ...], input_dtype: str,
                   value_range: tuple[float, float]) -> None:
    suffix = _suffix(path)
    channels = _picture_channels(shape)
    if channels is None:
        raise ValueError(
            f"a result of shape {tuple(shape)} (a stack, a volume, or channels not last) "
            f"does not fit a picture file such as {path.name}; {_TIFF_ADVICE} or a "
            ".nii/.nii.gz file")
    dtype = picture_dtype(input_dtype, value_range)
    holds, words = PICTURE_FORMATS[suffix]
    if channels in holds.get(dtype.name, ()):
        return
    kind = {1: "grey", 3: "RGB", 4: "RGBA"}[channels]
    others = [s for s in (".png", ".jpg", ".bmp")
              if channels in PICTURE_FORMATS[s][0].get(dtype.name, ())]
    instead = f"write a {others[0]} or a .tif (float32, keeps the values)" if others \
        else _TIFF_ADVICE
    raise ValueError(f"a {suffix} file holds {words} pictures, not this {dtype.name} {kind} "
                     f"result; {instead}")


def check_output_format(path: str | Path, shape: tuple[int, ...], input_dtype: str,
                        value_range: tuple[float, float]) -> None:
    """Raise ValueError, before a run, unless ``path``'s file type can hold a result of
    ``shape`` computed from an input of ``input_dtype`` with values in ``value_range``
    (the input's minimum and maximum). TIFF holds anything (float32); NIfTI anything, with
    nibabel installed; pictures see :data:`PICTURE_FORMATS` and :func:`picture_dtype`."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix in TIFF_SUFFIXES:
        return
    if suffix in DICOM_SUFFIXES:
        raise ValueError("napari-dip reads DICOM but does not write it; write a .tif or "
                         ".nii file")
    if suffix in NIFTI_SUFFIXES:
        _optional("nibabel", "NIfTI (.nii, .nii.gz)")
        return
    if suffix in FITS_SUFFIXES:
        from .fits import astropy_fits

        astropy_fits()
        return
    if suffix in PICTURE_SUFFIXES:
        _check_picture(path, shape, input_dtype, value_range)
        return
    kind = f"unknown file type {suffix!r}" if suffix else "no file type (suffix)"
    raise ValueError(f"cannot write {path}: {kind}; use a .tif (float values kept), "
                     ".nii/.nii.gz, .fits, .png, .jpg or .bmp file")


def picture_dtype_array(image: np.ndarray, input_dtype: str,
                        input_range: tuple[float, float] | None = None) -> np.ndarray:
    """Convert a float result for a PNG/JPEG/BMP file.

    Integer inputs of 8 or 16 bits go back to their own dtype (rounded, clipped to it).
    Other inputs: when ``input_range`` (the input's minimum and maximum) lies in [0, 1], the
    result is clipped to [0, 1] and stored as 8-bit, so a result that overshoots a little
    never fails the write; without ``input_range`` the result's own range must lie in
    [0, 1]. Anything else raises ValueError saying to use TIFF.
    """
    dtype = np.dtype(input_dtype)
    if _small_integer(dtype):
        info = np.iinfo(dtype)
        return np.clip(np.rint(image), info.min, info.max).astype(dtype)
    if input_range is None:
        input_range = (float(image.min()), float(image.max()))
    picture_dtype(input_dtype, input_range)  # raises unless the values lie in [0, 1]
    return np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)


# --- writing ------------------------------------------------------------------------------

def _write_tiff(path: Path, image: np.ndarray, parameters: dict | None,
                axes: str | None) -> None:
    import tifffile

    description = dict(parameters or {})
    extra = {}
    if image.ndim > 2 and axes and len(axes) == image.ndim:
        description = {"shape": list(image.shape), "axes": axes, **description}
        if not axes.endswith("C"):  # planes of a stack, not colour samples
            extra["photometric"] = "minisblack"
    tifffile.imwrite(path, np.asarray(image, dtype=np.float32),
                     description=json.dumps(description) if description else None,
                     metadata=None, **extra)


def _write_nifti(path: Path, image: np.ndarray, source: ImageData | None) -> None:
    nibabel = _optional("nibabel", "NIfTI (.nii, .nii.gz)")
    data = np.asarray(image, dtype=np.float32)
    if source is not None and source.format == "nifti":
        affine = np.array(source.extra["affine"], dtype=float)
        for k in range(min(3, data.ndim)):  # super-resolution: finer voxels, same extent
            f = data.shape[k] / source.array.shape[k]
            if f != 1:
                affine[:3, 3] -= affine[:3, k] * (f - 1) / (2 * f)
                affine[:3, k] /= f
        header = source.extra["header"].copy()
        header.set_data_dtype(np.float32)
        out = nibabel.Nifti1Image(data, affine, header)
    else:
        out = nibabel.Nifti1Image(data, np.eye(4))
    nibabel.save(out, str(path))


def _write_reason(error: OSError) -> str:
    """A failed write's reason in words (numpy's short write has no errno)."""
    if isinstance(error, FileExistsError):
        return ("a file of that name appeared during the run and was kept; pass --overwrite "
                "to replace it, or choose another -o")
    if error.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", -1)):
        return f"{error.strerror} (the disk is full or a file size limit was reached)"
    if error.errno is None and "written" in str(error):
        return (f"the disk is full or a file size limit was reached (only part of the data "
                f"was written: {_short(error)})")
    return error.strerror or _short(error)


def write_image(path: str | Path, image: np.ndarray, input_dtype: str,
                parameters: dict | None = None, source: ImageData | None = None,
                axes: str | None = None, *, input_range: tuple[float, float] | None = None,
                overwrite: bool = True) -> Path:
    """Write a result: float32 TIFF (with the run's parameters as JSON in its description,
    and the axis names of a stack so that tifffile reads them back), a NIfTI volume (with the
    input's orientation when it was NIfTI too), or a PNG/JPEG/BMP in the input's integer
    dtype (see :func:`picture_dtype_array` for ``input_range``).

    The file appears complete or not at all: it is written beside ``path`` and renamed into
    place; an existing file is replaced only with ``overwrite``. A format that cannot hold
    the result raises ValueError before anything is written; a failed write (a full disk,
    Ctrl-C) leaves no file and raises ValueError ``cannot write PATH: reason`` (or the
    KeyboardInterrupt)."""
    path = Path(path)
    suffix = _suffix(path)
    image = np.asarray(image)
    value_range = input_range if input_range is not None else \
        (float(image.min()), float(image.max()))
    check_output_format(path, image.shape, input_dtype, value_range)
    picture = None
    if suffix in PICTURE_SUFFIXES:
        picture = picture_dtype_array(image, input_dtype, input_range)
    try:
        with atomic_write(path, overwrite) as temp:
            if suffix in TIFF_SUFFIXES:
                _write_tiff(temp, image, parameters, axes)
            elif suffix in NIFTI_SUFFIXES:
                _write_nifti(temp, image, source)
            elif suffix in FITS_SUFFIXES:
                from .fits import write_fits

                fits_source = source if source is not None and source.format == "fits" \
                    else None
                write_fits(temp, image, parameters,
                           fits_source.extra if fits_source else None,
                           fits_source.array.shape if fits_source else None)
            else:
                from skimage import io

                io.imsave(temp, picture, check_contrast=False)
    except OSError as error:
        raise ValueError(f"cannot write {path}: {_write_reason(error)}") from error
    return path
