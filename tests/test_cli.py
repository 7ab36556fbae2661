"""The command line: files in, files out, progress, errors as exit code 2."""

import json

import numpy as np
import pytest
import tifffile
from skimage import io

from napari_dip.cli import main


@pytest.fixture
def grey_png(tmp_path, noisy64):
    path = tmp_path / "noisy.png"
    io.imsave(path, (np.clip(noisy64[0], 0, 1) * 255).astype(np.uint8), check_contrast=False)
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_png_in_png_out_keeps_shape_and_dtype(tmp_path, grey_png, capsys):
    out = tmp_path / "clean.png"
    code, stdout, stderr = run(capsys, "restore", str(grey_png), "-o", str(out),
                               "--iterations", "4", "--seed", "1", "--threads", "1")
    assert code == 0, stderr
    restored = io.imread(out)
    assert restored.shape == (64, 64) and restored.dtype == np.uint8
    summary = json.loads(stdout)
    assert summary["iterations"] == 4 and summary["output"] == str(out)
    assert "4/4" in stderr  # the progress bar reached the end


def test_tiff_output_is_float32_with_parameters(tmp_path, noisy64, capsys):
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, (noisy64[0] * 1000 - 50).astype(np.float32))
    code, stdout, _ = run(capsys, "restore", str(src), "--iterations", "3", "--quiet")
    assert code == 0
    out = tmp_path / "in_restored.tif"  # default name
    with tifffile.TiffFile(out) as tif:
        image = tif.asarray()
        params = json.loads(tif.pages[0].description)
    assert image.dtype == np.float32 and image.shape == (64, 64)
    assert params["iterations"] == 3 and params["task"] == "denoise"


def test_deepred_options_reach_the_run(tmp_path, noisy64, capsys):
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    tifffile.imwrite(src, noisy64[0])
    code, _, stderr = run(capsys, "restore", str(src), "-o", str(out), "--method", "deepred",
                          "--denoiser", "tv", "--denoiser-sigma", "0.05", "--iterations", "3",
                          "--quiet")
    assert code == 0, stderr
    with tifffile.TiffFile(out) as tif:
        params = json.loads(tif.pages[0].description)
    assert params["method"] == "deepred" and params["denoiser"] == "tv"
    assert params["denoiser_sigma"] == 0.05


def test_no_blend_reaches_the_run(tmp_path, noisy64, capsys):
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    tifffile.imwrite(src, noisy64[0])
    code, _, stderr = run(capsys, "restore", str(src), "-o", str(out), "--no-blend",
                          "--iterations", "3", "--quiet")
    assert code == 0, stderr
    with tifffile.TiffFile(out) as tif:
        params = json.loads(tif.pages[0].description)
    assert params["blend"] is False and "classical" not in params


def test_rgb_inpainting_with_a_known_pixel_mask(tmp_path, astronaut48, capsys):
    src, mask_path, out = tmp_path / "rgb.png", tmp_path / "mask.png", tmp_path / "o.png"
    io.imsave(src, (astronaut48 * 255).astype(np.uint8), check_contrast=False)
    known = np.full((48, 48), 255, np.uint8)
    known[10:14, 5:40] = 0  # DIP-paper convention: 255 = known, 0 = hole
    io.imsave(mask_path, known, check_contrast=False)
    code, stdout, stderr = run(capsys, "restore", str(src), "-o", str(out), "--task", "inpaint",
                               "--mask", str(mask_path), "--mask-known", "--iterations", "3",
                               "--quiet")
    assert code == 0, stderr
    restored = io.imread(out)
    assert restored.shape == (48, 48, 3)
    # known pixels are unchanged; the hole was filled with something other than black
    np.testing.assert_array_equal(restored[known == 255], io.imread(src)[known == 255])
    assert restored[10:14, 5:40].mean() > 20


def test_sample_reports_psnr(tmp_path, capsys):
    out = tmp_path / "sample.png"
    code, stdout, _ = run(capsys, "restore", "--sample", "-o", str(out), "--iterations", "150",
                          "--quiet")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["psnr_input"] == pytest.approx(20.27, abs=0.05)
    assert summary["psnr_result"] > summary["psnr_input"]
    assert io.imread(out).shape == (96, 96)


