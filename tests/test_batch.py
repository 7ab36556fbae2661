"""Batches on Dask distributed (issue 18): a real local cluster of 2 single-threaded worker
processes shared by the tests, tiny images and a few iterations.

Pixel equality with ``restore`` holds because CPU runs repeat bit for bit on one torch
thread: the workers run on 1 thread (``threads_per_worker=1``) and so does this process
(tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
tifffile = pytest.importorskip("tifffile")

from dask_helpers import local_client

from napari_dip import batch, restore
from napari_dip.batch_run import CRASH_ONCE_ENV
from napari_dip.cli import main
from napari_dip.manifest import MANIFEST_NAME, read_records
from napari_dip.safe_write import temporary_files

# Dask workers run in other processes, where conftest's one-fit "auto" does not reach:
# run ensemble="auto" as shipped on both sides
pytestmark = pytest.mark.auto_ensemble

#: Every run here: a few iterations, no early stopping, on the CPU.
RUN = {"iterations": 3, "early_stop": False, "device": "cpu", "seed": 1}
CLI_RUN = ["--iterations", "3", "--no-early-stop", "--device", "cpu", "--seed", "1",
           "--quiet"]


@pytest.fixture(scope="module")
def client():
    """A local cluster of 2 single-threaded worker processes."""
    with local_client(2) as c:
        yield c


def _image(shape, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    if np.dtype(dtype).kind == "u":
        return (a * np.iinfo(dtype).max).astype(dtype)
    return a.astype(dtype)


def _write_inputs(folder: Path) -> dict[str, dict]:
    """Six small inputs of different kinds: {file name: its layout for restore}."""
    from skimage import io

    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "a.tif", _image((32, 32), 1))
    tifffile.imwrite(folder / "b.tif", _image((40, 40), 2, np.uint16))
    io.imsave(folder / "c.png", _image((32, 32), 3, np.uint8), check_contrast=False)
    io.imsave(folder / "d.png", _image((32, 32, 3), 4, np.uint8), check_contrast=False)
    tifffile.imwrite(folder / "e.tif", _image((3, 32, 32), 5), metadata={"axes": "ZYX"},
                     photometric="minisblack")
    tifffile.imwrite(folder / "f.tif", _image((48, 32), 6, np.float64))
    return {"a.tif": {}, "b.tif": {}, "c.png": {}, "d.png": {"channel_axis": -1},
            "e.tif": {"axes": "ZYX"}, "f.tif": {}}


def _expected(path: Path, layout: dict, **run) -> np.ndarray:
    from napari_dip.imageio import read_image

    return restore(read_image(path), **layout, **{**RUN, **run}).image


def _lines(out: Path) -> list[dict]:
    return [r for r in read_records(out / MANIFEST_NAME) if "status" in r]


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")}


def test_batch_equals_restore_pixel_for_pixel(client, tmp_path):
    layouts = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    seen = []
    report = batch(tmp_path / "in", out, client=client, progress=False,
                   on_result=seen.append, **RUN)
    assert [f.status for f in report] == ["done"] * 6, report.summary()
    assert sorted(f.input.name for f in seen) == sorted(layouts)
    for name, layout in layouts.items():
        entry = next(f for f in report if f.input.name == name)
        assert entry.output == out / (Path(name).stem + ".tif")
        assert entry.error is None and entry.seconds > 0
        assert entry.iterations == 3 * (3 if name == "e.tif" else 1)
        got = tifffile.imread(entry.output)
        want = _expected(tmp_path / "in" / name, layout)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.array_equal(got, want), name
    lines = _lines(out)
    assert len(lines) == 6 and {r["status"] for r in lines} == {"done"}
    assert all(r["size"] == (tmp_path / "in" / Path(r["input"]).name).stat().st_size
               for r in lines)
    assert len({r["params"] for r in lines}) == 1
    assert report.summary() == "6 files: 6 done, 0 skipped (done before), 0 failed"


def test_resume_skips_finished_files_and_redoes_changed_ones(client, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(4):
        tifffile.imwrite(src / f"p{k}.tif", _image((32, 32), 10 + k))
    out = tmp_path / "out"
    done = []

    def stop_after_two(entry):
        done.append(entry)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        batch(src, out, client=client, progress=False, on_result=stop_after_two, **RUN)
    assert temporary_files(out) == []
    first = _lines(out)
    assert [r["status"] for r in first] == ["done", "done"]
    finished = {Path(r["output"]).name for r in first}
    before = _mtimes(out)
    assert set(before) == finished  # only complete, recorded outputs

    report = batch(src, out, client=client, progress=False, **RUN)
    by_name = {f.output.name: f for f in report}
    assert {n for n, f in by_name.items() if f.status == "skipped"} == finished
    assert {f.status for n, f in by_name.items() if n not in finished} == {"done"}
    after = _mtimes(out)
    assert len(after) == 4 and all(after[n] == before[n] for n in finished)
    skipped_lines = [r for r in _lines(out)[2:] if r["status"] == "skipped"]
    assert {Path(r["output"]).name for r in skipped_lines} == finished

    tifffile.imwrite(src / "p0.tif", _image((32, 32), 99))  # a changed input is redone
    report = batch(src, out, client=client, progress=False, **RUN)
    assert {f.input.name: f.status for f in report} == {
        "p0.tif": "done", "p1.tif": "skipped", "p2.tif": "skipped", "p3.tif": "skipped"}
    assert report.files[0].reason == "input changed"
    assert np.array_equal(tifffile.imread(out / "p0.tif"), _expected(src / "p0.tif", {}))

    report = batch(src, out, client=client, progress=False, **{**RUN, "seed": 2})
    assert {f.status for f in report} == {"done"}  # new settings: all redone, own outputs
    assert {f.reason for f in report} == {"parameters changed"}
    assert np.array_equal(tifffile.imread(out / "p3.tif"),
                          _expected(src / "p3.tif", {}, seed=2))


def test_a_worker_that_dies_mid_task_has_it_rerun(client, tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        tifffile.imwrite(src / f"w{k}.tif", _image((32, 32), 20 + k))
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_ONCE_ENV, f"w1.tif={marker}")
    pids_before = set(client.run(os.getpid).values())
    report = batch(src, tmp_path / "out", client=client, progress=False, **RUN)
    assert marker.exists()  # the worker did die on its first attempt
    assert int(marker.read_text()) in pids_before
    assert [f.status for f in report] == ["done"] * 3, report.summary()
    for k in range(3):
        got = tifffile.imread(tmp_path / "out" / f"w{k}.tif")
        assert np.array_equal(got, _expected(src / f"w{k}.tif", {}))
    client.wait_for_workers(2, timeout=60)
    assert int(marker.read_text()) not in set(client.run(os.getpid).values())


def test_corrupt_files_fail_alone_and_set_the_exit_status(client, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "good1.tif", _image((32, 32), 30))
    tifffile.imwrite(src / "good2.tif", _image((32, 32), 31))
    (src / "broken.tif").write_bytes(b"this is not a TIFF file")
    (src / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    address = client.scheduler.address
    rc = main(["batch", str(src), "-o", str(out), "--scheduler", address, *CLI_RUN])
    captured = capsys.readouterr()
    assert rc == 1
    assert f"2 of 4 failed; see {out / MANIFEST_NAME}" in captured.err
    assert "broken.tif: cannot read" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert (summary["done"], summary["failed"]) == (2, 2)
    lines = {Path(r["input"]).name: r for r in _lines(out)}
    assert lines["broken.tif"]["status"] == "failed"
    assert "not a valid TIFF file" in lines["broken.tif"]["error"]
    assert "empty (0 bytes)" in lines["empty.png"]["error"]
    assert sorted(p.name for p in out.glob("*.tif")) == ["good1.tif", "good2.tif"]
    # a rerun retries the failed ones (still failing) and skips the good ones
    rc = main(["batch", str(src), "-o", str(out), "--scheduler", address, *CLI_RUN])
    assert rc == 1
    statuses = [r["status"] for r in _lines(out)[4:]]
    assert sorted(statuses) == ["failed", "failed", "skipped", "skipped"]


def test_params_from_the_widget_export_reproduce_its_result(client, tmp_path, capsys):
    from types import SimpleNamespace

    from napari_dip._layers import build_metadata, parameters_json
    from napari_dip._settings import WidgetSettings, restore_arguments

    image = _image((40, 40), 40)
    tifffile.imwrite(tmp_path / "cells.tif", image)
    settings = WidgetSettings(image="cells", iterations=4, iterations_from_preset=False,
                              early_stop=False, seed=7, device="cpu", noise_level="none")
    layer = SimpleNamespace(data=image, rgb=False, scale=(1.0, 1.0), multiscale=False,
                            ndim=2, axis_labels=None)
    kwargs, arrays, inputs = restore_arguments(settings, {"cells": layer})
    widget = restore(arrays["image"], **kwargs)  # what the widget's run gives
    record = build_metadata(widget, restore_kwargs=kwargs, inputs=inputs, source_name="cells")
    params = tmp_path / "napari-dip-run.json"
    params.write_text(parameters_json(record) + "\n")
    out = tmp_path / "out"
    address = client.scheduler.address
    command = ["batch", str(tmp_path / "cells.tif"), "-o", str(out), "--params", str(params),
               "--scheduler", address, "--quiet"]
    assert main(command) == 0
    assert np.array_equal(tifffile.imread(out / "cells.tif"), widget.image)
    assert main([*command, "--seed", "8"]) == 0  # an explicit option wins over the JSON
    assert np.array_equal(tifffile.imread(out / "cells.tif"),
                          restore(image, **{**kwargs, "seed": 8}).image)
    settings_lines = [r["settings"] for r in read_records(out / MANIFEST_NAME)
                      if "settings" in r]
    assert [s["seed"] for s in settings_lines] == [7, 8]
    same = {k: v for k, v in kwargs.items() if k != "seed" and v is not None}
    assert same["iterations"] == 4 and same["early_stop"] is False
    assert all({k: s.get(k) for k in same} == same for s in settings_lines)
    capsys.readouterr()


def test_split_planes_restores_chunks_on_workers(client, tmp_path):
    stack = _image((5, 32, 32), 50)
    tifffile.imwrite(tmp_path / "stack.tif", stack, metadata={"axes": "ZYX"},
                     photometric="minisblack")
    report = batch(tmp_path / "stack.tif", tmp_path / "out", client=client, progress=False,
                   split="planes", split_size=2, **{**RUN, "iterations": 2})
    assert report.files[0].status == "done"
    got = tifffile.imread(tmp_path / "out" / "stack.tif")
    want = np.concatenate([restore(stack[a:b], axes="ZYX", **{**RUN, "iterations": 2}).image
                           for a, b in ((0, 2), (2, 4), (4, 5))])
    assert np.array_equal(got, want)
    with tifffile.TiffFile(tmp_path / "out" / "stack.tif") as tif:
        description = json.loads(tif.pages[0].description)
        assert tif.series[0].axes == "ZYX"
    assert description["split"]["planes"] == [[0, 2], [2, 4], [4, 5]]


def test_ctrl_c_leaves_complete_outputs_and_a_manifest_that_resumes(client, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(5):
        tifffile.imwrite(src / f"s{k}.tif", _image((32, 32), 60 + k))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "napari_dip.cli", "batch", str(src), "-o", str(out),
               "--scheduler", client.scheduler.address, "--iterations", "20",
               "--no-early-stop", "--device", "cpu", "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any(
            r["status"] == "done" for r in _lines(out)) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    assert temporary_files(out) == []
    done = {Path(r["output"]).name for r in _lines(out) if r["status"] == "done"}
    assert 1 <= len(done) < 5
    assert set(_mtimes(out)) == done  # every output there is complete and recorded
    before = _mtimes(out)
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    after = _mtimes(out)
    assert len(after) == 5 and all(after[n] == before[n] for n in done)
    last = {Path(r["output"]).name: r["status"] for r in _lines(out)}
    assert {n for n, s in last.items() if s == "skipped"} == done
