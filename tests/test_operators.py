"""Degradation operators and their kernels, against direct numpy/scipy computations."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_dip.kernels import blur_kernel, gaussian_kernel, lanczos2_taps
from napari_dip.operators import Blur, Downsample, Identity, Mask


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_lanczos_kernel_sums_to_one_and_is_symmetric(factor):
    taps = lanczos2_taps(factor)
    assert taps.shape == (4 * factor,)
    assert taps.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(taps, taps[::-1], atol=1e-15)
    # Lanczos-2 has negative lobes: it is not a plain box or Gaussian.
    assert taps.min() < 0


@pytest.mark.parametrize("factor", [2, 4])
def test_downsample_equals_direct_2d_convolution_with_outer_kernel(factor):
    """The separable implementation equals filtering with the full 2-D kernel (rank one)."""
    rng = np.random.default_rng(0)
    x = rng.random((2, 32, 48))
    taps = lanczos2_taps(factor)
    k2 = np.outer(taps, taps)
    assert np.linalg.matrix_rank(k2) == 1
    pad = (4 * factor - factor) // 2
    # Output pixel (i, j) is the kernel-weighted sum of the window starting at (i*f, j*f).
    p = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(p, k2.shape, axis=(1, 2))
    expected = np.einsum("cijab,ab->cij", windows[:, ::factor, ::factor], k2)
    got = Downsample(factor)(torch.as_tensor(x[None], dtype=torch.float64).float())[0].numpy()
    assert got.shape == (2, 32 // factor, 48 // factor)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_downsampling_a_constant_gives_the_constant(factor):
    x = torch.full((1, 3, 64, 64), 0.37)
    y = Downsample(factor)(x)
    assert y.shape == (1, 3, 64 // factor, 64 // factor)
    torch.testing.assert_close(y, torch.full_like(y, 0.37), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kernel", ["gaussian", "uniform", "random"])
def test_blur_matches_direct_circular_convolution(kernel):
    rng = np.random.default_rng(2)
    if kernel == "random":
        kernel = rng.random((5, 7))  # asymmetric: catches a missing kernel flip
    x = rng.random((64, 64))
    k = blur_kernel(kernel)
    expected = ndimage.convolve(x, k, mode="wrap")
    got = Blur(kernel)(torch.as_tensor(x[None, None], dtype=torch.float32))[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_named_kernels_have_the_documented_shapes():
    g = blur_kernel("gaussian")
    assert g.shape == (25, 25) and g.sum() == pytest.approx(1)
    np.testing.assert_allclose(g, gaussian_kernel(25, 1.6))
    u = blur_kernel("uniform")
    assert u.shape == (9, 9) and np.all(u == 1 / 81)


@pytest.mark.parametrize("bad", [np.ones(5), -np.ones((3, 3)), np.zeros((3, 3)), "box"])
def test_bad_kernels_are_refused(bad):
    with pytest.raises(ValueError, match="kernel"):
        blur_kernel(bad)


def test_mask_zeroes_the_holes_and_identity_passes_through():
    known = np.ones((8, 8))
    known[2:4, 3:6] = 0
    x = torch.rand(1, 2, 8, 8)
    y = Mask(known)(x)
    assert torch.all(y[..., 2:4, 3:6] == 0)
    torch.testing.assert_close(y[..., 5:, :], x[..., 5:, :])
    assert Identity()(x) is x