@pytest.mark.classical_blend
def test_the_summary_names_the_blend(tmp_path, capsys):
    out = tmp_path / "sample.png"
    code, stdout, stderr = run(capsys, "restore", "--sample", "-o", str(out), "--iterations",
                               "30", "--quiet")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["blended_with"] == "bm3d" and 0 <= summary["network_weight"] <= 1
    assert summary["psnr_result"] > summary["psnr_input"] + 5  # BM3D carries a short run
    code, stdout, _ = run(capsys, "restore", "--sample", "-o", str(tmp_path / "n.png"),
                          "--iterations", "30", "--quiet", "--no-blend")
    assert code == 0 and "blended_with" not in json.loads(stdout)


@pytest.mark.parametrize("argv, message", [
    (["restore"], "give an INPUT image file, or --sample"),
    (["restore", "missing.png"], "no such file"),
    (["restore", "--sample", "--task", "super_resolution"], "needs --factor"),
    (["restore", "--sample", "--denoiser", "nlm"], "--method deepred only"),
    (["restore", "--sample", "--threads", "0"], "--threads must be at least 1"),
    (["restore", "--sample", "--noise-sigma", "lots"], "--noise-sigma takes a number"),
    (["restore", "--sample", "--noise-sigma", "0.1", "--no-early-stop"],
     "--no-early-stop runs every iteration"),
    (["restore", "--sample", "--sample-of-nothing"], None),
])
def test_errors_exit_with_code_2_and_a_message(argv, message, capsys):
    if message is None:  # argparse's own errors
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        return
    code, _, stderr = run(capsys, *argv)
    assert code == 2
    assert "napari-dip: error: " in stderr and message in stderr


def test_float_result_that_does_not_fit_png_is_refused(tmp_path, capsys):
    src = tmp_path / "wide.tif"
    tifffile.imwrite(src, np.random.default_rng(0).random((32, 32)).astype(np.float32) * 500)
    code, _, stderr = run(capsys, "restore", str(src), "-o", str(tmp_path / "x.png"),
                          "--iterations", "2", "--quiet")
    assert code == 2 and "write a .tif" in stderr


def test_devices_lists_the_cpu(capsys):
    code, stdout, _ = run(capsys, "devices")
    assert code == 0 and stdout.split()[0] == "auto" and "cpu" in stdout.split()


@pytest.mark.parametrize("value, stopping, sigma", [
    ("20", "discrepancy", 20.0), ("none", "es-wmv", None), ("auto", "discrepancy", None)])
def test_noise_sigma_reaches_the_run(tmp_path, grey_png, capsys, value, stopping, sigma):
    out = tmp_path / "clean.tif"
    code, _, stderr = run(capsys, "restore", str(grey_png), "-o", str(out), "--iterations",
                          "3", "--noise-sigma", value, "--quiet")
    assert code == 0, stderr
    with tifffile.TiffFile(out) as tif:
        params = json.loads(tif.pages[0].description)
    assert params["stopping"] == stopping
    if sigma is not None:
        assert params["noise_sigma"] == sigma and params["noise_sigma_estimated"] is False
    elif stopping == "discrepancy":  # estimated, in grey levels of the 8-bit file
        assert params["noise_sigma_estimated"] is True and 15 < params["noise_sigma"] < 35


def test_progress_bar_ends_where_an_early_stop_ends_the_run(tmp_path, grey_png, capsys):
    out = tmp_path / "clean.png"
    # a noise level far above the data's (about 25 grey levels) is reached within steps
    code, stdout, stderr = run(capsys, "restore", str(grey_png), "-o", str(out),
                               "--iterations", "400", "--noise-sigma", "60")
    assert code == 0, stderr
    n = json.loads(stdout)["iterations"]
    assert 20 <= n < 400
    assert f"{n}/{n}" in stderr and "stopped early" in stderr


@pytest.mark.parametrize("extra, sigma, stopping", [
    ([], 0.01, "discrepancy"),  # the sky's read noise, as the sample declares it
    (["--noise-sigma", "none"], None, "es-wmv"),  # the user's word wins
    (["--no-early-stop"], None, None),  # no stop, so no noise level, and no error
])
def test_the_sky_sample_stops_at_its_read_noise(tmp_path, capsys, extra, sigma, stopping):
    out = tmp_path / "sky.tif"
    code, stdout, stderr = run(capsys, "restore", "--sample", "sky", "-o", str(out),
                               "--iterations", "4", "--quiet", *extra)
    assert code == 0, stderr
    with tifffile.TiffFile(out) as tif:
        params = json.loads(tif.pages[0].description)
    assert params["task"] == "inpaint"
    assert params.get("noise_sigma") == (None if sigma is None else pytest.approx(sigma))
    assert params.get("stopping") == stopping
