"""Shared fixtures: small real test images with synthetic degradations, and PSNR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data

#: The project's shared real data (../shared/data beside the checkout).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def psnr(estimate, truth, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB."""
    mse = np.mean((np.asarray(estimate, np.float64) - np.asarray(truth, np.float64)) ** 2)
    return float(10 * np.log10(data_range**2 / mse))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Run torch on one thread: results then do not depend on the machine's core count
    (parallel reductions change the order of sums), and the widget's Qt thread and DeepRED's
    denoiser thread are not starved on a 2-core CI machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _one_fit_for_auto(request, monkeypatch):
    """``ensemble="auto"`` fits once, so that the many default runs on small test images
    cost one fit each on the CI's one thread (two fits there cost twice as much), except in
    tests marked ``auto_ensemble``, which check what the default does."""
    if request.node.get_closest_marker("auto_ensemble") is None:
        from napari_dip import request as requests

        monkeypatch.setattr(requests, "AUTO_ENSEMBLE", 1)
    yield


@pytest.fixture(autouse=True)
def _no_blend_unless_asked(request, monkeypatch):
    """Runs return the network's estimate alone, without the classical blend's validation
    fit (napari_dip.thinning), which would double the cost of the many default denoising
    runs; tests marked ``classical_blend`` run it as shipped."""
    if request.node.get_closest_marker("classical_blend") is None:
        from napari_dip import thinning

        monkeypatch.setattr(thinning, "blend_for", lambda solver: None)
    yield


@pytest.fixture
def camera64() -> np.ndarray:
    """64x64 crop of scikit-image's cameraman, float in [0, 1]."""
    return data.camera()[80:144, 200:264].astype(np.float32) / 255


@pytest.fixture
def noisy64(camera64) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean): the cameraman crop with Gaussian noise sigma = 25/255."""
    rng = np.random.default_rng(1)
    noisy = camera64 + rng.normal(0, 25 / 255, camera64.shape).astype(np.float32)
    return noisy, camera64


@pytest.fixture
def astronaut48() -> np.ndarray:
    """48x48 RGB crop of scikit-image's astronaut, float in [0, 1]."""
    return data.astronaut()[60:108, 200:248].astype(np.float32) / 255


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


def drain(steps):
    """Run a step generator to its end: (the steps it yielded, the Result it returned)."""
    from napari_dip.drivers import drain as run_to_end

    seen = []
    result = run_to_end(steps, seen.append)
    return seen, result
