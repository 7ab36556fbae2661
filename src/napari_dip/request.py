"""Checking a restoration request. Pure numpy: every error a user can make is raised here,
as a ValueError that names the problem and the fix, before any work starts.

The caller's arrays are only read; everything kept is a float64 copy.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .kernels import blur_kernel
from .presets import PRESETS

TASKS = ("denoise", "inpaint", "super_resolution", "deblur", "flash_no_flash")
METHODS = ("dip", "deepred")
NOISE_MODELS = ("gaussian", "poisson")
SR_FACTORS = (2, 4, 8)
#: Smallest image side, in pixels, that a run accepts.
MIN_SIZE = 16


@dataclass(frozen=True)
class Request:
    """A validated request. Arrays are float64 copies, channels first: (C, H, W)."""

    image: np.ndarray
    task: str
    method: str
    mask: np.ndarray | None  # (H, W) bool, True = pixel to fill
    factor: int
    kernel: np.ndarray | None
    kernel_name: str | None
    flash: np.ndarray | None  # (C', H, W)
    iterations: int | None
    early_stop: bool
    patience: int | None  # ES-WMV patience given as early_stop=N; None = default
    preset: str
    seed: int
    device: str
    channel_axis: int | None
    noise: str
    preview_every: int | None
    input_shape: tuple[int, ...]
    input_dtype: str
    options: dict[str, Any] = field(default_factory=dict)
    # Set by the stack, volume and tile drivers (napari_dip.drivers) for the parts they run:
    z_factor: int = 1  # volumes: super-resolution along Z
    value_range: tuple[float, float] | None = None  # normalise by this range, not the part's
    spacing: tuple[float, float, float] | None = None  # volumes: (z, y, x) voxel size
    #: Gaussian noise standard deviation in the image's units (discrepancy-principle
    #: stopping), "auto" (estimated for DIP denoising, else ES-WMV) or None (ES-WMV).
    noise_sigma: float | str | None = "auto"

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """(H, W), or (D, H, W) for a volume (image (C, D, H, W))."""
        return tuple(self.image.shape[1:])

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of ``Result.image``: the input's, with Y and X multiplied by ``factor``."""
        shape = list(self.input_shape)
        ndim = len(shape)
        cax = None if self.channel_axis is None else self.channel_axis % ndim
        spatial = [ax for ax in range(ndim) if ax != cax]
        for ax in spatial:
            shape[ax] *= self.factor
        return tuple(shape)


def _choice(name: str, value, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(map(str, allowed))}")
    return value


def _as_channels_first(array, what: str, channel_axis: int | None) -> np.ndarray:
    """(H, W) or an array with ``channel_axis`` -> float64 (C, H, W) copy, checked."""
    a = check_array(array, what)
    if channel_axis is None:
        if a.ndim != 2:
            hint = (" For colour or multichannel images pass channel_axis (e.g. channel_axis=-1 "
                    "for RGB)." if a.ndim == 3 else "")
            raise ValueError(
                f"{what} has {a.ndim} dimensions (shape {a.shape}); this task takes a 2-D "
                f"(Y, X) image.{hint} For stacks, time series and volumes name the axes, "
                "e.g. axes='ZYX' or axes='TYX'."
            )
        a = a[np.newaxis]
    else:
        if a.ndim != 3:
            raise ValueError(
                f"with channel_axis={channel_axis}, {what} must have 3 dimensions (Y, X and "
                f"channels), got shape {a.shape}; for stacks name the axes instead, e.g. "
                "axes='ZYXC'"
            )
        if not -3 <= channel_axis <= 2:
            raise ValueError(f"channel_axis={channel_axis} is out of range for a 3-D image")
        a = np.moveaxis(a, channel_axis, 0)
    h, w = a.shape[-2:]
    if min(h, w) < MIN_SIZE:
        raise ValueError(
            f"{what} is {h}x{w} pixels; images need at least {MIN_SIZE} pixels on each side"
        )
    out = a.astype(np.float64, copy=True)
    if not np.all(np.isfinite(out)):
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise ValueError(
            f"{what} has {bad} NaN or infinite value(s); replace them first "
            "(e.g. np.nan_to_num, or mark them as holes and use task='inpaint')"
        )
    return out


