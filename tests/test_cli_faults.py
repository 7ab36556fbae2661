"""The command line under real faults, in a child process: a full disk (a file size limit),
Ctrl-C (SIGINT) and SIGTERM during the run and during the final write. Each must end with
its exit status and message, and leave the folder as it was: no output, no temporary
file, an existing output intact."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_dip

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals and rlimits")

SRC = str(Path(napari_dip.__file__).resolve().parents[1])
CLI = [sys.executable, "-m", "napari_dip.cli"]  # as the napari-dip script: cli.main

#: A stand-in for the command line whose TIFF writer writes part of the file, says so on
#: stderr and then waits, so that a signal lands in the middle of the write.
SLOW_WRITER = """
import sys, time
import tifffile

def slow_imwrite(path, data, **kwargs):
    with open(path, "wb") as fh:
        fh.write(b"II*\\x00" + bytes(2000))
        fh.flush()
    print("WRITING " + str(path), file=sys.stderr, flush=True)
    time.sleep(60)

tifffile.imwrite = slow_imwrite
from napari_dip.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _default_signals():
    """In the child: Ctrl-C and SIGTERM as a terminal would deliver them, even when the
    test runner was started with them ignored (a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class Child:
    """A command line in a child process, its stderr collected as it comes."""

    def __init__(self, argv, cwd, preexec=_default_signals):
        env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, preexec_fn=preexec)
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for chunk in iter(lambda: os.read(self.proc.stderr.fileno(), 4096), b""):
            self.chunks.append(chunk)

    @property
    def stderr(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"never saw {text!r}; stderr: {self.stderr[-2000:]}")
            time.sleep(0.05)

    def finish(self, timeout: float = 30) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"did not end; stderr: {self.stderr[-2000:]}")
        self.reader.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code


@pytest.fixture
def folder(tmp_path):
    """A folder with one 64x64 float32 TIFF, ``in.tif``."""
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    tifffile.imwrite(data / "in.tif", rng.random((64, 64)).astype(np.float32))
    return data


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_full_disk_leaves_no_file(folder):
    """A file size limit of 8 KiB (the 64x64 float32 TIFF needs 16): the write fails with
    EFBIG (Python ignores SIGXFSZ, so the process is not killed) and nothing is left."""
    import resource

    before = _listing(folder)

    def limited():
        _default_signals()
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    child = Child(CLI + ["restore", "in.tif", "-o", "out.tif", "--iterations", "2",
                         "--quiet", "--threads", "1"], folder, limited)
    code = child.finish()
    assert code == 2, child.stderr
    assert "napari-dip: error: cannot write out.tif: the disk is full or a file size limit " \
           "was reached" in child.stderr
    assert "Traceback" not in child.stderr
    assert _listing(folder) == before


@pytest.mark.parametrize("signum, code, message", [
    (signal.SIGINT, 130, "napari-dip: cancelled"),
    (signal.SIGTERM, 143, "napari-dip: terminated"),
])
def test_a_signal_during_the_run_leaves_no_file(folder, signum, code, message):
    before = _listing(folder)
    child = Child(CLI + ["restore", "in.tif", "-o", "out.tif", "--iterations", "100000",
                         "--no-early-stop", "--threads", "1"], folder)
    child.wait_for("/100000")  # the progress bar: the run is under way
    child.proc.send_signal(signum)
    assert child.finish() == code, child.stderr
    assert message in child.stderr and "Traceback" not in child.stderr
    assert _listing(folder) == before


@pytest.mark.parametrize("signum, code, message, existing", [
    (signal.SIGINT, 130, "napari-dip: cancelled", False),
    (signal.SIGINT, 130, "napari-dip: cancelled", True),
    (signal.SIGTERM, 143, "napari-dip: terminated", True),
])
def test_a_signal_during_the_write_leaves_no_partial_file(folder, tmp_path, signum, code,
                                                          message, existing):
    if existing:
        (folder / "out.tif").write_bytes(b"the previous result")
    before = _listing(folder)
    script = tmp_path / "slow_writer.py"
    script.write_text(SLOW_WRITER)
    child = Child([sys.executable, str(script), "restore", "in.tif", "-o", "out.tif",
                   "--iterations", "2", "--quiet", "--threads", "1",
                   *(["--overwrite"] if existing else [])], folder)
    child.wait_for("WRITING")
    partial = [p.name for p in folder.iterdir() if p.name not in before]
    assert len(partial) == 1 and partial[0].startswith(".") and "out.tif" in partial[0]
    child.proc.send_signal(signum)
    assert child.finish() == code, child.stderr
    assert message in child.stderr and "Traceback" not in child.stderr
    assert _listing(folder) == before  # the temporary file gone, the previous result intact
