"""Reading and writing images for the command line: TIFF (tifffile) and PNG/JPEG/BMP
(scikit-image). Qt-free."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TIFF_SUFFIXES = (".tif", ".tiff")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def read_image(path: str | Path) -> np.ndarray:
    """Read a TIFF or PNG/JPEG/BMP file as an array (alpha channels of pictures dropped)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    if suffix in TIFF_SUFFIXES:
        import tifffile

        return tifffile.imread(path)
    if suffix in PICTURE_SUFFIXES:
        from skimage import io

        image = io.imread(path)
        if image.ndim == 3 and image.shape[-1] == 4:
            image = image[..., :3]
        return image
    raise ValueError(
        f"cannot read {path.name}: use a TIFF ({', '.join(TIFF_SUFFIXES)}) or picture "
        f"({', '.join(PICTURE_SUFFIXES)}) file"
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
                parameters: dict | None = None) -> Path:
    """Write a result: float32 TIFF (with the run's parameters as JSON in its description),
    or a PNG/JPEG/BMP in the input's integer dtype."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        import tifffile

        description = json.dumps(parameters) if parameters else None
        tifffile.imwrite(path, np.asarray(image, dtype=np.float32), description=description,
                         metadata=None)
        return path
    if suffix in PICTURE_SUFFIXES:
        from skimage import io

        io.imsave(path, picture_dtype_array(image, input_dtype), check_contrast=False)
        return path
    raise ValueError(
        f"cannot write {path.name}: use a .tif (float values kept) or .png file"
    )
