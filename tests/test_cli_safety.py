"""The command line never loses data: it never writes onto an input, keeps an existing
output unless --overwrite, checks before the run that the output can be written and hold
the result, writes atomically (no partial or temporary file after any failure), and
reports every bad file or option as ``napari-dip: error: ...`` with exit status 2."""

import errno
import hashlib
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from skimage import io

from napari_dip import cli, safe_write
from napari_dip.cli import main
from napari_dip.safe_write import PARTIAL_PREFIX, atomic_write, same_file

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root ignores permission bits
FAST = ["--iterations", "2", "--quiet", "--threads", "1"]


def _smooth(size=32, seed=0):
    """A float32 test image in [0.1, 0.9]: a smooth pattern plus a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    image = 0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy) + rng.normal(0, 0.05, (size, size))
    return np.clip(image, 0.1, 0.9).astype(np.float32)


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A folder of small inputs (the working directory of the test): pictures and TIFFs of
    several dtypes, masks, a kernel, a stack, links, a folder and corrupt files."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    image = _smooth()
    tifffile.imwrite(folder / "img.tif", image)
    tifffile.imwrite(folder / "flash.tif", _smooth(seed=1))
    tifffile.imwrite(folder / "u16.tif", (image * 60000).astype(np.uint16))
    tifffile.imwrite(folder / "i8.tif", (image * 100).astype(np.int8))
    tifffile.imwrite(folder / "i16.tif", (image * 1000 - 300).astype(np.int16))
    span = (image - image.min()) / (image.max() - image.min())
    tifffile.imwrite(folder / "wide.tif", (30 + 400 * span).astype(np.float32))  # [30, 430]
    tifffile.imwrite(folder / "rgb16.tif", (np.stack([image] * 3, -1) * 60000).astype(np.uint16))
    tifffile.imwrite(folder / "rgba.tif", (np.stack([image] * 4, -1) * 255).astype(np.uint8))
    tifffile.imwrite(folder / "stack.tif", np.stack([image, _smooth(seed=2), _smooth(seed=3)]),
                     photometric="minisblack")
    io.imsave(folder / "grey.png", (image * 255).astype(np.uint8), check_contrast=False)
    known = np.full((32, 32), 255, np.uint8)
    known[:8] = 0  # DIP-paper convention: 255 = known; 25 % holes
    io.imsave(folder / "known.png", known, check_contrast=False)
    io.imsave(folder / "holes.png", 255 - known, check_contrast=False)  # nonzero = hole
    np.save(folder / "k.npy", np.ones((3, 3)) / 9)
    tifffile.imwrite(folder / "existing.tif", np.zeros((8, 8), np.float32))
    (folder / "dir.tif").mkdir()
    (folder / "empty.tif").write_bytes(b"")
    for suffix in (".png", ".jpg", ".bmp", ".tif", ".nii", ".nii.gz", ".dcm", ".npy"):
        (folder / f"bad{suffix}").write_bytes(rng.bytes(600))
    (folder / "trunc.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(300))
    (folder / "odd.xyz").write_bytes(b"something")
    os.link(folder / "img.tif", folder / "hard.tif")
    os.symlink("img.tif", folder / "sym.tif")
    monkeypatch.chdir(folder)
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (hidden ones too) with its content's hash."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            entries[name] = "link to " + os.readlink(path)
        elif path.is_dir():
            entries[name] = "folder"
        else:
            entries[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


def run(capsys, *argv):
    """(exit status, stdout, stderr) of the command line, argparse's own errors included."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_run(monkeypatch):
    """Fail the test if a run starts: what it checks must be refused before the run."""
    def run_started(*args, **kwargs):
        pytest.fail("the run started; this should have been refused before it")

    monkeypatch.setattr(cli, "_run", run_started)


def fake_run(monkeypatch, image_of=None, during=None):
    """Replace the run by one that returns at once: its result is ``image_of(input)`` (the
    input as float32 by default); ``during()`` is called where the run would be."""
    calls = []

    def _run(image, kwargs, quiet):
        calls.append(kwargs)
        if during is not None:
            during()
        result = np.asarray(image, np.float32) if image_of is None else image_of(image)
        return SimpleNamespace(image=result, parameters={"task": "denoise"}, iterations=2,
                               stopped_at=2, elapsed=0.0)

    monkeypatch.setattr(cli, "_run", _run)
    return calls


