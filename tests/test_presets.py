"""Preset data: the paper's per-task settings and the padding the networks need."""

import numpy as np
import pytest

from napari_dip.networks import NetworkConfig
from napari_dip.presets import get_preset
from napari_dip.problem import largest_hole_radius, padded_size


def test_paper_settings_per_task():
    d = get_preset("paper", "denoise")
    assert (d.lr, d.iterations, d.input_channels) == (0.01, 3000, 32)
    assert d.input_noise == pytest.approx(1 / 30)
    assert d.network.channels_down == (128,) * 5 and d.network.channels_skip == (4,) * 5
    sr4, sr8 = get_preset("paper", "super_resolution", factor=4), \
        get_preset("paper", "super_resolution", factor=8)
    assert (sr4.iterations, sr4.input_noise) == (2000, 0.03)
    assert (sr8.iterations, sr8.input_noise) == (4000, 0.05)
    text = get_preset("paper", "inpaint", hole_radius=2)
    assert text.network.channels_skip == (128,) * 5 and text.network.upsample == "nearest"
    assert text.iterations == 6000
    hole = get_preset("paper", "inpaint", hole_radius=40)
    assert hole.input_kind == "meshgrid" and hole.network.channels_skip == (0,) * 5
    assert hole.iterations == 5000
    flash = get_preset("paper", "flash_no_flash")
    assert (flash.lr, flash.iterations, flash.input_kind) == (0.1, 600, "image")


def test_fast_preset_is_smaller_than_paper():
    fast, paper = get_preset("fast", "denoise"), get_preset("paper", "denoise")
    from napari_dip.networks import SkipNetwork

    def weights(preset):
        net = SkipNetwork(preset.input_channels, 1, preset.network)
        return sum(p.numel() for p in net.parameters())

    assert weights(fast) < weights(paper) / 3
    assert fast.iterations < paper.iterations
    # super-resolution: the fast preset perturbs its input more at x4 than the paper does
    assert get_preset("fast", "super_resolution", factor=4).input_noise == 0.05
    assert get_preset("fast", "super_resolution", factor=8).input_noise == 0.05
    assert get_preset("fast", "super_resolution", factor=2).input_noise == 0.03


@pytest.mark.parametrize("size, factor, expected", [
    (16, 1, 64), (64, 1, 64), (65, 1, 96), (100, 1, 128), (20, 2, 32), (33, 4, 40), (5, 8, 8)])
def test_padded_size_suits_the_network(size, factor, expected):
    config = NetworkConfig()
    got = padded_size(size, factor, config)
    assert got == expected
    assert got >= size and (got * factor) % config.size_multiple == 0
    assert got * factor >= config.min_size


def test_hole_radius():
    fill = np.zeros((50, 50), bool)
    fill[20:31, 10:40] = True  # 11 rows: centre row is 6 pixels from the known rows
    assert largest_hole_radius(fill) == pytest.approx(6)


def test_narrow_networks_run_channels_last_and_the_paper_network_does_not():
    import torch

    from napari_dip.pipeline import build_solver
    from napari_dip.request import build_request

    image = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    for preset, channels_last in (("fast", True), ("paper", False)):
        solver = build_solver(build_request(image, preset=preset, device="cpu"))
        weight = next(p for p in solver.net.parameters() if p.dim() == 4 and p.shape[-1] > 1)
        assert weight.is_contiguous(memory_format=torch.channels_last) == channels_last, preset
        assert weight.is_contiguous() != channels_last, preset
