"""From a validated :class:`~napari_dip.request.Request` to tensors a solver can fit:
normalised measurement ``y``, operator ``A``, padding and the way back to the input's range."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from .architecture import NetworkConfig
from .operators import Blur, Downsample, Identity, Mask, Operator
from .request import Request


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
    def fit(cls, data: np.ndarray, noise: str = "gaussian") -> "Scaling":
        low, high = float(data.min()), float(data.max())
        if noise == "poisson":
            # Counts keep their zero: a Poisson likelihood is only right for rate * constant.
            return cls(0.0, high, low, high)
        return cls(low, high - low, low, high)

    def forward(self, data: np.ndarray) -> np.ndarray:
        return (data - self.offset) / self.scale

    def inverse(self, data: np.ndarray) -> np.ndarray:
        return np.clip(data * self.scale + self.offset, self.low, self.high)


def padded_size(size: int, factor: int, config: NetworkConfig) -> int:
    """Measurement-side length after padding so that ``length * factor`` suits the network."""
    m = config.size_multiple
    target = max(math.ceil(size * factor / m) * m, config.min_size)
    target = math.ceil(target / (m * factor)) * m * factor if target % factor else target
    return target // factor


def largest_hole_radius(fill: np.ndarray) -> float:
    """Largest distance (pixels) from a pixel to fill to the nearest known pixel."""
    return float(ndimage.distance_transform_edt(fill).max())


@dataclass
class Problem:
    """Everything in the network's units, padded. Shapes: ``y`` (1, C, h, w) with h, w the
    padded measurement size; estimates are (1, C, h * factor, w * factor)."""

    y: torch.Tensor
    operator: Operator
    scaling: Scaling
    factor: int
    crop: tuple[slice, slice]  # in estimate (high-resolution) pixels
    guide: torch.Tensor | None  # the flash shot, normalised and padded, for flash/no-flash
    known: np.ndarray | None  # (H, W) bool, known pixels of an inpainting problem

    @property
    def channels(self) -> int:
        return self.y.shape[1]

    @property
    def estimate_shape(self) -> tuple[int, int, int, int]:
        n, c, h, w = self.y.shape
        return (n, c, h * self.factor, w * self.factor)


def _pad(a: np.ndarray, before: tuple[int, int], after: tuple[int, int]) -> np.ndarray:
    widths = [(0, 0)] * (a.ndim - 2) + [(before[0], after[0]), (before[1], after[1])]
    return np.pad(a, widths, mode="reflect")


def build_problem(request: Request, config: NetworkConfig, device: torch.device) -> Problem:
    """Normalise, pad and move the request's data to ``device``."""
    f = request.factor
    h, w = request.spatial_shape
    hp, wp = padded_size(h, f, config), padded_size(w, f, config)
    before = ((hp - h) // 2, (wp - w) // 2)
    after = (hp - h - before[0], wp - w - before[1])

    scaling = Scaling.fit(request.image, request.noise)
    y = _pad(scaling.forward(request.image), before, after)

    known = None
    if request.task == "inpaint":
        known = ~request.mask
        op: Operator = Mask(_pad(known.astype(np.float32), before, after))
        y = y * _pad(known.astype(np.float64), before, after)
    elif request.task == "super_resolution":
        op = Downsample(f)
    elif request.task == "deblur":
        op = Blur(request.kernel)
    else:
        op = Identity()

    guide = None
    if request.flash is not None:
        g = Scaling.fit(request.flash).forward(request.flash)
        guide = torch.as_tensor(_pad(g, before, after)[None], dtype=torch.float32, device=device)

    crop = (slice(before[0] * f, (before[0] + h) * f), slice(before[1] * f, (before[1] + w) * f))
    return Problem(
        y=torch.as_tensor(y[None], dtype=torch.float32, device=device),
        operator=op.to(device), scaling=scaling, factor=f, crop=crop, guide=guide, known=known,
    )


def to_output(estimate: torch.Tensor, problem: Problem, request: Request) -> np.ndarray:
    """Padded normalised estimate (1, C, h, w) -> float32 array in the input's range and layout.

    For inpainting the known pixels keep their measured values; only the holes are filled.
    """
    x = estimate.detach()[0, :, problem.crop[0], problem.crop[1]].float().cpu().numpy()
    x = problem.scaling.inverse(x.astype(np.float64))
    if problem.known is not None:
        x = np.where(problem.known, request.image, x)
    if request.channel_axis is None:
        x = x[0]
    else:
        x = np.moveaxis(x, 0, request.channel_axis)
    return np.ascontiguousarray(x, dtype=np.float32)
