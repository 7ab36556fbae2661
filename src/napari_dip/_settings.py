"""What the dock widget's controls hold, and how it maps to :func:`napari_dip.restore`
arguments. No Qt and no napari here (nor torch), so the mapping is tested without a display.

:class:`WidgetSettings` has one field per control; :func:`restore_arguments` turns it, and a
description of the viewer's layers, into keyword arguments, arrays and layer names. The
engine's rules (which inputs a task needs, when a noise level applies) are read from the
registries in :mod:`napari_dip.tasks` and :mod:`napari_dip.methods`, never re-encoded here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ._layers import layer_axes
from .methods import METHODS, noise_level_applies
from .stacks import runs_in_parts
from .tasks import BOUNDARIES, NOISE_MODELS, TASKS

#: Choices of the widget's combo boxes: (text shown, value).
TASK_CHOICES = [(task.description, task.name) for task in TASKS.values()]
METHOD_CHOICES = [(method.description, method.name) for method in METHODS.values()]
FACTOR_CHOICES = [(f"x{factor}", factor) for factor in TASKS["super_resolution"].factors]
KERNEL_CHOICES = [("Gaussian (25x25, sigma 1.6 px)", "gaussian"),
                  ("uniform (9x9 box)", "uniform"),
                  ("PSF from an Image layer", "layer"),
                  ("PSF modelled from the objective", "model")]
#: The kernel choices that are names of :func:`napari_dip.restore`'s kernels.
KERNEL_NAMES = ("gaussian", "uniform")
BOUNDARY_CHOICES = [(text, name) for text, name in (
    ("valid (real images: no ringing at the edges)", "valid"),
    ("circular (the blur wraps around)", "circular")) if name in BOUNDARIES]
PRESET_CHOICES = [("fast (laptop friendly)", "fast"), ("paper (DIP paper settings)", "paper")]
DENOISER_CHOICES = [("non-local means", "nlm"), ("BM3D", "bm3d"), ("total variation", "tv")]
SIGMA_CHOICES = [("task default", "default"), ("estimate (auto)", "auto"),
                 ("fixed value", "fixed")]
STOP_LEVEL_CHOICES = [("estimate from the image", "auto"), ("known value", "fixed"),
                      ("unknown (ES-WMV)", "none")]
NOISE_CHOICES = [(model.label, model.name) for model in NOISE_MODELS.values()]
STACK_CHOICES = [("2-D per plane", "slices"), ("3-D volume", "volume"),
                 ("only the current plane", "plane")]
TILE_CHOICES = [("none", "none"), ("automatic (fits memory)", "auto"), ("fixed size", "fixed")]


@dataclass
class WidgetSettings:
    """The value of every control of the widget (defaults: the widget's when it opens).

    ``image``, ``mask`` and ``flash`` are layer names (None when there is none to pick);
    ``iterations_from_preset`` is True until the user types an iteration limit: the run then
    takes the preset's (which may depend on the mask's holes)."""

    method: str = "dip"
    image: str | None = None
    stack_mode: str = "slices"  # "slices", "volume" or "plane" (stacks only)
    task: str = "denoise"
    noise: str = "gaussian"
    mask: str | None = None
    factor: int = 4
    kernel: str = "gaussian"  # a name, "layer" (psf_layer) or "model" (the psf_ values)
    boundary: str = "valid"
    psf_layer: str | None = None  # an Image layer: a 2-D PSF, or a 3-D one for volumes
    psf_na: float = 1.4  # the modelled PSF's objective (napari_dip.psf), lengths in um
    psf_wavelength: float = 0.52
    psf_pixel_size: float = 0.1
    psf_z_step: float = 0.2  # 3-D volumes only
    psf_ni: float = 1.515
    flash: str | None = None
    preset: str = "fast"
    iterations: int = 1500
    iterations_from_preset: bool = True
    early_stop: bool = True
    noise_level: str = "auto"  # "auto", "fixed" (noise_sigma) or "none" (ES-WMV)
    noise_sigma: float = 0.1
    warm_start: bool = True
    tiling: str = "none"  # "none", "auto" or "fixed" (tile_size, tile_overlap)
    tile_size: int = 512
    tile_overlap: int = 128
    device: str = "auto"
    seed: int = 0
    ensemble: int = 0  # K fits averaged (0: the engine's "auto"); K > 1 adds the
    # uncertainty layer
    blend: bool = True  # blended with the classical method where one applies
    denoiser: str = "nlm"
    sigma_mode: str = "default"  # "default", "auto" or "fixed" (denoiser_sigma)
    denoiser_sigma: float = 0.02
    preview_every: int = 25
    keep_stack: bool = False
    stack_every: int = 50


class LayerLike(Protocol):
    """What :func:`restore_arguments` reads from a layer (napari layers have it all);
    ``ndim`` (dimensions without the RGB axis) and ``axis_labels`` are optional."""

    data: Any
    rgb: bool
    scale: Sequence[float]
    multiscale: bool


#: The index of the plane on screen on a layer's leading axes, or a function of the layer
#: that gives it (the widget reads it from the viewer's dims).
Plane = Sequence[int] | Callable[[Any], Sequence[int]] | None


def layer_data(layer) -> np.ndarray:
    """A layer's pixels (the full resolution of a multiscale layer)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return np.asarray(data)