def check_factor(task: str, factor, allowed=SR_FACTORS) -> int:
    """The super-resolution factor (1 for other tasks), checked."""
    if task == "super_resolution":
        names = ", ".join(map(str, allowed[:-1])) + f" or {allowed[-1]}"
        if factor is None:
            raise ValueError(f"task='super_resolution' needs factor={names}")
        if isinstance(factor, bool) or not isinstance(factor, numbers.Integral) \
                or int(factor) not in allowed:
            raise ValueError(f"super-resolution factor must be {names}, got {factor!r}")
        return int(factor)
    if factor not in (None, 1):
        raise ValueError(f"factor is only used by task='super_resolution', not task={task!r}")
    return 1


def check_kernel(task: str, kernel, plane: tuple[int, int]):
    """(kernel array or None, kernel name or None), checked against the plane's size."""
    if task == "deblur":
        h, w = plane
        if kernel is None:
            kernel = "gaussian"
        k = blur_kernel(kernel)
        if k.shape[0] > h or k.shape[1] > w:
            raise ValueError(
                f"blur kernel is {k.shape[0]}x{k.shape[1]} but the image is only {h}x{w}; "
                "use a smaller kernel or a larger image"
            )
        return k, kernel if isinstance(kernel, str) else "custom"
    if kernel is not None:
        raise ValueError(f"kernel is only used by task='deblur', not task={task!r}")
    return None, None


def check_numbers(iterations, preview_every, early_stop, seed):
    """(iterations, preview_every, patience, seed), checked."""
    if iterations is not None:
        if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) \
                or iterations < 1:
            raise ValueError(f"iterations must be a positive integer or None (preset default), "
                             f"got {iterations!r}")
        iterations = int(iterations)
    if preview_every is not None:
        if isinstance(preview_every, bool) or not isinstance(preview_every, numbers.Integral) \
                or preview_every < 1:
            raise ValueError(f"preview_every must be a positive integer or None, "
                             f"got {preview_every!r}")
        preview_every = int(preview_every)
    patience = None
    if not isinstance(early_stop, bool):
        if not isinstance(early_stop, numbers.Integral) or early_stop < 1:
            raise ValueError(f"early_stop must be True, False or a patience in iterations "
                             f"(a positive integer), got {early_stop!r}")
        patience = int(early_stop)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return iterations, preview_every, patience, int(seed)


#: Tasks whose data term is a mean squared residual the discrepancy principle can compare
#: with the noise variance.
SIGMA_TASKS = ("denoise", "inpaint", "super_resolution", "deblur")


def check_noise_sigma(noise_sigma, *, task: str, method: str, noise: str, early_stop,
                      value_range: float | None = None) -> float | str | None:
    """``noise_sigma`` checked against the other settings: "auto", None or a float > 0."""
    if noise_sigma is None or (isinstance(noise_sigma, str) and noise_sigma == "auto"):
        return noise_sigma
    if isinstance(noise_sigma, (bool, str)) or not isinstance(noise_sigma, numbers.Real) \
            or not np.isfinite(noise_sigma) or noise_sigma <= 0:
        raise ValueError(
            f"noise_sigma must be the noise's standard deviation in the image's units (a "
            f"positive number), 'auto' or None, got {noise_sigma!r}")
    sigma = float(noise_sigma)
    where = None
    if noise != "gaussian":
        where = (f"noise={noise!r} has no standard deviation to give; drop noise_sigma "
                 "(the run stops by ES-WMV)")
    elif method != "dip":
        where = (f"method={method!r} stops by ES-WMV, which needs no noise level; drop "
                 "noise_sigma, or use method='dip'")
    elif task not in SIGMA_TASKS:
        where = f"task={task!r} has no noise model to compare with; drop noise_sigma"
    elif early_stop is False:
        where = ("early_stop=False runs every iteration, so noise_sigma (which decides when "
                 "to stop) would be unused; drop one of them")
    elif not isinstance(early_stop, bool):
        where = (f"early_stop={early_stop!r} sets ES-WMV's patience, but with noise_sigma the "
                 "run stops when its residual reaches the noise level; drop one of them")
    if where:
        raise ValueError(f"noise_sigma={sigma:g}: {where}")
    if value_range is not None and sigma >= value_range:
        raise ValueError(
            f"noise_sigma={sigma:g} is not smaller than the image's whole value range "
            f"({value_range:g}); give the standard deviation in the image's units (8-bit "
            "data with noise of 25 grey levels: 25; the same data scaled to [0, 1]: 25/255)")
    return sigma


