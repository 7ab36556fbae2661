"""From a validated :class:`~napari_dip.request.Request` to tensors a solver can fit:
normalised measurement ``y``, operator ``A``, padding and the way back to the input's range."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .architecture import NetworkConfig, padded_layout, padded_length, padded_size, size_factors
from .consistency import back_project
from .operators import Operator
from .plan import Request
from .presets import largest_hole_radius
from .tasks import TASKS, OperatorInputs, get_noise_model

#: Re-exported: the padding rules (``architecture``) and the hole measure (``presets``).
__all__ = ["Problem", "Scaling", "build_problem", "largest_hole_radius", "padded_length",
           "padded_size", "to_output", "to_outputs", "to_spread"]


@dataclass(frozen=True)
class Scaling:
    """Affine map between the input's values and the network's [0, 1] range.

    ``normalised = (value - offset) / scale``. Results are mapped back and clipped to the
    input's own [low, high], so they never leave the range the data had.
    """

    offset: float
    scale: float
    low: float
    high: float

    @classmethod
    def fit(cls, data: np.ndarray, noise: str = "gaussian",
            value_range: tuple[float, float] | None = None) -> Scaling:
        """Map ``data``'s own [min, max] (or ``value_range``, e.g. the whole image's range for
        one of its tiles) to [0, 1]."""
        if value_range is None:
            low, high = float(data.min()), float(data.max())
        else:
            low, high = float(value_range[0]), float(value_range[1])
        model = get_noise_model(noise)
        if model.non_negative:
            # Counts and magnitudes keep their zero: a Poisson likelihood is only right for
            # rate * constant, a Rician one for magnitudes. A Rician result may go below the
            # data's minimum (the magnitude's noise floor), down to zero.
            return cls(0.0, high, 0.0 if model.likelihood_sigma else low, high)
        return cls(low, high - low, low, high)

    def forward(self, data: np.ndarray) -> np.ndarray:
        return (data - self.offset) / self.scale

    def inverse(self, data: np.ndarray) -> np.ndarray:
        return np.clip(data * self.scale + self.offset, self.low, self.high)


@dataclass
class Problem:
    """Everything in the network's units, padded. Shapes: ``y`` (1, C, h, w) with h, w the
    padded measurement size; estimates are (1, C, h * factor, w * factor). Volumes:
    ``y`` (1, C, d, h, w), estimates (1, C, d * z_factor, h, w), and ``z_strides`` (the 3-D
    network's stride along Z at each scale) is set."""

    y: torch.Tensor
    operator: Operator
    scaling: Scaling
    factor: int
    crop: tuple[slice, ...]  # in estimate (high-resolution) pixels, one per spatial axis
    guide: torch.Tensor | None  # the flash shot, normalised and padded, for flash/no-flash
    known: np.ndarray | None  # (H, W) or (D, H, W) bool, known pixels of an inpainting problem
    z_factor: int = 1
    z_strides: tuple[int, ...] | None = None
    #: A valid boundary's ``y`` is 0 outside the measurement's window; this is the
    #: measurement padded by reflection instead, to start estimates from (DeepRED's x).
    start: torch.Tensor | None = None
    #: Tasks that back-project (super-resolution) with noise of a standard deviation
    #: (Gaussian, ``NoiseModel.has_sigma``): the residual's root mean square, in the
    #: network's units, that results are corrected down to (0: as far as the correction
    #: goes; the noise level the run was given otherwise). None: no correction (other
    #: tasks, and Poisson or Rician data, whose noise it would bring back).
    back_project_floor: float | None = None

    @property
    def channels(self) -> int:
        return self.y.shape[1]

    @property
    def volume(self) -> bool:
        return self.y.ndim == 5

    @property
    def factors(self) -> tuple[int, ...]:
        """Estimate/measurement size ratio along each spatial axis."""
        return size_factors(self.y.ndim - 2, self.factor, self.z_factor)

    @property
    def estimate_shape(self) -> tuple[int, ...]:
        n, c, *spatial = self.y.shape
        return (n, c, *(s * f for s, f in zip(spatial, self.factors, strict=True)))


def _pad(a: np.ndarray, before: tuple[int, ...], after: tuple[int, ...]) -> np.ndarray:
    k = len(before)
    widths = [(0, 0)] * (a.ndim - k) + list(zip(before, after, strict=True))
    return np.pad(a, widths, mode="reflect")


def build_problem(request: Request, config: NetworkConfig, device: torch.device) -> Problem:
    """Normalise, pad and move the request's data to ``device``; the operator is the one the
    task registry builds."""
    spatial = tuple(request.spatial_shape)
    f, fz = request.factor, request.z_factor
    factors = size_factors(len(spatial), f, fz)
    padded, strides = padded_layout(spatial, f, fz, request.spacing, config,
                                    request.margin(len(spatial)))
    before = tuple((p - n) // 2 for p, n in zip(padded, spatial, strict=True))
    after = tuple(p - n - b for p, n, b in zip(padded, spatial, before, strict=True))

    scaling = Scaling.fit(request.image, request.noise, request.value_range)
    y = _pad(scaling.forward(request.image), before, after)
    known = None
    known_padded = None
    if request.mask is not None:
        known = ~request.mask
        known_padded = _pad(known.astype(np.float32), before, after)
        y = y * _pad(known.astype(np.float64), before, after)
    start = measured = None
    if request.boundary == "valid":  # the margin holds no data: y is 0 there
        measured = np.zeros(padded, dtype=bool)
        measured[tuple(slice(b, b + n) for b, n in zip(before, spatial, strict=True))] = True
        start = torch.as_tensor(y[None], dtype=torch.float32, device=device)
        y = y * measured
    op = TASKS[request.task].operator(OperatorInputs(
        spatial_dims=len(spatial), factor=f, z_factor=fz, known=known_padded,
        kernel=request.kernel, measured=measured))

    guide = None
    if request.flash is not None:
        g = Scaling.fit(request.flash).forward(request.flash)
        guide = torch.as_tensor(_pad(g, before, after)[None], dtype=torch.float32, device=device)

    crop = tuple(slice(b * k, (b + n) * k) for b, n, k in zip(before, spatial, factors,
                                                                strict=True))
    floor = None
    if TASKS[request.task].back_project and get_noise_model(request.noise).has_sigma:
        given = request.noise_sigma
        floor = float(given) / scaling.scale if isinstance(given, (int, float)) else 0.0
    return Problem(
        y=torch.as_tensor(y[None], dtype=torch.float32, device=device),
        operator=op.to(device), scaling=scaling, factor=f, crop=crop, guide=guide, known=known,
        z_factor=fz, z_strides=strides, start=start, back_project_floor=floor,
    )


def to_output(estimate: torch.Tensor, problem: Problem, request: Request) -> np.ndarray:
    """Padded normalised estimate (1, C, ...) -> float32 array in the input's range and layout
    (finite: a non-finite estimate raises FloatingPointError).

    For inpainting the known pixels keep their measured values; only the holes are filled.
    Super-resolution's estimate is back-projected first (:mod:`napari_dip.consistency`), so
    a result reproduces its measurement down to the noise level the run was given.
    """
    estimate = estimate[:1]
    if problem.back_project_floor is not None:
        estimate = back_project(estimate, problem.operator, problem.y,
                                problem.back_project_floor)
    x = _cropped(estimate, problem)[0]
    if problem.known is not None:
        x = np.where(problem.known, request.image, x)
    return in_layout(x, request)


def _cropped(estimates: torch.Tensor, problem: Problem) -> np.ndarray:
    """Padded normalised estimates (N, C, ...) -> float64 (N, C, ...) cropped to the image
    and in the input's range (finite: a non-finite value raises FloatingPointError)."""
    x = estimates.detach()[(slice(None), slice(None), *problem.crop)].float().cpu().numpy()
    if not np.isfinite(x).all():  # clipping would keep a NaN: never hand one out
        raise FloatingPointError(
            f"the estimate has {int(np.count_nonzero(~np.isfinite(x)))} NaN or infinite "
            "value(s); lower the learning rate or check the input for extreme values")
    return problem.scaling.inverse(x.astype(np.float64))


def in_layout(x: np.ndarray, request: Request) -> np.ndarray:
    """(C, ...) -> float32 in the request's layout (its channel axis, or none)."""
    if request.channel_axis is None:
        x = x[0]
    else:
        x = np.moveaxis(x, 0, request.channel_axis)
    return np.ascontiguousarray(x, dtype=np.float32)


def to_spread(members: torch.Tensor, problem: Problem, request: Request) -> np.ndarray:
    """An ensemble's padded normalised member estimates (K, C, ...), K >= 2 -> their
    per-pixel sample standard deviation (ddof=1) in the input's units and layout, float32,
    the shape of :func:`to_output`'s result. Each member is mapped to the input's range
    first (as its own result would be); inpainting's known pixels keep the members' spread
    (the result holds the measurement there)."""
    if members.shape[0] < 2:
        raise ValueError("a spread needs at least two members")
    return in_layout(_cropped(members, problem).std(axis=0, ddof=1), request)


def to_outputs(members: torch.Tensor, problem: Problem, request: Request
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """(image, uncertainty) of a run's kept estimate: for one member (N = 1) its
    :func:`to_output` and None; for an ensemble (K, C, ...) the members' mean and
    :func:`to_spread`."""
    if members.shape[0] == 1:
        return to_output(members, problem, request), None
    return (to_output(members.mean(dim=0, keepdim=True), problem, request),
            to_spread(members, problem, request))