# --- 1. never onto an input ---------------------------------------------------------------

@pytest.mark.parametrize("argv, output, names", [
    (["img.tif"], "img.tif", "the input img.tif"),
    (["img.tif"], "./img.tif", "the input img.tif"),
    (["img.tif"], "../data/img.tif", "the input img.tif"),
    (["img.tif"], "hard.tif", "the input img.tif"),  # a hard link: same inode
    (["img.tif"], "sym.tif", "the input img.tif"),  # a symbolic link to the input
    (["sym.tif"], "img.tif", "the input sym.tif"),  # the input is the link
    (["img.tif", "--task", "inpaint", "--mask", "known.png"], "known.png",
     "the --mask file known.png"),
    (["img.tif", "--task", "flash_no_flash", "--flash", "flash.tif"], "flash.tif",
     "the --flash file flash.tif"),
    (["img.tif", "--task", "deblur", "--kernel", "k.npy"], "k.npy", "the --kernel file k.npy"),
])
def test_never_writes_onto_an_input(data, capsys, no_run, argv, output, names):
    before = snapshot(data)
    code, _, err = run(capsys, "restore", *argv, "-o", output, "--overwrite", *FAST)
    assert code == 2
    assert f"the output {Path(output)} is {names} (the same file)" in err
    assert "choose another -o" in err
    assert snapshot(data) == before


# --- 2. an existing output is kept unless --overwrite -------------------------------------

def test_existing_output_is_kept_without_overwrite(data, capsys, no_run):
    before = snapshot(data)
    code, _, err = run(capsys, "restore", "img.tif", "-o", "existing.tif", *FAST)
    assert code == 2
    assert "existing.tif exists; pass --overwrite to replace it, or choose another -o" in err
    assert snapshot(data) == before


def test_overwrite_replaces_and_keeps_the_permissions(data, capsys):
    os.chmod("existing.tif", 0o640)
    code, _, err = run(capsys, "restore", "img.tif", "-o", "existing.tif", "--overwrite", *FAST)
    assert code == 0, err
    assert tifffile.imread("existing.tif").shape == (32, 32)  # the new result
    assert stat.S_IMODE(os.stat("existing.tif").st_mode) == 0o640
    assert not safe_write.temporary_files(data)


def test_default_output_name_is_refused_when_it_exists(data, capsys, no_run):
    Path("img_restored.tif").write_bytes(b"precious")
    code, _, err = run(capsys, "restore", "img.tif", *FAST)
    assert code == 2 and "img_restored.tif exists; pass --overwrite" in err
    assert Path("img_restored.tif").read_bytes() == b"precious"


# --- 3. the output folder and format, before the run --------------------------------------

def test_missing_folder_and_folder_as_output(data, capsys, no_run):
    before = snapshot(data)
    code, _, err = run(capsys, "restore", "img.tif", "-o", "nodir/out.tif", *FAST)
    assert code == 2 and "cannot write nodir/out.tif: the folder nodir does not exist" in err
    code, _, err = run(capsys, "restore", "img.tif", "-o", "dir.tif", *FAST)
    assert code == 2 and "cannot write dir.tif: it is a folder" in err
    code, _, err = run(capsys, "restore", "img.tif", "-o", "img.tif/out.tif", *FAST)
    assert code == 2 and "img.tif is not a folder" in err
    assert snapshot(data) == before