def spatial_ndim(layer) -> int:
    """Dimensions of an image layer without its RGB axis."""
    ndim = getattr(layer, "ndim", None)
    if ndim is None:
        ndim = np.ndim(layer_data(layer)) - (1 if layer.rgb else 0)
    return int(ndim)


def axes_of(layer) -> str:
    """The ``axes`` string of an image layer; ValueError for more than four dimensions."""
    return layer_axes(spatial_ndim(layer), bool(layer.rgb), getattr(layer, "axis_labels", None))


def stack_mode_for(settings: WidgetSettings, axes: str | None) -> str | None:
    """The stack mode a run uses: None for a single plane (or no image)."""
    stack = axes is not None and len(axes.replace("C", "")) > 2
    return settings.stack_mode if stack else None


def tiles_for(settings: WidgetSettings, mode: str | None) -> bool:
    """Whether a run in stack mode ``mode`` is split into tiles (volumes never are)."""
    return mode != "volume" and settings.tiling != "none"


def warm_start_applies(settings: WidgetSettings, axes: str | None) -> bool:
    """Whether the run has parts that can each start from the previous one (the engine's
    rule, :func:`napari_dip.stacks.runs_in_parts`): the planes of a stack, the time points
    of a volume, or tiles. "Only the current plane" restores one plane."""
    mode = stack_mode_for(settings, axes)
    run_axes = axes if mode in ("slices", "volume") else ""
    return runs_in_parts(run_axes, mode, tiles_for(settings, mode))


def noise_level_for(settings: WidgetSettings) -> bool:
    """Whether the noise level applies: the run can stop at it (the engine's rule), or the
    noise model's likelihood needs it (Rician: estimated from the background, or known)."""
    return NOISE_MODELS[settings.noise].likelihood_sigma or noise_level_applies(
        settings.task, settings.method, settings.noise, bool(settings.early_stop))


def stack_every_for(settings: WidgetSettings, kwargs: Mapping[str, Any]) -> int | None:
    """How often a run keeps its estimate for the iteration stack (single images only)."""
    single = "axes" not in kwargs and "tile" not in kwargs
    return int(settings.stack_every) if settings.keep_stack and single else None


def _find(layers: Mapping[str, Any], name: str | None):
    return None if name is None else layers.get(name)


