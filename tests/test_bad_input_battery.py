"""Issue 14's acceptance list for the Python API, and a battery of bad and edge inputs.

Every refusal is a ValueError raised by ``validate`` and by ``iterate`` alike (one set of
checks, before any work), whose message names the argument at fault; the caller's arrays
are never modified. Edge inputs that can be restored (numpy scalars, tensors, extreme but
representable value ranges) are restored, finite, and equal to their plain counterpart."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from napari_dip import iterate, restore, sizing, validate

RNG = np.random.default_rng(0)
IMG = RNG.random((32, 32))
RGB = RNG.random((32, 32, 3))
STACK = RNG.random((3, 32, 32))
HOLES = np.zeros((32, 32))
HOLES[10:14, 10:14] = 1
NAN_MASK = HOLES.copy()
NAN_MASK[0, 0] = np.nan
EXTREME = np.where(IMG > 0.5, 1e308, -1e308)
INT62 = (RNG.integers(0, 1000, (32, 32)) + 2**62).astype(np.int64)
DEEPRED = dict(method="deepred")

# (name, arguments, text the message must contain (the argument at fault), regex)
CASES = [
    # the acceptance list of issue 14
    ("unknown denoiser", dict(DEEPRED, denoiser="foo"), "denoiser", "unknown denoiser 'foo'"),
    ("negative denoiser sigma", dict(DEEPRED, denoiser_sigma=-1), "denoiser_sigma",
     "positive number"),
    ("negative lam", dict(DEEPRED, lam=-1), "lam", "number >= 0"),
    ("zero mu", dict(DEEPRED, mu=0), "mu", "positive number"),
    ("denoise_every 0", dict(DEEPRED, denoise_every=0), "denoise_every", "positive integer"),
    ("lam as a string", dict(DEEPRED, lam="0.5"), "lam", "got '0.5'"),
    ("deepred flash/no-flash", dict(DEEPRED, task="flash_no_flash", flash=IMG),
     "flash_no_flash", "does not support"),
    ("typo iteration=", dict(iteration=5), "iteration", "did you mean iterations"),
    ("seed 2**64", dict(seed=2**64), "seed", r"up to 2\*\*63 - 1"),
    ("seed -1 as numpy", dict(seed=np.int64(-1)), "seed", "non-negative"),
    ("values of +-1e308", dict(image=EXTREME), "image", "beyond float32"),
    ("values of 1e39", dict(image=IMG * 1e39), "image", "beyond float32"),
    ("int64 around 2**62", dict(image=INT62), "image", r"span only \d+ around 4.61e\+18"),
    ("warm_start on a 2-D image", dict(warm_start=True), "warm_start", "one image"),
    ("spacing on a 2-D image", dict(spacing=(2, 1, 1)), "spacing", "mode='volume'"),
    ("spacing in slice mode", dict(image=STACK, axes="ZYX", spacing=(2, 1, 1)), "spacing",
     "restores planes"),
    ("channel_axis=True", dict(image=RGB, channel_axis=True), "channel_axis", "integer"),
    ("channel_axis=2.0 with tiles", dict(image=RGB, channel_axis=2.0, tile=32),
     "channel_axis", "integer"),
    ("channel_axis='x' with tiles", dict(image=RGB, channel_axis="x", tile=32),
     "channel_axis", "integer"),
    ("mask with NaN", dict(task="inpaint", mask=NAN_MASK), "mask", "NaN"),
    ("mask of strings", dict(task="inpaint", mask=np.full((32, 32), "a")), "mask",
     "numeric array"),
    # more of our own
    ("image as a string", dict(image="noisy.tif"), "image", "got a string"),
    ("image None", dict(image=None), "image", "numeric array"),
    ("ragged image", dict(image=[[1, 2], [3]]), "image", "numpy cannot read it"),
    ("image of objects", dict(image=np.array([[object()] * 32] * 32)), "image", "numeric"),
    ("boolean image of one value", dict(image=np.ones((32, 32), bool)), "image", "constant"),
    ("tiny spread around 1", dict(image=1 + IMG * 1e-9), "image", "subtract an offset"),
    ("values near float64's smallest", dict(image=IMG * 1e-320), "image", "span only"),
    ("uint64 around 2**63", dict(image=(IMG * 10).astype(np.uint64) + np.uint64(2**63)),
     "image", "span only"),
    ("iterations as numpy float", dict(iterations=np.float64(5)), "iterations",
     "positive integer"),
    ("iterations True", dict(iterations=True), "iterations", "positive integer"),
    ("early_stop as a string", dict(early_stop="yes"), "early_stop", "True, False"),
    ("seed as a float", dict(seed=1.5), "seed", "integer"),
    ("seed True", dict(seed=True), "seed", "integer"),
    ("preview_every negative", dict(preview_every=-2), "preview_every", "positive"),
    ("noise_sigma zero", dict(noise_sigma=0), "noise_sigma", "positive number"),
    ("noise_sigma NaN", dict(noise_sigma=float("nan")), "noise_sigma", "positive number"),
    ("noise_sigma beyond the range", dict(noise_sigma=5.0), "noise_sigma", "value range"),
    ("noise_sigma with poisson", dict(image=IMG * 100, noise="poisson", noise_sigma=2.0),
     "noise_sigma", "no standard deviation"),
    ("tile too small", dict(tile=8), "tile", "too small"),
    ("tile as a float", dict(tile=64.0), "tile", "size in pixels"),
    ("overlap without tile", dict(overlap=8), "overlap", "give tile="),
    ("overlap more than half", dict(tile=32, overlap=20), "overlap", "more than half"),
    ("warm_start zero", dict(image=STACK, axes="ZYX", warm_start=0), "warm_start",
     "number of iterations"),
    ("axes of the wrong length", dict(axes="ZYX"), "axes", "names 3 axes"),
    ("axes without X", dict(image=STACK, axes="ZYT"), "axes", "Y and X"),
    ("axes and channel_axis", dict(image=RGB, axes="YXC", channel_axis=-1), "channel_axis",
     "not both"),
    ("mode without axes", dict(mode="volume"), "mode", "needs axes"),
    ("volume of one slice", dict(image=STACK[:1], axes="ZYX", mode="volume"), "mode",
     "at least"),
    ("mask of the wrong shape", dict(task="inpaint", mask=np.ones((16, 16))), "mask",
     "shape"),
    ("mask with infinity", dict(task="inpaint", mask=np.where(HOLES > 0, np.inf, 0)),
     "mask", "NaN or infinite"),
    ("complex mask", dict(task="inpaint", mask=HOLES.astype(complex)), "mask", "complex"),
    ("kernel with NaN", dict(task="deblur", kernel=np.full((3, 3), np.nan)), "kernel",
     "finite"),
    ("kernel of strings", dict(task="deblur", kernel=np.full((3, 3), "k")), "kernel",
     "numeric"),
    ("flash with infinity", dict(task="flash_no_flash", flash=np.where(IMG > 0.5, np.inf, 1)),
     "flash", "NaN or infinite"),
    ("flash beyond float32", dict(task="flash_no_flash", flash=IMG * 1e39), "flash",
     "beyond float32"),
    ("denoiser_timeout negative", dict(DEEPRED, denoiser_timeout=-1), "denoiser_timeout",
     "positive"),
    ("another method's option", dict(lam=0.5), "lam", "an option of method='deepred'"),
]


def _arrays(kwargs) -> dict[str, np.ndarray]:
    return {k: v for k, v in kwargs.items() if isinstance(v, np.ndarray)}


@pytest.mark.parametrize("name, kwargs, argument, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_names_the_argument_and_leaves_the_input_alone(name, kwargs, argument,
                                                                 pattern):
    kwargs = {"image": IMG, **kwargs}
    before = {k: v.copy() for k, v in _arrays(kwargs).items()}
    image = kwargs.pop("image")
    messages = []
    for check in (validate, iterate):
        with pytest.raises(ValueError, match=pattern) as info:
            check(image, **kwargs)
        messages.append(str(info.value))
    assert argument in messages[0]
    assert messages[0] == messages[1]  # one set of checks
    for key, value in _arrays({"image": image, **kwargs}).items():
        assert value.dtype == before[key].dtype
        np.testing.assert_array_equal(value, before[key])


def test_the_battery_is_at_least_40_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 40


# -- edge inputs that are restored ------------------------------------------------------------
RUN = dict(iterations=3, early_stop=False, seed=2, device="cpu")


def test_numpy_scalars_are_accepted_as_their_python_values(noisy64):
    plain = restore(noisy64[0], **RUN)
    numpy = restore(noisy64[0], iterations=np.int64(3), early_stop=np.False_,
                    seed=np.uint8(2), device="cpu")
    np.testing.assert_array_equal(plain.image, numpy.image)
    assert numpy.parameters["seed"] == 2 and type(numpy.parameters["seed"]) is int
    validate(noisy64[0], early_stop=np.True_, noise_sigma=np.float32(0.1))


def test_a_tensor_that_requires_grad_is_detached_not_changed(noisy64):
    tensor = torch.tensor(noisy64[0], requires_grad=True)
    before = tensor.detach().clone()
    result = restore(tensor, **RUN)
    np.testing.assert_array_equal(result.image, restore(noisy64[0], **RUN).image)
    assert torch.equal(tensor.detach(), before) and tensor.grad is None
    assert tensor.requires_grad


def test_a_largest_seed_runs():
    assert restore(IMG, iterations=1, seed=2**63 - 1, device="cpu").iterations == 1


@pytest.mark.parametrize("scale, offset", [(1e30, 0.0), (1e-30, 0.0), (1.0, 1e4),
                                           (3e37, 0.0), (1e-35, 0.0)])
def test_extreme_but_representable_ranges_are_restored_like_unit_data(noisy64, scale,
                                                                       offset):
    unit = restore(noisy64[0], **RUN).image.astype(np.float64)
    data = noisy64[0].astype(np.float64) * scale + offset
    result = restore(data, **RUN).image
    assert result.dtype == np.float32 and np.isfinite(result).all()
    back = (result.astype(np.float64) - offset) / scale
    # the same restoration, up to float32 rounding of the scaled values
    tolerance = 1e-5 + 4 * np.finfo(np.float32).eps * (abs(offset) / scale + 1)
    np.testing.assert_allclose(back, unit, atol=tolerance)


def test_int64_data_with_a_usable_spread_is_restored():
    counts = (IMG * 5e4).astype(np.int64) + 10**6
    result = restore(counts, **RUN)
    assert np.isfinite(result.image).all()
    assert counts.min() <= result.image.min() and result.image.max() <= counts.max()


def test_a_refused_run_copies_nothing_before_the_memory_check(monkeypatch):
    image = RNG.integers(0, 255, (1024, 1024), dtype=np.uint8)  # 1 MiB; float64: 8 MiB
    monkeypatch.setattr(sizing, "available_bytes", lambda device: 2**20)
    tracemalloc.start()  # torch is imported already (at the top), so it is not counted
    try:
        with pytest.raises(ValueError, match="needs about .* but cpu has"):
            restore(image, iterations=1, device="cpu")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < image.nbytes, f"{peak / 2**20:.1f} MiB allocated before the refusal"


def test_validate_reads_the_image_without_copying_it():
    image = RNG.random((1024, 1024))  # 8 MiB
    tracemalloc.start()
    try:
        validate(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < image.nbytes / 16


def test_a_non_finite_estimate_is_never_handed_out(noisy64):
    from napari_dip.pipeline import build_solver
    from napari_dip.problem import to_output
    from napari_dip.request import build_request

    solver = build_solver(build_request(noisy64[0], **RUN))
    estimate = torch.full(solver.problem.estimate_shape, 0.5)
    np.testing.assert_allclose(to_output(estimate, solver.problem, solver.request),
                               noisy64[0].min() + 0.5 * np.ptp(noisy64[0]), rtol=1e-6)
    estimate[0, 0, 5, 5] = float("nan")
    with pytest.raises(FloatingPointError, match="1 NaN or infinite value"):
        to_output(estimate, solver.problem, solver.request)