def _without_permission_override() -> list[str]:
    """A command prefix under which permission bits hold for this process: none for a
    normal user; for root, setpriv without the capabilities that bypass them."""
    if os.name != "posix":
        pytest.skip("POSIX permission bits")
    if not ROOT:
        return []
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    try:
        works = subprocess.run(prefix + ["true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("root without setpriv ignores permission bits")
    if works.returncode != 0:
        pytest.skip("root cannot drop its permission override here")
    return prefix


def _cli_child(prefix, cwd, *argv):
    """The command line in a child process: (exit status, stderr)."""
    done = subprocess.run(prefix + [sys.executable, "-m", "napari_dip.cli", "restore",
                                    *argv, *FAST], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    return done.returncode, done.stderr


def test_read_only_folder_is_refused_before_the_run(data):
    prefix = _without_permission_override()
    locked = data / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, err = _cli_child(prefix, data, "img.tif", "-o", "locked/out.tif")
    finally:
        locked.chmod(0o755)
    assert code == 2, err
    assert "cannot write locked/out.tif: the folder locked is not writable" in err
    assert list(locked.iterdir()) == []


def test_unwritable_folder_is_refused_before_the_run(data, capsys, no_run, monkeypatch):
    """As above on any machine (root too): the permission check and the real probe."""
    monkeypatch.setattr(safe_write.os, "access", lambda path, mode: False)
    code, _, err = run(capsys, "restore", "img.tif", "-o", "out.tif", *FAST)
    assert code == 2 and "cannot write out.tif: the folder . is not writable" in err
    monkeypatch.undo()
    monkeypatch.chdir(data)

    def refuse(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(safe_write, "_create_temporary", refuse)
    code, _, err = run(capsys, "restore", "img.tif", "-o", "out.tif", *FAST)
    assert code == 2
    assert "cannot write out.tif: cannot create a file in the folder . (Permission denied)" in err
    assert not Path("out.tif").exists()


@pytest.mark.parametrize("source, output, message", [
    ("u16.tif", "out.jpg", "a .jpg file holds 8-bit grey or RGB pictures, not this uint16 "
                           "grey result; write a .png or a .tif"),
    ("u16.tif", "out.bmp", "write a .png or a .tif"),
    ("rgb16.tif", "out.png", "not this uint16 RGB result; write a .tif (float32"),
    ("i8.tif", "out.png", "not this int8 grey result; write a .tif (float32, keeps the values)"),
    ("i16.tif", "out.png", "not this int16 grey result; write a .tif"),
    ("rgba.tif", "out.jpg", "not this uint8 RGBA result; write a .png or a .tif"),
    ("rgba.tif", "out.bmp", "not this uint8 RGBA result; write a .png or a .tif"),
    ("wide.tif", "out.png", "a float32 image with values in [30, 430] gives a result in "
                            "that range, which an 8/16-bit picture cannot hold"),
    ("img.tif", "out.xyz", "cannot write out.xyz: unknown file type '.xyz'"),
    ("img.tif", "out", "cannot write out: no file type (suffix)"),
    ("img.tif", "out.dcm", "napari-dip reads DICOM but does not write it"),
])
def test_formats_that_cannot_hold_the_result_are_refused_before_the_run(
        data, capsys, no_run, source, output, message):
    before = snapshot(data)
    code, _, err = run(capsys, "restore", source, "-o", output, *FAST)
    assert code == 2 and message in err, err
    assert snapshot(data) == before


def test_a_stack_to_a_picture_is_refused_before_the_run(data, capsys, no_run):
    code, _, err = run(capsys, "restore", "stack.tif", "--axes", "ZYX", "-o", "out.png", *FAST)
    assert code == 2
    assert "a result of shape (3, 32, 32) (a stack, a volume, or channels not last)" in err
    assert "write a .tif (float32, keeps the values) or a .nii/.nii.gz file" in err
    assert not Path("out.png").exists()


def test_super_resolution_shape_is_what_is_checked(data, capsys, no_run):
    """The output's shape comes from the validated plan: x2 of a picture is still one."""
    code, _, err = run(capsys, "restore", "u16.tif", "--task", "super_resolution", "--factor",
                       "2", "-o", "out.jpg", *FAST)
    assert code == 2 and "uint16 grey result" in err


def test_nifti_output_without_nibabel_is_refused_before_the_run(data, capsys, no_run,
                                                                 monkeypatch):
    monkeypatch.setitem(sys.modules, "nibabel", None)  # import fails as if not installed
    code, _, err = run(capsys, "restore", "img.tif", "-o", "out.nii.gz", *FAST)
    assert code == 2
    assert "optional package 'nibabel'" in err and "napari-dip[io]" in err
    assert not Path("out.nii.gz").exists()


def test_refusals_do_not_import_torch(data):
    code = ("import sys; from napari_dip.cli import main\n"
            "codes = [main(['restore', 'img.tif', '-o', 'img.tif']),\n"
            "         main(['restore', 'i8.tif', '-o', 'x.png']),\n"
            "         main(['restore', 'img.tif', '-o', 'existing.tif'])]\n"
            "print(codes, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=data, timeout=60)
    assert done.stdout.split() == ["[2,", "2,", "2]", "False"], done.stderr


# --- pictures that fit are written, and the write cannot fail after the run --------------

def test_uint16_to_png_keeps_16_bits(data, capsys):
    code, _, err = run(capsys, "restore", "u16.tif", "-o", "out.png", *FAST)
    assert code == 0, err
    assert io.imread("out.png").dtype == np.uint16


def test_float_input_in_0_1_to_png_is_clipped_not_refused(data, capsys, monkeypatch):
    """A result that overshoots [0, 1] a little still writes: clipped, 8-bit."""
    def overshoot(image):
        result = np.asarray(image, np.float32).copy()
        result[0, 0], result[0, 1] = -0.2, 1.3
        return result

    fake_run(monkeypatch, overshoot)
    code, _, err = run(capsys, "restore", "img.tif", "-o", "out.png", *FAST)
    assert code == 0, err
    written = io.imread("out.png")
    assert written.dtype == np.uint8 and written[0, 0] == 0 and written[0, 1] == 255
    expected = np.rint(tifffile.imread("img.tif") * 255)
    np.testing.assert_array_equal(written[1:], expected[1:])


# --- 4. atomic writes -------------------------------------------------------------------

def _failing_tiff_writer(monkeypatch, error, seen):
    """tifffile.imwrite that writes part of a file, then fails with ``error``."""
    def write(path, data, **kwargs):
        seen.append(Path(path))
        with open(path, "wb") as fh:
            fh.write(b"II*\x00" + bytes(100))
        raise error

    monkeypatch.setattr(tifffile, "imwrite", write)


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("error, code_expected, message", [
    (OSError(errno.ENOSPC, "No space left on device"), 2,
     "napari-dip: error: cannot write out.tif: No space left on device"),
    (OSError(errno.EFBIG, "File too large"), 2, "cannot write out.tif: File too large"),
    (OSError("4096 requested and 956 written"), 2,
     "cannot write out.tif: the disk is full or a file size limit was reached"),
    (KeyboardInterrupt(), 130, "napari-dip: cancelled"),
])
def test_a_failed_write_leaves_no_file(data, capsys, monkeypatch, overwrite, error,
                                       code_expected, message):
    if overwrite:
        Path("out.tif").write_bytes(b"the previous result")
    before = snapshot(data)
    fake_run(monkeypatch)
    seen = []
    _failing_tiff_writer(monkeypatch, error, seen)
    code, _, err = run(capsys, "restore", "img.tif", "-o", "out.tif",
                       *(["--overwrite"] if overwrite else []), *FAST)
    assert code == code_expected and message in err, err
    assert "Traceback" not in err
    # the writer got a temporary file beside the output, named after it
    assert seen[0].parent.resolve() == data and seen[0].name.startswith(PARTIAL_PREFIX)
    assert seen[0].name.endswith("-out.tif")
    assert snapshot(data) == before  # no temporary file; the previous result intact


def test_an_output_that_appears_during_the_run_is_kept(data, capsys, monkeypatch):
    fake_run(monkeypatch, during=lambda: Path("out.tif").write_bytes(b"someone else's"))
    code, _, err = run(capsys, "restore", "img.tif", "-o", "out.tif", *FAST)
    assert code == 2 and "cannot write out.tif: a file of that name appeared" in err
    assert Path("out.tif").read_bytes() == b"someone else's"
    assert not safe_write.temporary_files(data)


def test_atomic_write_on_its_own(tmp_path):
    target = tmp_path / "x.tif"
    with pytest.raises(RuntimeError), atomic_write(target) as temp:
        temp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []
    with atomic_write(target) as temp:
        assert temp.parent == tmp_path and temp.exists()
        temp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]
    with pytest.raises(FileExistsError), atomic_write(target, overwrite=False) as temp:
        temp.write_bytes(b"new")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]
    with pytest.raises(SystemExit), atomic_write(target) as temp:
        temp.write_bytes(b"new")
        raise SystemExit(1)
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


def test_same_file(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1")
    os.link(a, b)
    assert same_file(a, b) and same_file(a, tmp_path / "." / "a")
    assert not same_file(a, tmp_path / "c")  # does not exist
    (tmp_path / "c").write_bytes(b"1")
    assert not same_file(a, tmp_path / "c")  # equal bytes, another file


def test_a_signal_from_another_thread_waits_for_the_deferred_block():
    """The kernel may hand Ctrl-C to any thread (a Dask client's loop, say); the block
    must still finish before KeyboardInterrupt, which then arrives once."""
    import threading
    import time

    steps = []
    with pytest.raises(KeyboardInterrupt):
        with safe_write.signals_deferred():
            sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT))
            sender.start()
            sender.join()
            for _ in range(100):  # bytecode for Python to run a pending handler on
                time.sleep(0.001)
            steps.append("both halves written")
        steps.append("after the block")  # never: the signal lands on the way out
    assert steps == ["both halves written"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_new_output_gets_the_usual_permissions(data, capsys, monkeypatch):
    fake_run(monkeypatch)
    old = os.umask(0o027)
    try:
        code, _, err = run(capsys, "restore", "img.tif", "-o", "out.tif", *FAST)
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE(os.stat("out.tif").st_mode) == 0o640  # 0o666 less the umask


# --- 8. cancelling and SIGTERM in process -------------------------------------------------

def test_ctrl_c_during_the_run_exits_130_with_no_file(data, capsys, monkeypatch):
    def interrupt():
        raise KeyboardInterrupt

    fake_run(monkeypatch, during=interrupt)
    before = snapshot(data)
    code, _, err = run(capsys, "restore", "img.tif", "-o", "out.tif", *FAST)
    assert code == 130 and "napari-dip: cancelled" in err
    assert snapshot(data) == before


def test_sigterm_raises_during_the_run_and_the_handler_is_restored(data, capsys, monkeypatch):
    before_handler = signal.getsignal(signal.SIGTERM)
    seen = []

    def terminated():
        handler = signal.getsignal(signal.SIGTERM)
        seen.append(handler)
        handler(signal.SIGTERM, None)  # what the signal would do

    fake_run(monkeypatch, during=terminated)
    before = snapshot(data)
    code, _, err = run(capsys, "restore", "img.tif", "-o", "out.tif", *FAST)
    assert code == 143 and "napari-dip: terminated" in err
    assert seen[0] is not before_handler
    assert signal.getsignal(signal.SIGTERM) is before_handler
    assert snapshot(data) == before


# --- 5. read errors -----------------------------------------------------------------------

READ_ERRORS = [
    ("missing.png", "no such file"),
    ("dir.tif", "is a folder, not an image file"),
    ("empty.tif", "the file is empty (0 bytes)"),
    ("bad.png", "not a valid PNG file (not recognised as an image)"),
    ("trunc.png", "not a valid PNG file ("),
    ("bad.jpg", "not a valid JPEG file ("),
    ("bad.bmp", "not a valid BMP file ("),
    ("bad.tif", "not a valid TIFF file (not a TIFF file"),
    ("bad.nii", "not a valid NIfTI file ("),
    ("bad.nii.gz", "not a valid NIfTI file ("),
    ("bad.dcm", "not a valid DICOM file ("),
    ("odd.xyz", "unknown file type '.xyz'; use a TIFF"),
]


@pytest.mark.parametrize("path, reason", READ_ERRORS)
def test_unreadable_input(data, capsys, no_run, path, reason):
    before = snapshot(data)
    code, _, err = run(capsys, "restore", path, "-o", "out.tif", *FAST)
    assert code == 2
    assert f"napari-dip: error: cannot read {path}: {reason}" in err
    assert "Traceback" not in err and snapshot(data) == before


@pytest.mark.parametrize("option, task", [("--mask", "inpaint"), ("--flash", "flash_no_flash"),
                                          ("--kernel", "deblur")])
@pytest.mark.parametrize("path, reason", [
    ("missing.tif", "no such file"), ("dir.tif", "is a folder, not an image file"),
    ("bad.tif", "not a valid TIFF file ("), ("bad.png", "not a valid PNG file ("),
    ("empty.tif", "the file is empty (0 bytes)"),
])
def test_unreadable_task_inputs(data, capsys, no_run, option, task, path, reason):
    code, _, err = run(capsys, "restore", "img.tif", "--task", task, option, path,
                       "-o", "out.tif", *FAST)
    assert code == 2
    assert f"napari-dip: error: cannot read {path}: {reason}" in err
    assert not Path("out.tif").exists()


@pytest.mark.parametrize("path, reason", [("bad.npy", "not a valid NumPy .npy file ("),
                                          ("missing.npy", "no such file")])
def test_unreadable_kernel_array(data, capsys, no_run, path, reason):
    code, _, err = run(capsys, "restore", "img.tif", "--task", "deblur", "--kernel", path,
                       "-o", "out.tif", *FAST)
    assert code == 2 and f"cannot read {path}: {reason}" in err


@pytest.mark.parametrize("option", ["INPUT", "--mask"])
def test_unreadable_permission(data, option):
    prefix = _without_permission_override()
    before = snapshot(data)
    Path("known.png").chmod(0)
    argv = ["known.png"] if option == "INPUT" else ["img.tif", "--task", "inpaint",
                                                    "--mask", "known.png"]
    try:
        code, err = _cli_child(prefix, data, *argv, "-o", "out.tif")
    finally:
        Path("known.png").chmod(0o644)
    assert code == 2, err
    assert "napari-dip: error: cannot read known.png: permission denied" in err
    assert snapshot(data) == before


# --- 7. mask polarity ---------------------------------------------------------------------

@pytest.mark.parametrize("mask, known, warning", [
    ("known.png", False, "warning: the mask marks 75 % of the image as holes (pixels to fill);"
                         " if it marks known pixels (as the DIP paper's masks do, 255 = "
                         "known), pass --mask-known"),
    ("known.png", True, None),
    ("holes.png", False, None),
    ("holes.png", True, "warning: the mask marks 75 % of the image as holes (pixels to fill);"
                        " if it marks the holes (nonzero = pixel to fill), drop --mask-known"),
])
def test_mask_polarity_warning_comes_before_the_run(data, capsys, monkeypatch, mask, known,
                                                    warning):
    printed = []
    fake_run(monkeypatch, during=lambda: printed.append(capsys.readouterr().err))
    code, _, err = run(capsys, "restore", "grey.png", "--task", "inpaint", "--mask", mask,
                       *(["--mask-known"] if known else []), "-o", "out.tif", *FAST)
    assert code == 0, err
    if warning is None:
        assert "warning" not in printed[0]
    else:
        assert warning in printed[0]


def test_the_dip_papers_own_mask_without_mask_known_is_flagged(tmp_path, capsys, monkeypatch,
                                                               shared_data):
    """The DIP repository's library mask (255 = known) read as holes marks 81 % of the
    image: the warning names the share and the fix, before the run."""
    printed = []
    calls = fake_run(monkeypatch, during=lambda: printed.append(capsys.readouterr().err))
    dip = shared_data / "dip"
    code, _, err = run(capsys, "restore", str(dip / "library.png"), "--task", "inpaint",
                       "--mask", str(dip / "library_mask.png"), "-o",
                       str(tmp_path / "out.tif"), *FAST)
    assert code == 0, err
    assert "warning: the mask marks 81 % of the image as holes" in printed[0]
    assert "pass --mask-known" in printed[0]
    assert float(np.mean(calls[0]["mask"])) == pytest.approx(0.814, abs=0.001)


# --- 6. and everything else: a battery of bad command lines -------------------------------

BAD_COMMAND_LINES = [
    (["img.tif", "-o", "img.tif"], "the output img.tif is the input img.tif"),
    (["img.tif", "-o", "hard.tif", "--overwrite"], "the output hard.tif is the input img.tif"),
    (["img.tif", "-o", "existing.tif"], "existing.tif exists; pass --overwrite"),
    (["--sample", "-o", "existing.tif"], "existing.tif exists; pass --overwrite"),
    (["img.tif", "-o", "nodir/x.tif"], "cannot write nodir/x.tif: the folder nodir"),
    (["img.tif", "-o", "dir.tif"], "cannot write dir.tif: it is a folder"),
    (["img.tif", "-o", "x.xyz"], "cannot write x.xyz: unknown file type"),
    (["u16.tif", "-o", "x.jpg"], "a .jpg file holds 8-bit grey or RGB pictures"),
    (["i16.tif", "-o", "x.png"], "write a .tif"),
    (["wide.tif", "-o", "x.bmp"], "write a .tif"),
    (["stack.tif", "--axes", "ZYX", "-o", "x.jpg"], "does not fit a picture file such as x.jpg"),
    (["img.tif", "-o", "x.dcm"], "does not write it"),
    (["dir.tif"], "cannot read dir.tif: is a folder, not an image file"),
    (["nothere.tif"], "cannot read nothere.tif: no such file"),
    (["bad.png"], "cannot read bad.png: not a valid PNG file"),
    (["img.tif", "--task", "inpaint", "--mask", "bad.nii"], "cannot read bad.nii: not a valid"),
    (["img.tif", "--task", "deblur", "--kernel", "bad.npy"], "cannot read bad.npy"),
    (["img.tif", "--task", "deblur", "--kernel", "k.txt"], "--kernel must be gaussian"),
    (["img.tif", "--method", "deepred", "--denoiser-sigma", "abc"],
     "--denoiser-sigma takes a number in [0, 1] or 'auto', got 'abc'"),
    (["img.tif", "--method", "deepred", "--denoiser-sigma", "3"],
     "--denoiser-sigma takes a number in [0, 1] or 'auto', got '3'"),
    (["img.tif", "--method", "deepred", "--denoiser-sigma", "nan"], "--denoiser-sigma takes"),
    (["img.tif", "--noise-sigma", "abc"], "--noise-sigma takes a number"),
    (["img.tif", "--noise-sigma", "-1"], "--noise-sigma takes a number"),
    (["img.tif", "--noise-sigma", "inf"], "--noise-sigma takes a number"),
    (["img.tif", "--tile", "big"], "--tile must be a number of pixels or 'auto'"),
    (["img.tif", "--tile", "8"], "--tile 8 is too small"),
    (["img.tif", "--threads", "0"], "--threads must be at least 1, got 0"),
    (["img.tif", "--threads", "-2"], "--threads must be at least 1, got -2"),
    (["img.tif", "--threads", "two"], "argument --threads: invalid int value: 'two'"),
    (["img.tif", "--iterations", "abc"], "argument --iterations: invalid int value: 'abc'"),
    (["img.tif", "--iterations", "0"], "iterations must be"),
    (["img.tif", "--seed", "1.5"], "argument --seed: invalid int value: '1.5'"),
    (["img.tif", "--seed", "-1"], "seed must be"),
    (["img.tif", "--overlap", "x"], "argument --overlap: invalid int value: 'x'"),
    (["img.tif", "--tile", "32", "--overlap", "40"], "--overlap 40 is more than half the tile"),
]


@pytest.mark.parametrize("argv, message", BAD_COMMAND_LINES,
                         ids=[" ".join(argv) for argv, _ in BAD_COMMAND_LINES])
def test_bad_command_lines_exit_2_and_touch_nothing(data, capsys, no_run, argv, message):
    before = snapshot(data)
    output_given = "-o" in argv
    code, _, err = run(capsys, "restore", *FAST, *argv)  # later options win: argv's
    assert code == 2
    assert message in err, err
    assert "Traceback" not in err
    assert snapshot(data) == before  # inputs unchanged, no output, no temporary file
    if not output_given:
        assert not any(Path(".").glob("*_restored*"))
