"""The registry of tasks and noise models: each inverse problem is declared once, here.

A :class:`Task` says what the problem needs from the user (its inputs), how its degradation
operator ``A`` is built, which methods and run modes apply, whether its data term can be
compared with a Gaussian noise level (discrepancy-principle stopping), and the per-task
defaults of methods that need them (DeepRED's weights). Every other module reads this
registry instead of comparing task names. Torch-free: the operator builders import
:mod:`napari_dip.operators` only when a run builds its problem.

To add a task, write its operator (``operators.py``), add its entry to :data:`TASKS` and its
lines to both presets (``presets.py``); a new kind of input also needs its check in
``request.py``, a widget control and a CLI option.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Inputs a task can need besides the image, each checked in :mod:`napari_dip.request`.
INPUTS = ("mask", "factor", "kernel", "boundary", "flash")
#: Boundaries of a blur (``boundary=``): ``"valid"``, the estimate extends beyond the
#: measurement by the kernel's half-width (real images); ``"circular"``, the blur wraps
#: around the borders (synthetic data blurred that way).
BOUNDARIES = ("valid", "circular")
#: Run modes: ``"slices"`` (planes one after the other), ``"volume"`` (3-D network),
#: ``"tiles"`` (large planes in overlapping tiles).
MODES = ("slices", "volume", "tiles")


@dataclass(frozen=True)
class DeepREDDefaults:
    """Per-task DeepRED settings. ``lr`` / ``input_noise`` None keep the preset's.

    ``x_init`` is the ADMM variable's start: ``"measurement"``, ``"bicubic"`` (its
    upsampling) or ``"nearest"`` (holes filled from their nearest known pixel);
    ``estimate`` is what the run returns: ``"ema"`` (the network's averaged output) or
    ``"x_minus_u"`` (the ADMM estimate, as in the reference code)."""

    lam: float
    mu: float
    sigma: float  # denoiser noise level, normalised units
    lr: float | None
    input_noise: float | None
    x_init: str
    estimate: str = "x_minus_u"


@dataclass(frozen=True)
class OperatorInputs:
    """What an operator builder gets: the problem's data in the network's padded layout.

    ``known`` is the padded (H, W) or (D, H, W) float array of known pixels (inpainting),
    ``kernel`` the normalised blur kernel (2-D, or 3-D for a volume), ``measured`` the
    padded bool array of where the measurement holds data (a valid boundary; None:
    everywhere), ``factor`` / ``z_factor`` the estimate/measurement size ratios in-plane and
    along Z, ``spatial_dims`` 2 or 3."""

    spatial_dims: int
    factor: int = 1
    z_factor: int = 1
    known: np.ndarray | None = None
    kernel: np.ndarray | None = None
    measured: np.ndarray | None = None


def _identity(_: OperatorInputs):
    from .operators import Identity

    return Identity()


def _mask(p: OperatorInputs):
    from .operators import Mask

    return Mask(p.known, spatial_dims=p.spatial_dims)


def _downsample(p: OperatorInputs):
    from .operators import Downsample, DownsampleZ

    return DownsampleZ(p.z_factor) if p.spatial_dims == 3 else Downsample(p.factor)


def _blur(p: OperatorInputs):
    from .operators import Blur, Blur3D

    if p.spatial_dims == 3:
        return Blur3D(p.kernel, p.measured)
    return Blur(p.kernel, p.measured)


@dataclass(frozen=True)
class Task:
    """One inverse problem.

    ``inputs``: the arguments of :func:`napari_dip.restore` it needs besides the image
    (from :data:`INPUTS`). ``methods``: the methods that run it, beyond those that run every
    task; ``method_defaults`` holds their per-task settings by method name. ``modes``: the
    run modes it allows. ``squared_residual``: its data term is a mean squared residual that
    the discrepancy principle can compare with the noise variance. ``noise_estimable``: the
    measurement's finest scales hold its noise, so ``noise_sigma="auto"`` can estimate it
    (the wavelet estimate fails on holes, low-resolution and blurred data).
    ``back_project``: results are corrected to reproduce the measurement
    (:mod:`napari_dip.consistency`), down to the noise level the run was given."""

    name: str
    label: str  # short, for layer names: "super-resolution"
    description: str  # for pickers: "super-resolution (more pixels)"
    operator: Callable[[OperatorInputs], Any]
    inputs: tuple[str, ...] = ()
    modes: tuple[str, ...] = ("slices", "tiles")
    squared_residual: bool = True
    noise_estimable: bool = False
    method_defaults: Mapping[str, Any] = field(default_factory=dict)
    factors: tuple[int, ...] = ()  # super-resolution factors in-plane
    volume_factors: tuple[int, ...] = ()  # ... and along Z in mode="volume"
    untiled_reason: str = ""  # why "tiles" is not in ``modes``, for the error message
    back_project: bool = False

    def needs(self, name: str) -> bool:
        return name in self.inputs


#: From the DeepRED reference code (Mataev, Elad, Milanfar 2019: denoising, deblurring,
#: super-resolution). Inpainting is not in the paper; its values are ours: the
#: super-resolution weights (a mild prior, since the known pixels are exact), the denoiser at
#: 3/255, and the DIP preset's learning rate and perturbation (the preset's inpainting
#: network needs them), x started from the measurement with each hole filled from its
#: nearest known pixel.
TASKS: dict[str, Task] = {
    "denoise": Task(
        "denoise", "denoise", "denoise", _identity, modes=("slices", "volume", "tiles"),
        noise_estimable=True,
        method_defaults={"deepred": DeepREDDefaults(
            lam=0.5, mu=0.5, sigma=3 / 255, lr=0.008, input_noise=0.033,
            x_init="measurement", estimate="ema")}),
    "inpaint": Task(
        "inpaint", "inpaint", "inpaint (fill masked pixels)", _mask, inputs=("mask",),
        modes=("slices", "volume", "tiles"),
        method_defaults={"deepred": DeepREDDefaults(
            lam=0.05, mu=0.06, sigma=3 / 255, lr=None, input_noise=None, x_init="nearest")}),
    "super_resolution": Task(
        "super_resolution", "super-resolution", "super-resolution", _downsample,
        inputs=("factor",), modes=("slices", "volume", "tiles"), factors=(2, 4, 8),
        volume_factors=(2, 3, 4, 5, 6, 7, 8), back_project=True,
        method_defaults={"deepred": DeepREDDefaults(
            lam=0.05, mu=0.06, sigma=5 / 255, lr=0.001, input_noise=None,
            x_init="bicubic")}),
    # Deconvolution: a 2-D kernel, or a 3-D PSF in mode="volume"; tiles overlap by at least
    # the kernel's size (request.py), and boundary="circular" is not tiled (it would wrap
    # around each tile's borders and leave seams).
    "deblur": Task(
        "deblur", "deblur", "deblur", _blur, inputs=("kernel", "boundary"),
        modes=("slices", "volume", "tiles"),
        method_defaults={"deepred": DeepREDDefaults(
            lam=0.02, mu=0.04, sigma=3 / 255, lr=0.004, input_noise=None,
            x_init="measurement")}),
    # The flash shot is the network's input, not a measurement: no squared residual to
    # compare with a noise level.
    "flash_no_flash": Task(
        "flash_no_flash", "flash/no-flash", "flash / no-flash", _identity, inputs=("flash",),
        squared_residual=False),
}


@dataclass(frozen=True)
class NoiseModel:
    """A noise model (the likelihood's name; the objects are in
    :mod:`napari_dip.likelihoods`). ``has_sigma``: Gaussian, with a standard deviation the
    discrepancy principle can stop at; ``non_negative``: the data must be >= 0 (counts,
    magnitudes), and the network's [0, 1] maps to [0, max] so that zero stays zero;
    ``likelihood_sigma``: the likelihood itself needs the noise's standard deviation
    (``noise_sigma``, or ``"auto"``: estimated from the image's background), and results
    may go below the data's minimum, down to 0 (a magnitude image's dark floor is noise).
    ``output_floor``: the network's (0, 1) output is stretched to (-floor, 1) in the
    normalised units, so that 0 lies inside the sigmoid's range instead of at its asymptote
    (the likelihood reads anything below 0 as 0, and results are clipped there)."""

    name: str
    label: str
    has_sigma: bool
    non_negative: bool = False
    likelihood_sigma: bool = False
    output_floor: float = 0.0


#: Rician's output floor: the Rician likelihood is flat about a magnitude of 0, so a sigmoid
#: output crept towards its asymptote and left the MRI sample's background at 0.013 after
#: 1500 steps. Stretched by 0.2 it reached 0.0001 and PSNR rose 34.95 -> 37.45 dB (64 px at
#: sigma 0.10: 28.19 -> 29.06, background 0.025 -> 0.002); on the anatomical.nii slice,
#: which has no background, -0.08 / -0.14 dB (sigma 0.05 / 0.10), within seed-to-seed
#: spread. Floors 0.02 / 0.05 / 0.1 gave 36.45 / 36.16 / 36.75 dB on the sample (one seed,
#: one thread, 2026-12-07; benchmarks/results/mri.md has the default's rows).
NOISE_MODELS: dict[str, NoiseModel] = {
    "gaussian": NoiseModel("gaussian", "Gaussian", has_sigma=True),
    "poisson": NoiseModel("poisson", "Poisson (photon counts)", has_sigma=False,
                          non_negative=True),
    "rician": NoiseModel("rician", "Rician (magnitude MRI)", has_sigma=False,
                         non_negative=True, likelihood_sigma=True, output_floor=0.2),
}


def choice(kind: str, value, registry: Mapping[str, Any]):
    """``registry[value]``, or a ValueError listing the choices."""
    if not isinstance(value, str) or value not in registry:
        raise ValueError(f"unknown {kind} {value!r}; choose one of: {', '.join(registry)}")
    return registry[value]


def get_task(name) -> Task:
    return choice("task", name, TASKS)


def get_noise_model(name) -> NoiseModel:
    return choice("noise model", name, NOISE_MODELS)


def tasks_needing(name: str) -> list[str]:
    """Names of the tasks that take the input ``name``."""
    return [t.name for t in TASKS.values() if t.needs(name)]


__all__ = ["BOUNDARIES", "INPUTS", "MODES", "NOISE_MODELS", "TASKS", "DeepREDDefaults",
           "NoiseModel", "OperatorInputs", "Task", "choice", "get_noise_model", "get_task",
           "tasks_needing"]
