"""Degradation operators ``A``: each maps an estimate ``x`` of shape (N, C, H, W) to what the
measurement ``y`` would look like (volumes: (N, C, D, H, W) for :class:`Identity`,
:class:`Mask` and :class:`DownsampleZ`). The same objects make synthetic test degradations.

All operators work on torch tensors of normalised intensities, on any device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .kernels import blur_kernel, lanczos2_taps


class Operator:
    """Base class: ``A(x)`` applies the degradation; ``scale`` is the output/input size ratio."""

    #: How many times larger the estimate is than the measurement (super-resolution factor).
    factor: int = 1

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 (operator notation)
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)

    def to(self, device: torch.device) -> "Operator":
        """Move the operator's tensors to ``device`` (returns self)."""
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
        return self


class Identity(Operator):
    """Denoising: ``A(x) = x``."""

    def A(self, x):  # noqa: N802
        return x


class Mask(Operator):
    """Inpainting: ``A(x) = m * x`` with ``m`` = 1 at known pixels, 0 in the holes.

    ``known`` is a (H, W) or (1, 1, H, W) array or tensor, nonzero where the pixel is known;
    for volumes a (D, H, W) one with ``spatial_dims=3``.
    """

    def __init__(self, known, spatial_dims: int = 2):
        m = torch.as_tensor(np.asarray(known) != 0 if not torch.is_tensor(known) else known != 0)
        while m.ndim < 2 + spatial_dims:
            m = m.unsqueeze(0)
        self.known = m.to(torch.float32)

    def A(self, x):  # noqa: N802
        return x * self.known


class Downsample(Operator):
    """Super-resolution: separable Lanczos-2 anti-aliasing then decimation by ``factor``.

    Works on (N, C, H*factor, W*factor) inputs and returns (N, C, H, W). The border is
    replicate-padded so every output pixel sees a full kernel.
    """

    def __init__(self, factor: int):
        self.factor = int(factor)
        taps = torch.as_tensor(lanczos2_taps(self.factor), dtype=torch.float32)
        self.taps = taps
        self._pad = (taps.numel() - self.factor) // 2

    def A(self, x):  # noqa: N802
        n, c, h, w = x.shape
        k = self.taps.to(dtype=x.dtype)
        p = self._pad
        x = F.pad(x, (p, p, p, p), mode="replicate").reshape(n * c, 1, h + 2 * p, w + 2 * p)
        x = F.conv2d(x, k.view(1, 1, 1, -1), stride=(1, self.factor))
        x = F.conv2d(x, k.view(1, 1, -1, 1), stride=(self.factor, 1))
        return x.reshape(n, c, h // self.factor, w // self.factor)


class Blur(Operator):
    """Deblurring: convolution with ``kernel`` under circular (periodic) boundary conditions.

    ``kernel`` is ``"gaussian"`` (25x25, sigma 1.6), ``"uniform"`` (9x9) or a 2-D array.
    This is a true convolution (the kernel is flipped), matching
    ``scipy.ndimage.convolve(x, kernel, mode="wrap")`` for odd kernel sizes.
    """

    def __init__(self, kernel):
        k = blur_kernel(kernel)
        self.kernel = torch.as_tensor(k[::-1, ::-1].copy(), dtype=torch.float32)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.kernel.shape)

    def A(self, x):  # noqa: N802
        n, c, h, w = x.shape
        kh, kw = self.kernel.shape
        # Even kernels: the extra tap goes before the centre, as scipy.ndimage places it.
        top, left = kh // 2, kw // 2
        bottom, right = kh - 1 - top, kw - 1 - left
        xp = x.reshape(n * c, 1, h, w)
        xp = F.pad(xp, (left, right, top, bottom), mode="circular")
        out = F.conv2d(xp, self.kernel.to(dtype=x.dtype).view(1, 1, kh, kw))
        return out.reshape(n, c, h, w)


class DownsampleZ(Operator):
    """Thick slices: each measured slice is the mean of ``factor`` consecutive thin slices.

    Works on volumes (N, C, D*factor, H, W) and returns (N, C, D, H, W): Y and X are left
    alone. This is the slice-profile model of a thick-slice acquisition (MRI, or a widefield
    stack taken with a coarse Z step) with a box profile as wide as the slice spacing.
    """

    def __init__(self, factor: int):
        self.factor = 1  # in-plane factor: Y and X keep their size
        self.z_factor = int(factor)

    def A(self, x):  # noqa: N802
        f = self.z_factor
        return F.avg_pool3d(x, kernel_size=(f, 1, 1), stride=(f, 1, 1))