def restore_arguments(settings: WidgetSettings, layers: Mapping[str, Any], plane: Plane = None
                      ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """What ``settings`` ask for: (JSON-able keyword arguments of :func:`napari_dip.restore`,
    arrays by argument name, layer names by argument name, plus ``"plane"``, the index of
    the plane restored alone, for "only the current plane").

    ``layers`` maps layer names to layers (napari's, or anything with ``data``, ``rgb``,
    ``scale``, ``multiscale`` and optionally ``ndim`` and ``axis_labels``). ``plane`` is the
    index of the plane on screen (or a function of the image layer that gives it), used only
    for "only the current plane"; without it that is the first plane. Raises ValueError with
    a message for the user when a layer is missing."""
    layer = _find(layers, settings.image)
    if layer is None:
        raise ValueError("choose an Image layer to restore (open one, or File > Open "
                         "Sample > napari-dip)")
    kwargs: dict[str, Any] = {
        "task": settings.task, "method": settings.method, "preset": settings.preset,
        # None lets the engine take the preset's (which may depend on the mask's holes)
        "iterations": None if settings.iterations_from_preset else int(settings.iterations),
        "early_stop": bool(settings.early_stop), "seed": int(settings.seed),
        "device": settings.device, "noise": settings.noise,
        "channel_axis": -1 if layer.rgb else None,
    }
    if int(settings.ensemble) > 0:  # "auto" (0, the default) stays out of the repeatable call
        kwargs["ensemble"] = int(settings.ensemble)
    arrays = {"image": layer_data(layer)}
    inputs: dict[str, Any] = {"image": settings.image}
    _add_task_inputs(settings, layers, kwargs, arrays, inputs)
    _add_method_options(settings, kwargs)
    _add_stack_and_tiles(settings, layer, plane, kwargs, arrays, inputs)
    return kwargs, arrays, inputs


def _add_task_inputs(settings: WidgetSettings, layers: Mapping[str, Any],
                     kwargs: dict[str, Any], arrays: dict[str, np.ndarray],
                     inputs: dict[str, Any]) -> None:
    """The inputs the task declares it needs (:attr:`napari_dip.tasks.Task.inputs`)."""
    task = TASKS[settings.task]
    if task.needs("mask"):
        mask_layer = _find(layers, settings.mask)
        if mask_layer is None:
            raise ValueError("inpainting needs a mask: add a Labels layer and paint the "
                             "pixels to fill (labels > 0), then choose it as 'mask'")
        arrays["mask"] = layer_data(mask_layer) > 0
        inputs["mask"] = settings.mask
    if task.needs("factor"):
        kwargs["factor"] = int(settings.factor)
    if task.needs("kernel"):
        _add_kernel(settings, layers, kwargs, arrays, inputs)
    if task.needs("boundary"):
        kwargs["boundary"] = settings.boundary
    if task.needs("flash"):
        flash_layer = _find(layers, settings.flash)
        if flash_layer is None:
            raise ValueError("flash/no-flash needs the flash shot as a second Image layer")
        arrays["flash"] = layer_data(flash_layer)
        inputs["flash"] = settings.flash


def psf_parameters(settings: WidgetSettings, volume: bool) -> dict[str, Any]:
    """The keyword arguments of :func:`napari_dip.psf` for the modelled PSF (z_step only
    for a 3-D volume)."""
    params = {"na": float(settings.psf_na), "wavelength": float(settings.psf_wavelength),
              "pixel_size": float(settings.psf_pixel_size), "ni": float(settings.psf_ni)}
    if volume:
        params["z_step"] = float(settings.psf_z_step)
    return params


def _add_kernel(settings: WidgetSettings, layers: Mapping[str, Any], kwargs: dict[str, Any],
                arrays: dict[str, np.ndarray], inputs: dict[str, Any]) -> None:
    """The blur kernel: a name (a keyword argument), or an array (``arrays["kernel"]``):
    a PSF layer's pixels or the PSF modelled from the objective at the run's sampling."""
    if settings.kernel in KERNEL_NAMES:
        kwargs["kernel"] = settings.kernel
        return
    image = layers[settings.image]
    volume = stack_mode_for(settings, axes_of(image)) == "volume"
    if settings.kernel == "layer":
        psf_layer = _find(layers, settings.psf_layer)
        if psf_layer is None:
            raise ValueError("choose the Image layer that holds the PSF (an image of a bead: "
                             "2-D, or a 3-D Z-stack for '3-D volume' runs)")
        arrays["kernel"] = np.asarray(layer_data(psf_layer), dtype=np.float64)
        inputs["kernel"] = settings.psf_layer
        return
    from .psf_model import psf, spacing_mismatch

    params = psf_parameters(settings, volume)
    if volume:
        why = spacing_mismatch(params["z_step"], params["pixel_size"],
                               [float(v) for v in image.scale[-3:]])
        if why is not None:
            raise ValueError(f"modelled PSF: {why}")
    arrays["kernel"] = psf(**params)
    inputs["psf_model"] = params


def _add_method_options(settings: WidgetSettings, kwargs: dict[str, Any]) -> None:
    """The stopping noise level (where it applies), the blend (when turned off) and
    DeepRED's options."""
    if noise_level_for(settings):
        kwargs["noise_sigma"] = {"auto": "auto", "none": None}.get(
            settings.noise_level, float(settings.noise_sigma))
    if not settings.blend:
        kwargs["blend"] = False
    if settings.method == "deepred":
        kwargs["denoiser"] = settings.denoiser
        if settings.sigma_mode == "auto":
            kwargs["denoiser_sigma"] = "auto"
        elif settings.sigma_mode == "fixed":
            kwargs["denoiser_sigma"] = float(settings.denoiser_sigma)


def _add_stack_and_tiles(settings: WidgetSettings, layer, plane: Plane,
                         kwargs: dict[str, Any], arrays: dict[str, np.ndarray],
                         inputs: dict[str, Any]) -> None:
    """Stacks (planes, volume or the plane on screen) and tiles."""
    axes = axes_of(layer)
    leading = len(axes.replace("C", "")) - 2
    mode = stack_mode_for(settings, axes)
    if mode == "plane":
        if callable(plane):
            plane = plane(layer)
        index = tuple(plane) if plane is not None else (0,) * leading
        for name, array in arrays.items():  # the kernel is the same for every plane
            if name == "image" or (name != "kernel" and np.ndim(array) >= leading + 2):
                arrays[name] = np.asarray(array[index])
        inputs["plane"] = list(index)
    elif mode is not None:
        kwargs.pop("channel_axis")
        kwargs.update(axes=axes, mode=mode)
        if mode == "volume":
            kwargs["spacing"] = [float(v) for v in layer.scale[-3:]]
    if tiles_for(settings, mode):
        if settings.tiling == "auto":
            kwargs["tile"] = "auto"
        else:
            kwargs["tile"] = int(settings.tile_size)
            kwargs["overlap"] = min(int(settings.tile_overlap), int(settings.tile_size) // 2)
    if warm_start_applies(settings, axes):  # more than one part
        kwargs["warm_start"] = bool(settings.warm_start)


__all__ = ["BOUNDARY_CHOICES", "DENOISER_CHOICES", "FACTOR_CHOICES", "KERNEL_CHOICES",
           "KERNEL_NAMES", "METHOD_CHOICES", "NOISE_CHOICES", "PRESET_CHOICES", "SIGMA_CHOICES",
           "STACK_CHOICES", "STOP_LEVEL_CHOICES", "TASK_CHOICES", "TILE_CHOICES", "LayerLike",
           "WidgetSettings", "axes_of", "layer_data", "noise_level_for", "psf_parameters",
           "restore_arguments", "spatial_ndim", "stack_every_for", "stack_mode_for",
           "tiles_for", "warm_start_applies"]
