"""Run settings per task: the paper's ("paper") and a cheaper default for laptops ("fast").

Paper settings follow the DIP paper's supplementary material and its reference code
(Ulyanov, Vedaldi, Lempitsky, "Deep Image Prior", CVPR 2018): learning rate, iteration
count, input perturbation sigma_p and network per task.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .architecture import NetworkConfig

PRESETS = ("fast", "paper")


@dataclass(frozen=True)
class Preset:
    """Everything a DIP run needs besides the data.

    ``input_kind`` is ``"noise"`` (z ~ U(0, 0.1), ``input_channels`` channels), ``"meshgrid"``
    (2 channels of normalised x, y coordinates) or ``"image"`` (the flash shot).
    ``input_noise`` is sigma_p of the fresh N(0, sigma_p^2) perturbation added to z each step.
    """

    name: str
    network: NetworkConfig
    lr: float
    iterations: int
    input_noise: float
    input_kind: str = "noise"
    input_channels: int = 32
    ema: float = 0.99

    def network_input_channels(self, channels: int, guide_channels: int = 0,
                               spatial_dims: int = 2) -> int:
        """Channels of the network's input z for an image of ``channels`` channels: the
        guide's (flash shot), one coordinate per spatial axis, or ``input_channels``."""
        if self.input_kind == "image":
            return guide_channels or channels
        if self.input_kind == "meshgrid":
            return spatial_dims
        return self.input_channels

    def to_dict(self) -> dict:
        d = asdict(self)
        d["network"] = self.network.to_dict()
        return d


_PAPER_NET = NetworkConfig()  # 128 channels x 5 scales, skip 4, bilinear
# The paper's 8-16-32-64-128 "snail" channels, with 4 skip channels at every scale as in
# its denoising network: skips only at the two deepest scales (the snail's) could not fit
# fine texture (barbara's stripes: 21.6 against 25.5 dB best; benchmarks/results/levers.md).
# DeepRED uses it too: with the snail's skips its fast denoising runs (NLM) on the quality
# benchmark's real crops came out 1.2-3.5 dB lower (camera 25.9 against 27.5, astronaut 28.6
# against 29.8, barbara 21.7 against 25.2 dB), though 0.7 dB higher on a Shepp-Logan phantom.
_FAST_NET = NetworkConfig(
    channels_down=(8, 16, 32, 64, 128),
    channels_up=(8, 16, 32, 64, 128),
    channels_skip=(4, 4, 4, 4, 4),
)
# Inpainting needs a network that cannot copy the holes through full-resolution skips.
_FAST_INPAINT_NET = NetworkConfig(
    channels_down=(16, 32, 64, 128, 128),
    channels_up=(16, 32, 64, 128, 128),
    channels_skip=(0, 0, 0, 0, 0),
    upsample="nearest",
)

# Holes wider than this (largest distance from a hole pixel to a known pixel, in pixels)
# use the paper's large-hole setting (meshgrid input, no skips) instead of the text one.
LARGE_HOLE_RADIUS = 8


def largest_hole_radius(fill: np.ndarray) -> float:
    """Largest distance (pixels) from a pixel to fill to the nearest known pixel."""
    from scipy import ndimage

    return float(ndimage.distance_transform_edt(fill).max())


def preset_for(request) -> Preset:
    """The preset a validated :class:`~napari_dip.plan.Request` runs with (the inpainting
    setting depends on the size of its holes)."""
    hole_radius = largest_hole_radius(request.mask) if request.mask is not None else 0.0
    return get_preset(request.preset, request.task, factor=request.factor,
                      hole_radius=hole_radius)


def get_preset(name: str, task: str, *, factor: int | None = None,
               hole_radius: float = 0.0) -> Preset:
    """The settings for ``task`` under preset ``name`` ("fast" or "paper"); DIP and DeepRED
    share them (DeepRED's own weights and rates are in ``solvers.deepred.TASK_DEFAULTS``)."""
    if name == "paper":
        return _paper(task, factor, hole_radius)
    if name == "fast":
        return _fast(task, factor, hole_radius)
    raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")


def _paper(task, factor, hole_radius) -> Preset:
    base = Preset("paper", _PAPER_NET, lr=0.01, iterations=3000, input_noise=1 / 30)
    if task == "denoise":
        return base
    if task == "deblur":  # not in the DIP paper; the denoising setting is the natural one
        return base
    if task == "super_resolution":
        # The paper reports x4 and x8; x2 uses the x4 setting.
        if factor == 8:
            return replace(base, iterations=4000, input_noise=0.05)
        return replace(base, iterations=2000, input_noise=0.03)
    if task == "inpaint":
        if hole_radius > LARGE_HOLE_RADIUS:  # large-hole inpainting (vase)
            net = NetworkConfig(channels_skip=(0,) * 5, upsample="nearest")
            return replace(base, network=net, iterations=5000, input_noise=0.03,
                           input_kind="meshgrid", input_channels=2)
        net = NetworkConfig(channels_skip=(128,) * 5, upsample="nearest")  # text inpainting
        return replace(base, network=net, iterations=6000, input_noise=0.03)
    if task == "flash_no_flash":
        return replace(base, lr=0.1, iterations=600, input_noise=0.0, input_kind="image")
    raise ValueError(f"unknown task {task!r}")


def _fast(task, factor, hole_radius) -> Preset:
    base = Preset("fast", _FAST_NET, lr=0.01, iterations=1500, input_noise=1 / 30,
                  input_channels=16)
    if task in ("denoise", "deblur"):
        return base
    if task == "super_resolution":
        # input noise 0.05 for x4 too (the paper's x4 uses 0.03): two-fit runs on the quality
        # benchmark's crops gained 0.02-0.31 dB on all three images and two seeds (+0.18 on
        # average; benchmarks/README.md, levers). x2 and Z-only (not measured) keep 0.03.
        return replace(base, iterations=2000 if factor == 8 else 1500,
                       input_noise=0.05 if factor in (4, 8) else 0.03)
    if task == "inpaint":
        if hole_radius > LARGE_HOLE_RADIUS:
            return replace(base, network=_FAST_INPAINT_NET, iterations=3000, input_noise=0.03,
                           input_kind="meshgrid", input_channels=2)
        return replace(base, network=_FAST_INPAINT_NET, iterations=3000, input_noise=0.03)
    if task == "flash_no_flash":
        return replace(base, lr=0.05, iterations=400, input_noise=0.0, input_kind="image")
    raise ValueError(f"unknown task {task!r}")
