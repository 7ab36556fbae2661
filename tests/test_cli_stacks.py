"""The command line with stacks and volumes: TIFF stacks, NIfTI, DICOM, --axes/--mode/--tile."""

import json
import sys

import numpy as np
import pytest
import tifffile

from napari_dip.cli import main
from napari_dip.imageio import read_data


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _stack(planes=3, size=24, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    clean = np.stack([0.5 + 0.3 * np.sin(6 * xx + k) * np.cos(4 * yy) for k in range(planes)])
    return (clean + rng.normal(0, 0.1, clean.shape)).astype(np.float32)


def test_tiff_stack_needs_axes_then_restores_plane_by_plane(tmp_path, capsys):
    src, out = tmp_path / "stack.tif", tmp_path / "out.tif"
    tifffile.imwrite(src, _stack(), photometric="minisblack")
    code, _, stderr = run(capsys, "restore", str(src), "-o", str(out), "--iterations", "2",
                          "--quiet")
    assert code == 2 and "pass --axes, e.g. --axes ZYX" in stderr
    code, stdout, stderr = run(capsys, "restore", str(src), "-o", str(out), "--iterations", "2",
                               "--axes", "ZYX", "--no-warm-start")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["axes"] == "ZYX" and summary["mode"] == "slices" and summary["planes"] == 3
    assert "plane=3/3" in stderr and "6/6" in stderr  # progress over the whole stack
    data = read_data(out)  # the written stack names its axes
    assert data.array.shape == (3, 24, 24) and data.axes == "ZYX"
    with tifffile.TiffFile(out) as tif:
        params = json.loads(tif.pages[0].description)
    assert params["warm_start"] is False and params["iterations"] == 2


def test_tiff_metadata_names_the_axes_and_volume_mode(tmp_path, capsys):
    src, out = tmp_path / "vol.tif", tmp_path / "vol_out.tif"
    tifffile.imwrite(src, _stack(planes=4, size=16), imagej=True,
                     metadata={"axes": "ZYX", "spacing": 2.0})
    assert read_data(src).axes == "ZYX" and read_data(src).spacing == (2.0, 1.0, 1.0)
    code, stdout, stderr = run(capsys, "restore", str(src), "-o", str(out), "--mode", "volume",
                               "--iterations", "2", "--quiet")
    assert code == 0, stderr
    assert json.loads(stdout)["mode"] == "volume"
    assert tifffile.imread(out).shape == (4, 16, 16)


def test_tiles_from_the_command_line(tmp_path, capsys):
    src = tmp_path / "big.tif"
    tifffile.imwrite(src, _stack(planes=1, size=80)[0])
    code, stdout, stderr = run(capsys, "restore", str(src), "--tile", "48", "--overlap", "12",
                               "--iterations", "1", "--quiet")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["tile"] == 48 and summary["tiles"] == 4
    code, _, stderr = run(capsys, "restore", str(src), "--tile", "big", "--quiet")
    assert code == 2 and "--tile must be a number of pixels or 'auto'" in stderr


def test_nifti_volume_in_and_out(tmp_path, capsys, shared_data):
    nibabel = pytest.importorskip("nibabel")
    src = shared_data / "mri" / "anatomical.nii"
    # a small crop keeps the test quick; it keeps the file's orientation
    image = nibabel.load(src)
    crop = image.slicer[:, :, 10:13]
    small = tmp_path / "crop.nii.gz"
    nibabel.save(crop, small)
    data = read_data(small)
    assert data.axes == "XYZ" and data.array.shape == (33, 41, 3)
    assert data.spacing == (2.0, 2.0, 2.0)
    out = tmp_path / "crop_restored.nii.gz"
    code, stdout, stderr = run(capsys, "restore", str(small), "-o", str(out), "--iterations",
                               "2", "--quiet")
    assert code == 0, stderr
    assert json.loads(stdout)["planes"] == 3  # the axial slices, one after the other
    restored = nibabel.load(out)
    assert restored.shape == (33, 41, 3)
    np.testing.assert_allclose(restored.affine, crop.affine)
    assert restored.get_data_dtype().str[1:] == "f4"  # float32 (in the source's byte order)


def test_nifti_super_resolution_along_z_keeps_the_extent(tmp_path, capsys):
    nibabel = pytest.importorskip("nibabel")
    rng = np.random.default_rng(0)
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    affine[:3, 3] = (10, 20, 30)
    src, out = tmp_path / "thick.nii", tmp_path / "thin.nii"
    nibabel.save(nibabel.Nifti1Image(rng.random((16, 16, 4)).astype(np.float32), affine), src)
    code, _, stderr = run(capsys, "restore", str(src), "-o", str(out), "--mode", "volume",
                          "--task", "super_resolution", "--factor", "2", "--iterations", "1",
                          "--quiet")
    assert code == 0, stderr
    thin = nibabel.load(out)
    assert thin.shape == (16, 16, 8)
    assert thin.header.get_zooms()[:3] == pytest.approx((1.0, 1.0, 1.5))
    # the first thin slice's centre lies a quarter of a thick slice before the thick one's
    assert thin.affine[2, 3] == pytest.approx(30 - 0.75)


def test_dicom_slice(tmp_path, capsys, shared_data):
    pytest.importorskip("pydicom")
    src = shared_data / "mri" / "MR_small.dcm"
    data = read_data(src)
    assert data.array.shape == (64, 64) and data.axes is None
    out = tmp_path / "mr.tif"
    code, _, stderr = run(capsys, "restore", str(src), "-o", str(out), "--iterations", "2",
                          "--quiet")
    assert code == 0, stderr
    assert tifffile.imread(out).shape == (64, 64)
    code, _, stderr = run(capsys, "restore", str(src), "-o", str(tmp_path / "x.dcm"),
                          "--iterations", "1", "--quiet")
    assert code == 2 and "does not write it" in stderr


@pytest.mark.parametrize("module, suffix", [("nibabel", ".nii"), ("nibabel", ".nii.gz"),
                                            ("pydicom", ".dcm")])
def test_missing_optional_packages_are_named(tmp_path, capsys, monkeypatch, module, suffix):
    path = tmp_path / f"image{suffix}"
    path.write_bytes(b"not really")
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    code, _, stderr = run(capsys, "restore", str(path), "--quiet")
    assert code == 2
    assert f"optional package '{module}'" in stderr and "napari-dip[io]" in stderr


def test_mode_and_axes_errors(tmp_path, capsys):
    src = tmp_path / "plane.tif"
    tifffile.imwrite(src, _stack(planes=1)[0])
    code, _, stderr = run(capsys, "restore", str(src), "--mode", "volume", "--quiet")
    assert code == 2 and "--mode needs" in stderr
    code, _, stderr = run(capsys, "restore", str(src), "--axes", "ZYX", "--quiet")
    assert code == 2 and "names 3 axes but the image has 2" in stderr