def check_array(array, what: str) -> np.ndarray:
    """``array`` as a numeric numpy array (not copied), refusing what no run can use."""
    a = np.asarray(array)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"{what} must be a numeric array, got dtype {a.dtype}")
    if np.iscomplexobj(a):
        raise ValueError(f"{what} is complex; pass its magnitude (np.abs) or real part instead")
    if a.size == 0:
        raise ValueError(f"{what} is empty (shape {a.shape}); pass an image of at least "
                         f"{MIN_SIZE}x{MIN_SIZE} pixels")
    return a


def build_request(
    image,
    task: str = "denoise",
    method: str = "dip",
    *,
    mask=None,
    factor: int | None = None,
    kernel=None,
    flash=None,
    iterations: int | None = None,
    early_stop: bool = True,
    preset: str = "fast",
    seed: int = 0,
    device: str = "auto",
    channel_axis: int | None = None,
    noise: str = "gaussian",
    noise_sigma: float | str | None = "auto",
    preview_every: int | None = None,
    **options,
) -> Request:
    """Validate the arguments of :func:`napari_dip.restore`; see there for their meaning."""
    _choice("task", task, TASKS)
    _choice("method", method, METHODS)
    _choice("preset", preset, PRESETS)
    _choice("noise model", noise, NOISE_MODELS)
    if channel_axis is not None and not isinstance(channel_axis, numbers.Integral):
        raise ValueError(f"channel_axis must be an integer axis index or None, got {channel_axis!r}")

    raw = np.asarray(image)
    img = _as_channels_first(raw, "image", channel_axis)
    if float(img.max()) == float(img.min()):
        raise ValueError(
            f"image is constant (every pixel is {img.flat[0]:g}); there is nothing to restore"
        )
    if noise == "poisson" and img.min() < 0:
        raise ValueError(
            "noise='poisson' needs non-negative photon counts, but the image has values down to "
            f"{img.min():g}; subtract the camera offset first or use noise='gaussian'"
        )
    h, w = img.shape[-2:]

    fill = None
    if task == "inpaint":
        if mask is None:
            raise ValueError("task='inpaint' needs a mask: an array of the image's Y, X shape, "
                             "nonzero at the pixels to fill")
        m = np.asarray(mask)
        if m.ndim == 3 and channel_axis is not None and m.shape == raw.shape:
            m = np.moveaxis(m, channel_axis, 0).any(axis=0)
        if m.shape != (h, w):
            raise ValueError(
                f"mask has shape {m.shape} but the image is {h}x{w} pixels (Y, X); "
                "pass a 2-D mask of the same Y, X shape, nonzero at the pixels to fill"
            )
        fill = m != 0
        if not fill.any():
            raise ValueError("mask marks no pixel to fill (it is all zero); mark the holes "
                             "with nonzero values")
        if fill.all():
            raise ValueError("mask marks every pixel to fill, so no known pixel is left; "
                             "nonzero must mean 'fill this pixel' (invert a 'known pixel' mask)")
    elif mask is not None:
        raise ValueError(f"mask is only used by task='inpaint', not task={task!r}; drop it")

    factor = check_factor(task, factor)
    k, kernel_name = check_kernel(task, kernel, (h, w))

    fl = None
    if task == "flash_no_flash":
        if flash is None:
            raise ValueError("task='flash_no_flash' needs flash=: the flash shot of the same "
                             "scene (image is the no-flash shot)")
        fl = _as_channels_first(flash, "flash image", channel_axis)
        if fl.shape[-2:] != (h, w):
            raise ValueError(
                f"flash image is {fl.shape[-2]}x{fl.shape[-1]} but the no-flash image is {h}x{w}; "
                "both shots must have the same size"
            )
        if float(fl.max()) == float(fl.min()):
            raise ValueError("flash image is constant; it cannot guide the restoration")
    elif flash is not None:
        raise ValueError(f"flash is only used by task='flash_no_flash', not task={task!r}")

    iterations, preview_every, patience, seed = check_numbers(iterations, preview_every,
                                                              early_stop, seed)
    noise_sigma = check_noise_sigma(noise_sigma, task=task, method=method, noise=noise,
                                    early_stop=early_stop,
                                    value_range=float(img.max() - img.min()))

    return Request(
        image=img, task=task, method=method, mask=fill, factor=factor, kernel=k,
        kernel_name=kernel_name, flash=fl, iterations=iterations, early_stop=bool(early_stop),
        patience=patience, preset=preset, seed=int(seed), device=device,
        channel_axis=channel_axis, noise=noise,
        preview_every=preview_every, input_shape=tuple(raw.shape), input_dtype=str(raw.dtype),
        options=dict(options), noise_sigma=noise_sigma,
    )
