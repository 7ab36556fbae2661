"""Ensembles (``ensemble=K``): K fits in one batched network, averaged, with their per-pixel
standard deviation as ``result.uncertainty``; the API, the engine, stacks and tiles, the
memory check and the command line."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import psnr

from napari_dip import restore, validate
from napari_dip.batch_cli import apply_params
from napari_dip.cli import _parser, main
from napari_dip.drivers import drain
from napari_dip.networks import combine_members, make_network
from napari_dip.pipeline import build_solver
from napari_dip.presets import get_preset
from napari_dip.problem import to_output
from napari_dip.request import build_plan, build_request
from napari_dip.safe_write import temporary_files

FEW = {"iterations": 3, "early_stop": False}


# -- the network ------------------------------------------------------------------------------
def test_one_member_is_the_single_network_and_k_members_are_k_networks():
    config = get_preset("fast", "denoise").network
    torch.manual_seed(3)
    single = make_network(16, 1, config)
    torch.manual_seed(3)
    again = make_network(16, 1, config, members=1)
    assert all(torch.equal(a, b) for a, b in zip(single.state_dict().values(),
                                                  again.state_dict().values(), strict=True))
    networks = []
    for k in range(3):
        torch.manual_seed(10 + k)
        networks.append(make_network(16, 1, config).double())
    grouped = combine_members(networks)
    assert grouped.members == 3
    assert sum(p.numel() for p in grouped.parameters()) \
        == 3 * sum(p.numel() for p in single.parameters())
    inputs = [torch.rand(1, 16, 64, 64, dtype=torch.float64) for _ in range(3)]
    out = grouped(torch.cat(inputs, dim=1))
    assert out.shape == (3, 1, 64, 64)
    for k in range(3):  # each member computes its own network: its own skips and BatchNorms
        torch.testing.assert_close(out[k:k + 1], networks[k](inputs[k]), rtol=0, atol=1e-12)
        member = grouped.member(k)
        assert all(torch.equal(a, b) for a, b in zip(
            member.state_dict().values(), networks[k].state_dict().values(), strict=True))


# -- K = 1, and member k against the single run with seed + k ----------------------------------
def test_ensemble_of_one_is_the_single_run_bit_for_bit(noisy64):
    noisy, _ = noisy64
    larger = np.pad(noisy, 20, mode="reflect")  # 104 px: "auto" fits once
    plain = restore(larger, iterations=25)
    one = restore(larger, iterations=25, ensemble=1)
    np.testing.assert_array_equal(one.image, plain.image)
    assert one.history["loss"] == plain.history["loss"]
    assert one.uncertainty is None and plain.uncertainty is None
    assert one.parameters["ensemble"] == plain.parameters["ensemble"] == 1


@pytest.mark.auto_ensemble
def test_auto_averages_two_fits_where_measured_on_a_small_plane(noisy64):
    noisy, _ = noisy64
    # Gaussian denoising that blends with BM3D fits once (+ its validation fit,
    # tests/test_thinning.py); the network alone averages two
    assert restore(noisy, iterations=1).parameters["ensemble"] == 1
    small = restore(noisy, iterations=3, blend=False)
    assert small.parameters["ensemble"] == 2 and small.uncertainty.shape == noisy.shape
    again = restore(noisy, iterations=3, ensemble="auto", blend=False)
    np.testing.assert_array_equal(small.image, again.image)
    np.testing.assert_array_equal(small.image, restore(noisy, iterations=3, ensemble=2).image)
    edge = np.pad(noisy, 18, mode="reflect")  # 100 x 100: still two
    assert restore(edge, iterations=1, blend=False).parameters["ensemble"] == 2
    # Poisson denoising and super-resolution (to at most 100 x 100 pixels) too
    counts = np.round(30 * np.clip(noisy, 0, 1))
    assert restore(counts, noise="poisson", iterations=1).parameters["ensemble"] == 2
    assert restore(counts, task="deblur", kernel="uniform", noise="poisson",
                   iterations=1).parameters["ensemble"] == 2  # photon-count deconvolution
    assert restore(noisy[:25, :25], task="super_resolution", factor=4,
                   iterations=1).parameters["ensemble"] == 2
    fits_once = {
        "a larger plane": restore(np.pad(edge, ((0, 1), (0, 0))), iterations=1, blend=False),
        "DeepRED": restore(noisy, method="deepred", iterations=1),
        "another task": restore(noisy, task="inpaint", mask=noisy > 0.8, iterations=1),
        "deblurring": restore(noisy, task="deblur", kernel="uniform", iterations=1),
        "a super-resolved plane over 100 x 100": restore(
            noisy[:26, :26], task="super_resolution", factor=4, iterations=1),
        "Rician noise": restore(np.clip(noisy, 0, 1), noise="rician", noise_sigma=0.1,
                                iterations=1),
        "a tiled run": restore(edge, tile=64, overlap=16, iterations=1),
        "a volume": restore(np.stack([noisy[:32, :32]] * 8), axes="ZYX", mode="volume",
                            iterations=1),
    }
    for what, result in fits_once.items():
        assert result.parameters["ensemble"] == 1, what
        assert result.uncertainty is None, what
    # a stack's planes blend with BM3D as single images do: one fit each
    stack = restore(np.stack([noisy[:32, :32]] * 2), axes="ZYX", iterations=1)
    assert stack.parameters["ensemble"] == 1 and stack.uncertainty is None
    stack = restore(np.stack([noisy[:32, :32]] * 2), axes="ZYX", iterations=1, blend=False)
    assert stack.parameters["ensemble"] == 2 and stack.uncertainty.shape == (2, 32, 32)


def _in_float64(solver):
    """The solver's network, input and measurement in float64, where the grouped and the
    single convolutions agree exactly (in float32 they differ by ~1e-5 at the first step,
    which DIP's first Adam steps amplify, as they do any rounding difference)."""
    solver.net.double()  # in place: the optimiser keeps its parameters
    solver.z = solver.z.double()
    solver.problem.y = solver.problem.y.double()
    return solver


def test_member_k_follows_the_single_run_with_seed_plus_k(noisy64):
    noisy, _ = noisy64
    request = build_request(noisy[:32, :32], iterations=6, early_stop=False, ensemble=3,
                            seed=7)
    ensemble = _in_float64(build_solver(request))
    singles = [_in_float64(build_solver(replace(request, ensemble=1, seed=7 + k)))
               for k in range(3)]
    width = singles[0].z.shape[1]
    for k, single in enumerate(singles):  # the same start: weights, input
        assert torch.equal(ensemble.z[:, k * width:(k + 1) * width], single.z)
        assert all(torch.equal(a, b) for a, b in zip(
            ensemble.net.member(k).state_dict().values(), single.net.state_dict().values(),
            strict=True))
    drain(ensemble.run())
    for single in singles:
        drain(single.run())
    for k, single in enumerate(singles):  # the same perturbations, gradients, Adam steps
        torch.testing.assert_close(ensemble.average.value[k:k + 1], single.average.value,
                                   rtol=0, atol=1e-10)
    members = torch.cat([s.average.value for s in singles])
    torch.testing.assert_close(ensemble.estimate(), members.mean(0, keepdim=True),
                               rtol=0, atol=1e-10)


def test_the_first_step_in_float32_is_the_single_runs_mean_and_spread(noisy64):
    noisy, _ = noisy64
    result = restore(noisy, iterations=1, early_stop=False, ensemble=3, seed=4)
    singles = np.stack([restore(noisy, iterations=1, early_stop=False, seed=4 + k,
                                ensemble=1).image for k in range(3)])
    np.testing.assert_allclose(result.image, singles.mean(0), atol=1e-4)
    np.testing.assert_allclose(result.uncertainty, singles.std(0, ddof=1), atol=1e-4)
    assert result.uncertainty.mean() > 1e-3  # the members do differ


# -- the uncertainty ------------------------------------------------------------------------------
def test_uncertainty_is_float32_in_the_inputs_units_and_shape(noisy64, astronaut48):
    noisy, _ = noisy64
    image = noisy[:32, :32]
    a = restore(image, ensemble=2, iterations=4, early_stop=False)
    b = restore(image * 1024, ensemble=2, iterations=4, early_stop=False)  # exact in float
    assert a.uncertainty.dtype == np.float32 and a.uncertainty.shape == a.image.shape
    assert (a.uncertainty >= 0).all() and a.uncertainty.mean() > 1e-3
    np.testing.assert_allclose(b.uncertainty, 1024 * a.uncertainty, rtol=1e-5, atol=1e-4)
    rgb = restore(astronaut48, channel_axis=-1, ensemble=2, iterations=2)
    assert rgb.uncertainty.shape == rgb.image.shape == astronaut48.shape
    sr = restore(image, task="super_resolution", factor=2, ensemble=2, iterations=2)
    assert sr.uncertainty.shape == sr.image.shape == (64, 64)


def test_uncertainty_is_larger_in_an_inpainting_hole(camera64):
    image = camera64[:48, :48]
    mask = np.zeros(image.shape, bool)
    mask[16:32, 16:32] = True
    result = restore(image, task="inpaint", mask=mask, iterations=40, ensemble=3)
    np.testing.assert_array_equal(result.image[~mask], image[~mask])  # kept as measured
    hole, known = result.uncertainty[mask].mean(), result.uncertainty[~mask].mean()
    # measured: 0.019 in the hole against 0.010 on known pixels (medians 0.019, 0.008)
    assert hole > 1.5 * known > 0


def test_the_mean_of_four_beats_its_members_at_equal_steps(noisy64):
    noisy, clean = noisy64
    solver = build_solver(build_request(noisy, iterations=60, early_stop=False, ensemble=4))
    result = drain(solver.run())
    members = [psnr(to_output(solver.average.value[k:k + 1], solver.problem, solver.request),
                    clean) for k in range(4)]
    mean = psnr(result.image, clean)
    # measured (2-core EPYC, 1 thread): mean 23.90 dB, members 23.10, 23.06, 23.66, 24.26
    # (their mean 23.52); a single run with seed 0 reaches 23.52 dB at 60 steps
    assert mean > np.mean(members) + 0.2
    assert mean > members[0] + 0.3


def test_an_ensembles_loss_is_its_members_mean_data_term(noisy64):
    """What the noise-level rule compares with the noise variance: the members' own data
    terms, averaged (each member fits as it would alone), not the smaller residual of
    their mean."""
    noisy, _ = noisy64
    solver = build_solver(build_request(noisy, ensemble=3, **FEW))
    outputs = []
    solver.net.register_forward_hook(lambda module, args, out: outputs.append(out.detach()))
    steps = list(solver.run())
    assert len(steps) == len(outputs) == 3
    for step, out in zip(steps, outputs, strict=True):
        members = [float(solver.data_term(out[k:k + 1])) for k in range(3)]
        assert step.loss == pytest.approx(np.mean(members), rel=1e-5)
        assert step.loss > 1.01 * float(solver.data_term(out.mean(dim=0, keepdim=True)))


def test_an_ensemble_stops_about_where_its_fits_would_and_beats_them(noisy64):
    noisy, clean = noisy64
    single = restore(noisy, noise_sigma=25 / 255, seed=0, ensemble=1)
    ensemble = restore(noisy, noise_sigma=25 / 255, seed=0, ensemble=3)
    assert ensemble.parameters["stopping"] == single.parameters["stopping"] == "discrepancy"
    # measured (2-core EPYC, 2 threads): single 495 steps, 28.40 dB; ensemble 463 steps,
    # 28.77 dB. Stopping on the mean output's own residual (before 2026-12-04): 316 steps,
    # 28.55 dB
    assert ensemble.stopped_at > 0.85 * single.stopped_at
    assert psnr(ensemble.image, clean) > psnr(single.image, clean) + 0.25


def test_parameters_record_the_ensemble(noisy64):
    noisy, _ = noisy64
    result = restore(noisy, ensemble=np.int64(2), iterations=2)
    assert result.parameters["ensemble"] == 2
    assert type(result.parameters["ensemble"]) is int
    json.dumps(result.parameters)
    again = restore(noisy, **{k: result.parameters[k] for k in ("ensemble", "seed",
                                                                  "iterations")})
    np.testing.assert_array_equal(again.uncertainty, result.uncertainty)


# -- refusals ------------------------------------------------------------------------------------
@pytest.mark.auto_ensemble  # the message names the automatic choice
@pytest.mark.parametrize("value", [True, np.True_, 0, 65, -1, 2.0, "4", None])
def test_bad_ensembles_are_refused_before_any_work(noisy64, value):
    noisy, _ = noisy64
    with pytest.raises(ValueError, match=r"ensemble must be 'auto' or the number of fits to "
                                         r"average, a whole number from 1 to 64 \(e\.g\. "
                                         r"ensemble=4.*'auto', the default, is 2 fits for DIP "
                                         r"denoising of planes up to 10000 pixels \(1 where "
                                         r"it blends with BM3D\)"):
        validate(noisy, ensemble=value)


def test_deepred_and_volumes_refuse_ensembles(noisy64):
    noisy, _ = noisy64
    with pytest.raises(ValueError, match=r"ensemble=2 runs with method='dip' only.*use "
                                         r"method='dip' with ensemble=2, or "
                                         r"method='deepred' with ensemble=1"):
        validate(noisy, method="deepred", ensemble=2)
    validate(noisy, method="deepred", ensemble=1)
    volume = np.stack([noisy[:32, :32]] * 8)
    with pytest.raises(ValueError, match=r"ensemble=3 restores 2-D planes.*use "
                                         r"mode='slices'.*or ensemble=1 for the volume"):
        restore(volume, axes="ZYX", mode="volume", ensemble=3)
    validate(volume, axes="ZYX", mode="slices", ensemble=3)


def test_an_ensemble_too_large_for_memory_is_refused_before_work(noisy64, monkeypatch):
    from napari_dip import sizing

    noisy, _ = noisy64
    one = sizing.part_bytes(build_plan(noisy, ensemble=1).template, (64, 64), 1)
    many = sizing.part_bytes(build_plan(noisy, ensemble=64).template, (64, 64), 1)
    assert many - sizing.memory.OVERHEAD > 60 * (one - sizing.memory.OVERHEAD)
    free = (one + many) / 2 / sizing.USABLE_FRACTION
    monkeypatch.setattr(sizing, "available_bytes", lambda device: int(free))
    with pytest.raises(ValueError, match=r"with the 'fast' preset and an ensemble of 64 "
                                         r".*or average fewer fits"):
        restore(noisy, ensemble=64)
    restore(noisy, ensemble=1, iterations=1)  # what fits still runs


# -- stacks and tiles ------------------------------------------------------------------------------
def test_a_stack_stacks_the_uncertainty(noisy64):
    noisy, _ = noisy64
    plane = noisy[:32, :32]
    stack = np.stack([plane, np.full_like(plane, 0.5), noisy[32:, 32:]])
    result = restore(stack, axes="ZYX", ensemble=2, warm_start=False, **FEW)
    assert result.uncertainty.shape == stack.shape and result.uncertainty.dtype == np.float32
    assert result.parameters["ensemble"] == 2
    alone = restore(plane, ensemble=2, **FEW)  # every plane is its own run
    np.testing.assert_array_equal(result.uncertainty[0], alone.uncertainty)
    np.testing.assert_array_equal(result.image[0], alone.image)
    assert not result.uncertainty[1].any()  # a constant plane needs no run
    assert result.uncertainty[2].mean() > 1e-3
    warm = restore(np.moveaxis(stack, 0, -1), axes="YXZ", ensemble=2, **FEW)
    assert warm.uncertainty.shape == (32, 32, 3)


def test_tiles_blend_the_uncertainty_with_the_images_weights(noisy64):
    noisy, _ = noisy64
    result = restore(noisy, tile=48, ensemble=2, iterations=2, early_stop=False)
    assert result.parameters["tiles"] > 1
    assert result.uncertainty.shape == noisy.shape
    assert np.isfinite(result.uncertainty).all() and (result.uncertainty > 0).mean() > 0.99


# -- the command line ------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path, monkeypatch, noisy64):
    tifffile.imwrite(tmp_path / "img.tif", noisy64[0][:32, :32])
    tifffile.imwrite(tmp_path / "existing.tif", np.zeros((4, 4), np.float32))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _cli(capsys, *argv):
    code = main(["restore", "img.tif", "--iterations", "2", "--quiet", "--threads", "1",
                 *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_the_uncertainty(folder, capsys):
    code, out, err = _cli(capsys, "-o", "out.tif", "--ensemble", "2", "--uncertainty",
                          "spread.tif")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["ensemble"] == 2 and summary["uncertainty"] == "spread.tif"
    image, spread = tifffile.imread("out.tif"), tifffile.imread("spread.tif")
    assert spread.shape == image.shape == (32, 32) and spread.dtype == np.float32
    assert (spread >= 0).all() and spread.mean() > 1e-3
    with tifffile.TiffFile("spread.tif") as tif:
        assert "uncertainty" in tif.pages[0].description
    assert not temporary_files(folder)
    code, _, err = _cli(capsys, "-o", "out.tif", "--ensemble", "2", "--uncertainty",
                        "spread.tif")
    assert code == 2 and "out.tif exists; pass --overwrite" in err
    code, _, err = _cli(capsys, "-o", "out.tif", "--ensemble", "2", "--uncertainty",
                        "spread.tif", "--overwrite", "--seed", "1")
    assert code == 0, err
    assert not np.array_equal(tifffile.imread("spread.tif"), spread)


@pytest.mark.parametrize("argv, message", [
    (["--uncertainty", "u.tif"], "needs --ensemble K with K >= 2 (got auto, the default, "
                                 "which fits once on all but small denoising images); add "
                                 "--ensemble 4"),
    (["--ensemble", "auto", "--uncertainty", "u.tif"], "(got auto, the default"),
    (["--ensemble", "1", "--uncertainty", "u.tif"], "add --ensemble 4"),
    (["--ensemble", "2", "--uncertainty", "existing.tif"],
     "existing.tif exists; pass --overwrite to replace it, or choose another --uncertainty"),
    (["--ensemble", "2", "--uncertainty", "out.tif"], "is the output file too"),
    (["--ensemble", "2", "--uncertainty", "img.tif", "--overwrite"],
     "the --uncertainty file img.tif is the input img.tif (the same file); choose another "
     "--uncertainty"),
    (["--ensemble", "2", "--uncertainty", "nofolder/u.tif"], "does not exist"),
    (["--ensemble", "0"], "ensemble must be 'auto' or the number of fits"),
    (["--ensemble", "65"], "from 1 to 64"),
    (["--ensemble", "2", "--method", "deepred"], "runs with --method dip only"),
])
def test_cli_refusals_come_before_the_run_and_write_nothing(folder, capsys, monkeypatch,
                                                            argv, message):
    from napari_dip import cli

    def started(*args, **kwargs):
        pytest.fail("the run started")

    monkeypatch.setattr(cli, "_run", started)
    before = sorted(p.name for p in folder.iterdir())
    code, _, err = _cli(capsys, "-o", "out.tif", *argv)
    assert code == 2 and message in err, err
    assert sorted(p.name for p in folder.iterdir()) == before
    assert Path("existing.tif").stat().st_size > 0


def test_a_bad_ensemble_word_is_an_argument_error(folder, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["restore", "img.tif", "-o", "out.tif", "--ensemble", "two"])
    assert exit_info.value.code == 2
    assert "expected 'auto' or a whole number of fits, e.g. --ensemble 4 (got 'two')" \
        in capsys.readouterr().err
    assert not Path("out.tif").exists()


def test_a_failed_uncertainty_write_leaves_no_partial_file(folder, capsys, monkeypatch):
    import errno

    from napari_dip import imageio

    original = imageio._write_tiff

    def write(path, image, parameters, axes):
        if str(path).endswith("-spread.tif"):
            Path(path).write_bytes(b"II*\x00" + bytes(50))
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(path, image, parameters, axes)

    monkeypatch.setattr(imageio, "_write_tiff", write)
    code, _, err = _cli(capsys, "-o", "out.tif", "--ensemble", "2", "--uncertainty",
                        "spread.tif")
    assert code == 2 and "cannot write spread.tif: No space left on device" in err
    assert not Path("spread.tif").exists() and not temporary_files(folder)
    assert tifffile.imread("out.tif").shape == (32, 32)  # the result itself is complete


def test_batch_takes_the_ensemble_from_params(tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"restore": {"task": "denoise", "ensemble": 3}}))
    argv = ["batch", "x.tif", "-o", str(tmp_path / "out"), "--params", str(params)]
    args = _parser().parse_args(argv)
    assert apply_params(args, argv[1:]) == {} and args.ensemble == 3
    argv += ["--ensemble", "2"]
    args = _parser().parse_args(argv)
    apply_params(args, argv[1:])
    assert args.ensemble == 2  # given on the command line: it wins
