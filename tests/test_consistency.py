"""Back-projection (napari_dip.consistency): super-resolved results reproduce their
measurement, by the smallest correction, never below the noise level a run was given."""

import numpy as np
import pytest
import torch
from conftest import psnr
from skimage import data

import napari_dip.problem as problem_module
from napari_dip import restore
from napari_dip.consistency import back_project
from napari_dip.operators import Downsample
from napari_dip.pipeline import build_solver
from napari_dip.request import build_plan


def _rms(t: torch.Tensor) -> float:
    return float(t.pow(2).mean().sqrt())


@pytest.fixture
def downsample():
    torch.manual_seed(0)
    return Downsample(4), torch.rand(1, 1, 48, 48), torch.rand(1, 1, 12, 12)


def test_the_correction_removes_the_residual_and_leaves_the_input_alone(downsample):
    op, x, y = downsample
    before = x.clone()
    corrected = back_project(x, op, y)
    assert torch.equal(x, before)  # the estimate handed in is not modified
    assert corrected.shape == x.shape and corrected.dtype == torch.float32
    start, end = _rms(y - op(x)), _rms(y - op(corrected))
    assert end < 0.01 * start, (start, end)  # 5 steps on random data


def test_the_correction_is_the_smallest_one(downsample):
    # it lies in the span of A^T, so it is orthogonal to anything A does not see: v, the part
    # of a random image the measurement cannot tell from 0, is back_project(u, y=0)
    op, x, y = downsample
    change = back_project(x, op, y) - x
    v = back_project(torch.rand(1, 1, 48, 48), op, torch.zeros(1, 1, 12, 12), steps=50)
    assert _rms(op(v)) < 1e-4
    cosine = float((change * v).sum() / (change.norm() * v.norm()))
    assert abs(cosine) < 1e-3, cosine
    assert change.norm() > 0.1 * x.norm()  # and it is not nothing


def test_the_residual_stops_at_the_floor(downsample):
    op, x, y = downsample
    start = _rms(y - op(x))
    assert torch.equal(back_project(x, op, y, floor=start), x)  # already there: untouched
    end = _rms(y - op(back_project(x, op, y, floor=start / 2)))
    assert start / 100 < end <= start / 2  # stopped once there, not at the end


def _floor(image, **kwargs) -> float | None:
    plan = build_plan(image, device="cpu", **kwargs)
    return build_solver(plan.single_request(), torch.device("cpu")).problem.back_project_floor


def test_which_runs_back_project():
    low = np.linspace(0.2, 0.8, 16 * 16, dtype=np.float32).reshape(16, 16)
    sr = {"task": "super_resolution", "factor": 2}
    assert _floor(low, **sr) == 0.0
    # the noise level given, in the network's units (the image spans 0.6)
    assert _floor(low, **sr, noise_sigma=0.03) == pytest.approx(0.05)
    assert _floor((low * 40).round(), **sr, noise="poisson") is None  # counts keep their noise
    assert _floor(low) is None  # denoising: the measurement is the noisy image itself
    assert "back_projected" not in restore(low, iterations=2, early_stop=False).parameters


def test_a_super_resolved_result_gains_from_it(monkeypatch):
    clean = data.camera()[100:164, 100:164].astype(np.float32) / 255
    with torch.no_grad():
        low = Downsample(4)(torch.as_tensor(clean)[None, None])[0, 0].numpy()
    kwargs = dict(task="super_resolution", factor=4, iterations=150, early_stop=False,
                  seed=0, device="cpu")
    corrected = restore(low, **kwargs)
    monkeypatch.setattr(problem_module, "back_project", lambda x, *args: x)
    plain = restore(low, **kwargs)
    assert corrected.parameters["back_projected"] is True
    gain = psnr(corrected.image, clean) - psnr(plain.image, clean)
    assert gain > 0.5, gain
    with torch.no_grad():
        remeasured = Downsample(4)(torch.as_tensor(corrected.image)[None, None])[0, 0].numpy()
    assert np.sqrt(np.mean((remeasured - low) ** 2)) < 0.005
