"""Reading and writing images for the command line: TIFF images and stacks (tifffile),
PNG/JPEG/BMP (scikit-image), and, when the optional packages are installed, NIfTI volumes
(.nii, .nii.gz: nibabel) and DICOM files (.dcm: pydicom); ``pip install "napari-dip[io]"``
installs both. Qt-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TIFF_SUFFIXES = (".tif", ".tiff")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


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


def read_data(path: str | Path) -> ImageData:
    """Read any supported file, with axis names and voxel size where the format has them."""
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    if suffix in TIFF_SUFFIXES:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            array = series.asarray()
            axes = _tiff_axes(series.axes) if array.ndim > 2 else None
            spacing = None
            meta = tif.imagej_metadata or {}
            if meta.get("spacing") and axes and "Z" in axes:
                spacing = (float(meta["spacing"]), 1.0, 1.0)
        return ImageData(array, axes, spacing, "tiff")
    if suffix in NIFTI_SUFFIXES:
        nibabel = _optional("nibabel", "NIfTI (.nii, .nii.gz)")
        image = nibabel.load(str(path))
        array = np.asarray(image.get_fdata(dtype=np.float32))
        if array.ndim not in (2, 3, 4):
            raise ValueError(f"{path.name} has {array.ndim} dimensions; NIfTI images with "
                             "2 to 4 (X, Y, Z, time) are supported")
        axes = "XYZT"[:array.ndim]
        zooms = [float(z) for z in image.header.get_zooms()[:3]] + [1.0] * 3
        spacing = (zooms[2], zooms[1], zooms[0]) if array.ndim >= 3 else None
        return ImageData(array, axes, spacing, "nifti",
                         {"affine": image.affine, "header": image.header})
    if suffix in DICOM_SUFFIXES:
        pydicom = _optional("pydicom", "DICOM (.dcm)")
        ds = pydicom.dcmread(str(path))
        array = np.asarray(ds.pixel_array)
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        if slope != 1 or intercept != 0:
            array = array.astype(np.float32) * slope + intercept
        colour = int(getattr(ds, "SamplesPerPixel", 1) or 1) > 1
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1) > 1
        axes = ("Z" if frames else "") + "YX" + ("C" if colour else "")
        spacing = None
        pixel = getattr(ds, "PixelSpacing", None)
        if pixel is not None:
            thick = getattr(ds, "SpacingBetweenSlices", None) or \
                getattr(ds, "SliceThickness", None) or 1.0
            spacing = (float(thick), float(pixel[0]), float(pixel[1]))
        return ImageData(array, axes if array.ndim > 2 else None, spacing, "dicom")
    return ImageData(read_image(path), None, None, "picture")


def read_image(path: str | Path) -> np.ndarray:
    """Read a TIFF or PNG/JPEG/BMP file as an array (alpha channels of pictures dropped)."""
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    if suffix in TIFF_SUFFIXES:
        import tifffile

        return tifffile.imread(path)
    if suffix in NIFTI_SUFFIXES + DICOM_SUFFIXES:
        return read_data(path).array
    if suffix in PICTURE_SUFFIXES:
        from skimage import io

        image = io.imread(path)
        if image.ndim == 3 and image.shape[-1] == 4:
            image = image[..., :3]
        return image
    raise ValueError(
        f"cannot read {path.name}: use a TIFF ({', '.join(TIFF_SUFFIXES)}), picture "
        f"({', '.join(PICTURE_SUFFIXES)}), NIfTI ({', '.join(NIFTI_SUFFIXES)}) or DICOM "
        f"({', '.join(DICOM_SUFFIXES)}) file"
    )


def picture_dtype_array(image: np.ndarray, input_dtype: str) -> np.ndarray:
    """Convert a float result for a PNG/JPEG/BMP file.

    Integer inputs go back to their own dtype (rounded, clipped); float results in [0, 1] are
    stored as 8-bit. Anything else would lose values: a ValueError says to use TIFF.
    """
    dtype = np.dtype(input_dtype)
    if np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2:
        info = np.iinfo(dtype)
        return np.clip(np.rint(image), info.min, info.max).astype(dtype)
    if image.min() >= 0 and image.max() <= 1:
        return np.rint(image * 255).astype(np.uint8)
    raise ValueError(
        f"a {input_dtype} result with values in [{image.min():g}, {image.max():g}] does not fit "
        "an 8/16-bit picture; write a .tif file to keep the values"
    )


def write_image(path: str | Path, image: np.ndarray, input_dtype: str,
                parameters: dict | None = None, source: ImageData | None = None,
                axes: str | None = None) -> Path:
    """Write a result: float32 TIFF (with the run's parameters as JSON in its description,
    and the axis names of a stack so that tifffile reads them back), a NIfTI volume (with the
    input's orientation when it was NIfTI too), or a PNG/JPEG/BMP in the input's integer
    dtype."""
    path = Path(path)
    suffix = _suffix(path)
    image = np.asarray(image)
    if suffix in TIFF_SUFFIXES:
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
        return path
    if suffix in NIFTI_SUFFIXES:
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
        return path
    if suffix in PICTURE_SUFFIXES:
        if image.ndim > 3 or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
            raise ValueError(f"a result of shape {image.shape} does not fit a picture file; "
                             "write a .tif (or .nii) file")
        from skimage import io

        io.imsave(path, picture_dtype_array(image, input_dtype), check_contrast=False)
        return path
    raise ValueError(
        f"cannot write {path.name}: use a .tif (float values kept), .nii/.nii.gz or .png file"
    )
