"""The shape of the engine: registries, operators with adjoints, likelihoods, stopping rules,
and one validation path that refuses exactly what a run refuses."""

import numpy as np
import pytest
import torch

import napari_dip
from napari_dip import cli, presets
from napari_dip.likelihoods import GaussianLikelihood, PoissonLikelihood, make_likelihood
from napari_dip.methods import METHODS, noise_level_applies
from napari_dip.operators import Blur, Blur3D, Downsample, DownsampleZ, Identity, Mask
from napari_dip.stabilisers import Discrepancy, EarlyStopping, NoStopping, RicianDiscrepancy
from napari_dip.tasks import TASKS, OperatorInputs


# -- operators ----------------------------------------------------------------------------
def _window(shape, margins):
    """Where a valid boundary's measurement holds data: ``margins`` inside the estimate."""
    window = np.zeros(shape, bool)
    window[tuple(slice(m, n - m) for n, m in zip(shape, margins, strict=True))] = True
    return window


def _operators():
    rng = np.random.default_rng(0)
    known = rng.random((24, 24)) > 0.3
    return {
        "identity": (Identity(), (1, 2, 24, 24)),
        "mask": (Mask(known), (1, 2, 24, 24)),
        "downsample x2": (Downsample(2), (1, 2, 24, 24)),
        "downsample x4": (Downsample(4), (1, 1, 32, 32)),
        "blur gaussian": (Blur("gaussian"), (1, 1, 32, 32)),
        "blur 4x5 asymmetric": (Blur(rng.random((4, 5))), (1, 2, 24, 24)),
        "blur 7x5 valid boundary": (Blur(rng.random((7, 5)), _window((24, 24), (3, 2))),
                                    (1, 2, 24, 24)),
        "blur 3-D circular": (Blur3D(rng.random((3, 5, 4))), (1, 1, 8, 16, 16)),
        "blur 3-D valid boundary": (Blur3D(rng.random((3, 5, 4)), _window((8, 16, 16),
                                                                          (1, 2, 2))),
                                    (1, 1, 8, 16, 16)),
        "thick slices x2": (DownsampleZ(2), (1, 1, 8, 16, 16)),
    }


