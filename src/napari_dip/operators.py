"""Degradation operators ``A``: each maps an estimate ``x`` of shape (N, C, H, W) to what the
measurement ``y`` would look like (volumes: (N, C, D, H, W) for :class:`Identity`,
:class:`Mask` and :class:`DownsampleZ`), and back with its adjoint ``Aᵀ``. The same objects
make synthetic test degradations.

Each operator is a small :class:`torch.nn.Module`: its tensors are registered buffers, so
``.to(device)`` moves them; ``A(x)`` (or calling it) applies the degradation,
``A_adjoint(y)`` its adjoint (for initial estimates such as ``Aᵀy``), and
``measurement_shape(shape)`` the size of ``A(x)`` for an estimate of ``shape``. All work on
torch tensors of normalised intensities, on any device. Which task uses which operator is
declared in :mod:`napari_dip.tasks`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .architecture import size_factors
from .kernels import blur_kernel, lanczos2_taps


class Operator(torch.nn.Module):
    """A linear degradation. Subclasses implement :meth:`A`; :meth:`A_adjoint` defaults to
    the exact adjoint of that linear map by automatic differentiation (the vector-Jacobian
    product of ``A`` at any point), which subclasses may replace with a closed form."""

    #: How many times larger the estimate is than the measurement in Y and X.
    factor: int = 1
    #: ... and along Z (volumes).
    z_factor: int = 1

    #: Fraction of the (padded) measurement's pixels that hold data: below 1 where a
    #: valid boundary pads the estimate beyond the measurement (the margin holds none).
    measured_fraction: float = 1.0

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 (operator notation)
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)

    def measurement_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of ``A(x)`` for an estimate ``x`` of ``shape`` (N, C, *spatial)."""
        n, c, *spatial = shape
        factors = size_factors(len(spatial), self.factor, self.z_factor)
        return (n, c, *(s // f for s, f in zip(spatial, factors, strict=True)))

    def estimate_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of an estimate whose measurement has ``shape``."""
        n, c, *spatial = shape
        factors = size_factors(len(spatial), self.factor, self.z_factor)
        return (n, c, *(s * f for s, f in zip(spatial, factors, strict=True)))

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        x = torch.zeros(self.estimate_shape(tuple(y.shape)), dtype=y.dtype, device=y.device)
        with torch.enable_grad():
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(self.A(x), x, grad_outputs=y)
        return grad


class Identity(Operator):
    """Denoising: ``A(x) = x``."""

    def A(self, x):  # noqa: N802
        return x

    def A_adjoint(self, y):  # noqa: N802
        return y


class Mask(Operator):
    """Inpainting: ``A(x) = m * x`` with ``m`` = 1 at known pixels, 0 in the holes (self-
    adjoint).

    ``known`` is a (H, W) or (1, 1, H, W) array or tensor, nonzero where the pixel is known;
    for volumes a (D, H, W) one with ``spatial_dims=3``.
    """

    def __init__(self, known, spatial_dims: int = 2):
        super().__init__()
        m = torch.as_tensor(np.asarray(known) != 0 if not torch.is_tensor(known) else known != 0)
        while m.ndim < 2 + spatial_dims:
            m = m.unsqueeze(0)
        self.register_buffer("known", m.to(torch.float32))

    def A(self, x):  # noqa: N802
        return x * self.known

    def A_adjoint(self, y):  # noqa: N802
        return y * self.known


class Downsample(Operator):
    """Super-resolution: separable Lanczos-2 anti-aliasing then decimation by ``factor``.

    Works on (N, C, H*factor, W*factor) inputs and returns (N, C, H, W). The border is
    replicate-padded so every output pixel sees a full kernel. The adjoint (spreading each
    measured pixel back over its taps, folding the padding onto the border) is taken by
    automatic differentiation.
    """

    def __init__(self, factor: int):
        super().__init__()
        self.factor = int(factor)
        self.register_buffer("taps", torch.as_tensor(lanczos2_taps(self.factor),
                                                     dtype=torch.float32))
        self._pad = (self.taps.numel() - self.factor) // 2

    def A(self, x):  # noqa: N802
        n, c, h, w = x.shape
        k = self.taps.to(dtype=x.dtype)
        p = self._pad
        x = F.pad(x, (p, p, p, p), mode="replicate").reshape(n * c, 1, h + 2 * p, w + 2 * p)
        x = F.conv2d(x, k.view(1, 1, 1, -1), stride=(1, self.factor))
        x = F.conv2d(x, k.view(1, 1, -1, 1), stride=(self.factor, 1))
        return x.reshape(n, c, h // self.factor, w // self.factor)


class Blur(Operator):
    """Deblurring: convolution with ``kernel`` under circular (periodic) boundary conditions,
    or, with ``measured``, a valid boundary.

    ``kernel`` is ``"gaussian"`` (25x25, sigma 1.6), ``"uniform"`` (9x9) or a 2-D array.
    This is a true convolution (the kernel is flipped), matching
    ``scipy.ndimage.convolve(x, kernel, mode="wrap")`` for odd kernel sizes. Its adjoint is
    the circular correlation with the same kernel.

    ``measured`` (an (H, W) array, nonzero where the measurement holds data) makes the
    boundary valid: ``A(x) = m * (k * x)``. Where the estimate extends at least the kernel's
    half-width beyond every measured pixel (the problem pads it so), no measured pixel sees
    the wrap-around, so ``A`` is the 'valid' convolution of the estimate, placed in the
    measurement's window: real images, whose opposite edges differ, do not ring. Adjoint:
    ``Aᵀy = k ⋆ (m * y)`` (circular correlation).
    """

    def __init__(self, kernel, measured=None):
        super().__init__()
        k = blur_kernel(kernel)
        self.register_buffer("kernel", torch.as_tensor(k[::-1, ::-1].copy(),
                                                       dtype=torch.float32))
        self.register_buffer("measured", _window(measured, 2))
        if self.measured is not None:
            self.measured_fraction = float(self.measured.mean())

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.kernel.shape)

    def _circular(self, x: torch.Tensor, weight: torch.Tensor, before: tuple[int, int]):
        n, c, h, w = x.shape
        kh, kw = weight.shape
        top, left = before
        xp = F.pad(x.reshape(n * c, 1, h, w), (left, kw - 1 - left, top, kh - 1 - top),
                   mode="circular")
        return F.conv2d(xp, weight.to(dtype=x.dtype).view(1, 1, kh, kw)).reshape(n, c, h, w)

    def A(self, x):  # noqa: N802
        kh, kw = self.kernel.shape
        # Even kernels: the extra tap goes before the centre, as scipy.ndimage places it.
        out = self._circular(x, self.kernel, (kh // 2, kw // 2))
        return out if self.measured is None else out * self.measured.to(dtype=out.dtype)

    def A_adjoint(self, y):  # noqa: N802
        kh, kw = self.kernel.shape
        if self.measured is not None:
            y = y * self.measured.to(dtype=y.dtype)
        return self._circular(y, self.kernel.flip(0, 1), (kh - 1 - kh // 2, kw - 1 - kw // 2))


def _window(measured, spatial_dims: int) -> torch.Tensor | None:
    """The measured window as a float (1, 1, *spatial) tensor, or None (circular)."""
    if measured is None:
        return None
    m = torch.as_tensor(np.asarray(measured) != 0, dtype=torch.float32)
    while m.ndim < 2 + spatial_dims:
        m = m.unsqueeze(0)
    return m


class Blur3D(Operator):
    """3-D deconvolution of a Z-stack: convolution of a volume (N, C, D, H, W) with a 3-D PSF
    (Z, Y, X), by FFT (a PSF of 15x31x31 voxels has 14 415 taps: direct convolution would
    cost that per voxel, the FFT a few dozen operations).

    ``kernel`` is a 3-D array, or a 2-D one (a blur within each plane). Without
    ``measured`` the boundary is circular; with it (a (D, H, W) array, nonzero where the
    measurement holds data, at least the PSF's half-width inside the estimate on every
    side) it is valid, as in :class:`Blur`. Same conventions as :class:`Blur`: a true
    convolution whose origin is the kernel's centre pixel (``size // 2`` on every axis),
    the adjoint the correlation with the same kernel (the conjugate transfer function).
    """

    def __init__(self, kernel, measured=None):
        super().__init__()
        k = blur_kernel(kernel, ndims=(2, 3))
        if k.ndim == 2:
            k = k[None]
        self.register_buffer("kernel", torch.as_tensor(k, dtype=torch.float32))
        self.register_buffer("measured", _window(measured, 3))
        if self.measured is not None:
            self.measured_fraction = float(self.measured.mean())
        self._otf_cache: dict = {}

    @property
    def size(self) -> tuple[int, int, int]:
        return tuple(self.kernel.shape)

    def _otf(self, shape: tuple[int, int, int], dtype, device) -> torch.Tensor:
        """rfftn of the kernel, zero-padded to ``shape`` with its centre moved to the
        origin: multiplying by it is the circular convolution."""
        key = (shape, dtype, device)
        if key not in self._otf_cache:
            k = self.kernel.to(dtype=dtype)
            if any(s < n for s, n in zip(shape, k.shape, strict=True)):
                raise ValueError(f"the PSF ({'x'.join(map(str, k.shape))}) is larger than "
                                 f"the volume ({'x'.join(map(str, shape))})")
            padded = torch.zeros(shape, dtype=dtype, device=device)
            padded[tuple(slice(0, n) for n in k.shape)] = k
            centre = tuple(-(n // 2) for n in k.shape)
            padded = torch.roll(padded, shifts=centre, dims=(0, 1, 2))
            self._otf_cache = {key: torch.fft.rfftn(padded)}  # one shape per problem
        return self._otf_cache[key]

    def _apply(self, fn, *args, **kwargs):
        self._otf_cache = {}  # .to(): the kernel moved or changed dtype
        return super()._apply(fn, *args, **kwargs)

    def _filter(self, x: torch.Tensor, adjoint: bool) -> torch.Tensor:
        shape = tuple(x.shape[-3:])
        otf = self._otf(shape, x.dtype, x.device)
        spectrum = torch.fft.rfftn(x, dim=(-3, -2, -1))
        spectrum = spectrum * (otf.conj() if adjoint else otf)
        return torch.fft.irfftn(spectrum, s=shape, dim=(-3, -2, -1))

    def A(self, x):  # noqa: N802
        out = self._filter(x, adjoint=False)
        return out if self.measured is None else out * self.measured.to(dtype=out.dtype)

    def A_adjoint(self, y):  # noqa: N802
        if self.measured is not None:
            y = y * self.measured.to(dtype=y.dtype)
        return self._filter(y, adjoint=True)


class DownsampleZ(Operator):
    """Thick slices: each measured slice is the mean of ``factor`` consecutive thin slices.

    Works on volumes (N, C, D*factor, H, W) and returns (N, C, D, H, W): Y and X are left
    alone. This is the slice-profile model of a thick-slice acquisition (MRI, or a widefield
    stack taken with a coarse Z step) with a box profile as wide as the slice spacing.
    """

    def __init__(self, factor: int):
        super().__init__()
        self.factor = 1  # in-plane factor: Y and X keep their size
        self.z_factor = int(factor)

    def A(self, x):  # noqa: N802
        f = self.z_factor
        return F.avg_pool3d(x, kernel_size=(f, 1, 1), stride=(f, 1, 1))