@pytest.mark.parametrize("name", list(_operators()))
def test_adjoint_satisfies_the_inner_product_identity(name):
    """<A x, y> = <x, Aᵀ y> for random x and y, in float64."""
    op, shape = _operators()[name]
    op = op.to(torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    ax = op(x)
    assert tuple(ax.shape) == op.measurement_shape(shape)
    y = torch.randn(ax.shape, generator=gen, dtype=torch.float64)
    aty = op.A_adjoint(y)
    assert aty.shape == x.shape
    lhs, rhs = float((ax * y).sum()), float((x * aty).sum())
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


def test_operator_tensors_are_buffers_that_move_with_the_module():
    assert set(dict(Mask(np.ones((4, 4))).named_buffers())) == {"known"}
    assert set(dict(Downsample(2).named_buffers())) == {"taps"}
    blur = Blur("uniform").to(torch.float64)
    assert set(dict(blur.named_buffers())) == {"kernel"}
    assert blur.kernel.dtype == torch.float64


def test_every_task_builds_its_operator_and_has_presets():
    for task in TASKS.values():
        op = task.operator(OperatorInputs(spatial_dims=2, factor=2, known=np.ones((8, 8)),
                                          kernel=np.ones((3, 3)) / 9))
        assert isinstance(op, torch.nn.Module), task.name
        for name in presets.PRESETS:
            assert presets.get_preset(name, task.name, factor=2).iterations > 0


def test_the_cli_and_the_registries_offer_the_same_tasks_and_methods():
    parser = cli._parser()
    restore = next(a for a in parser._actions if a.dest == "command").choices["restore"]
    choices = {a.dest: a.choices for a in restore._actions if a.choices}
    assert list(choices["task"]) == list(TASKS)
    assert list(choices["method"]) == list(METHODS)


def test_each_method_names_its_solver_class():
    for method in METHODS.values():
        assert method.solver_class().method is method


# -- likelihoods and stopping rules ---------------------------------------------------------
def test_likelihoods():
    ax = torch.tensor([0.5, 2.0, 0.0])
    y = torch.tensor([1.0, 1.0, 3.0])
    assert isinstance(make_likelihood("gaussian"), GaussianLikelihood)
    assert float(make_likelihood("gaussian")(ax, y)) == pytest.approx((0.25 + 1 + 9) / 3)
    poisson = make_likelihood("poisson")
    assert isinstance(poisson, PoissonLikelihood)
    rate = torch.tensor([0.5, 2.0, 1e-6])
    expected = float((rate - y * torch.log(rate)).mean())
    assert float(poisson(ax, y)) == pytest.approx(expected)


def test_stopping_rules_share_one_interface():
    out = torch.zeros(1, 1, 4, 4)
    loss = torch.tensor(0.1)
    for rule in (NoStopping(), Discrepancy(0.5, window=2), EarlyStopping(window=2, patience=1),
                 RicianDiscrepancy(out + 0.5, 0.1, window=2)):
        for i in range(1, 6):
            rule.observe(i, out + i, out, loss)
        assert isinstance(rule.should_stop(5), bool)
        assert "stopping" in rule.parameters()
    assert NoStopping().kept() is None and not NoStopping().should_stop(10**6)
    es = EarlyStopping(window=2, patience=1)
    for i in range(1, 4):
        es.observe(i, out, out + i, loss)  # constant outputs: variance 0 from step 2 on
    estimate, iteration = es.kept()
    assert iteration == 2 and float(estimate.mean()) == 2.0


def test_noise_level_rule_reads_the_registries(monkeypatch):
    from dataclasses import replace

    assert noise_level_applies("denoise", "dip", "gaussian", True)
    assert noise_level_applies("denoise", "deepred", "gaussian", True)
    monkeypatch.setitem(METHODS, "deepred", replace(METHODS["deepred"],
                                                    stops_at_noise_level=False))
    assert not noise_level_applies("denoise", "deepred", "gaussian", True)
    assert not noise_level_applies("denoise", "dip", "poisson", True)
    assert not noise_level_applies("flash_no_flash", "dip", "gaussian", True)
    assert not noise_level_applies("denoise", "dip", "gaussian", 300)  # an ES-WMV patience
    assert not noise_level_applies("denoise", "dip", "gaussian", False)


# -- one validation path --------------------------------------------------------------------
_IMAGE = np.random.default_rng(0).random((32, 32))
_STACK = np.random.default_rng(0).random((2, 32, 32))

REFUSED = [
    (dict(method="deepred", denoiser="foo"), "unknown denoiser 'foo'"),
    (dict(method="deepred", denoiser_sigma=-1), "denoiser_sigma must be"),
    (dict(method="deepred", lam=-1), "lam must be a number >= 0"),
    (dict(method="deepred", lam="0.5"), "lam must be a number >= 0"),
    (dict(method="deepred", mu=0), "mu must be a positive number"),
    (dict(method="deepred", denoise_every=0), "denoise_every must be a positive integer"),
    (dict(method="deepred", lamb=1), r"lamb \(did you mean lam\?\)"),
    (dict(iteration=5), r"iteration \(did you mean iterations\?\)"),
    (dict(task="flash_no_flash", method="deepred", flash=_IMAGE),
     "method='deepred' does not support task='flash_no_flash'"),
    (dict(warm_start=-5), "warm_start=-5 applies to stacks and tiles"),
    (dict(warm_start=True), "this run is one image: drop it"),
    (dict(spacing=(-1, 0, 1)), "spacing=.* is the voxel size of mode='volume' runs"),
]


@pytest.mark.parametrize("kwargs, message", REFUSED)
def test_validate_refuses_what_a_run_refuses_before_any_work(kwargs, message):
    before = _IMAGE.copy()
    with pytest.raises(ValueError, match=message):
        napari_dip.validate(_IMAGE, **kwargs)
    with pytest.raises(ValueError, match=message):
        napari_dip.iterate(_IMAGE, **kwargs)  # refused at the call, not at the first step
    np.testing.assert_array_equal(_IMAGE, before)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="deepred", lam=-1), "lam must be"),
    (dict(method="deepred", frobnicate=1), "unknown option"),
    (dict(spacing=(1, 1, 1)), "voxel size of mode='volume' runs"),
])
def test_stacks_are_checked_by_the_same_path(kwargs, message):
    with pytest.raises(ValueError, match=message):
        napari_dip.validate(_STACK, axes="ZYX", **kwargs)
    with pytest.raises(ValueError, match=message):
        napari_dip.iterate(_STACK, axes="ZYX", **kwargs)
