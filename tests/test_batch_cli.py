"""The parts of a batch that need no cluster: the manifest and how resume decides, which
files a batch takes, the command line's --params and options, the thread and memory rules,
and the outputs a batch refuses to write (decided before a cluster is started)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

from napari_dip import batch_cli, batch_cluster, batch_task
from napari_dip.batch_inputs import check_names, find_inputs, readable_suffixes, stem_of
from napari_dip.cli import main
from napari_dip.manifest import MANIFEST_NAME, Manifest, fingerprint, parameters_hash


def _tif(path: Path, seed: int = 0) -> Path:
    tifffile.imwrite(path, np.random.default_rng(seed).random((32, 32)).astype(np.float32))
    return path


def test_imports_stay_light():
    code = ("import sys, napari_dip, napari_dip.cli, napari_dip.batch_run, "
            "napari_dip.batch_cli, napari_dip.batch_cluster, napari_dip.batch_task, "
            "napari_dip.manifest; napari_dip.batch; napari_dip.cli._parser()\n"
            "print(' '.join(sys.modules))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not {"torch", "distributed", "dask", "dask_jobqueue"} & loaded


def test_manifest_decides_what_a_rerun_does(tmp_path):
    source, output = _tif(tmp_path / "a.tif"), tmp_path / "out.tif"
    stamp = fingerprint(source)
    params = parameters_hash({"seed": 1, "mask": np.ones((4, 4), bool)})
    assert params == parameters_hash({"mask": np.ones((4, 4), bool), "seed": 1})
    assert params != parameters_hash({"seed": 1, "mask": np.zeros((4, 4), bool)})
    with Manifest(tmp_path) as manifest:
        assert manifest.decide(source, output, params, stamp) == (True, "new")
        manifest.append({"input": str(source), **stamp, "params": params,
                         "output": str(output), "status": "failed", "error": "x"})
        assert manifest.decide(source, output, params, stamp) == (True, "failed before")
        manifest.append({"input": str(source), **stamp, "params": params,
                         "output": str(output), "status": "done", "error": None})
        assert manifest.decide(source, output, params, stamp) == (True, "output missing")
        output.write_bytes(b"x")
        assert manifest.decide(source, output, params, stamp) == (False, "done before")
        assert manifest.decide(source, output, "other", stamp) == (True, "parameters changed")
        changed = {**stamp, "mtime_ns": stamp["mtime_ns"] + 1}
        assert manifest.decide(source, output, params, changed) == (True, "input changed")
        with pytest.raises(ValueError, match="another napari-dip batch"):
            Manifest(tmp_path).open()  # locked while this one appends
    path = tmp_path / MANIFEST_NAME
    with open(path, "a") as fh:
        fh.write('{"input": "torn')  # a batch killed mid-line
    again = Manifest(tmp_path)
    assert again.decide(source, output, params, stamp) == (False, "done before")
    with again:
        again.append({"input": "next", "status": "failed"})
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1])["input"] == "next" and len(lines) == 4


def test_inputs_from_files_folders_and_patterns(tmp_path):
    assert {".tif", ".tiff", ".png", ".nii.gz", ".dcm"} <= set(readable_suffixes())
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.tif", "a.png", "sub/c.tif"):
        _tif(folder / name) if name.endswith(".tif") else (folder / name).write_bytes(b"x")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".napari-dip-partial-1234-b.tif").write_bytes(b"partial")
    found = find_inputs([folder])
    assert [p.name for p in found] == ["a.png", "b.tif"]
    found = find_inputs([str(folder / "**" / "*.tif"), folder / "b.tif", folder / "notes.txt"])
    assert [p.name for p in found] == ["b.tif", "c.tif", "notes.txt"]  # each once
    assert find_inputs([folder], skip=[folder / "b.tif"])[0].name == "a.png"
    assert stem_of(Path("scan.nii.gz")) == "scan"
    with pytest.raises(ValueError, match="no such file or folder"):
        find_inputs([tmp_path / "missing.tif"])
    with pytest.raises(ValueError, match="no image files match"):
        find_inputs([str(tmp_path / "*.jpg")])
    with pytest.raises(ValueError, match="would all be written to"):
        check_names(find_inputs([folder / "b.tif", folder / "sub" / "c.tif",
                                 folder / "a.png"]) + [folder / "b.png"], tmp_path)


def test_existing_outputs_and_inputs_are_never_overwritten(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _tif(src / "a.tif")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.tif").write_bytes(b"someone's file")
    # refused while planning: no cluster is started when nothing is left to run
    assert main(["batch", str(src), "-o", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "exists; pass --overwrite" in err and "1 of 1 failed" in err
    assert (out / "a.tif").read_bytes() == b"someone's file"
    assert main(["batch", str(src / "a.tif"), "-o", str(src), "--quiet"]) == 1
    assert "napari-dip never writes onto its inputs" in capsys.readouterr().err
    assert tifffile.imread(src / "a.tif").shape == (32, 32)


def _batch_args(argv):
    from napari_dip.cli import _parser

    return _parser().parse_args(["batch", *argv])


def test_params_fill_the_options_not_given(tmp_path):
    doc = {"napari_dip_version": "0.1.0",
           "restore": {"task": "denoise", "method": "deepred", "preset": "fast",
                       "iterations": 40, "early_stop": False, "seed": 3, "device": "cpu",
                       "noise": "gaussian", "channel_axis": None, "noise_sigma": None,
                       "denoiser": "bm3d", "denoiser_sigma": 0.03, "warm_start": 20,
                       "spacing": [2.0, 1.0, 1.0], "axes": "ZYX", "mode": "volume"},
           "inputs": {"image": "cells"}}
    params = tmp_path / "run.json"
    params.write_text(json.dumps(doc))
    argv = ["in.tif", "-o", "out", "--params", str(params), "--seed", "5"]
    args = _batch_args(argv)
    extra = batch_cli.apply_params(args, argv)
    assert (args.method, args.iterations, args.no_early_stop, args.seed) == \
        ("deepred", 40, True, 5)
    assert (args.noise_sigma, args.denoiser, args.denoiser_sigma) == ("none", "bm3d", "0.03")
    assert extra == {"warm_start": 20, "spacing": [2.0, 1.0, 1.0]}
    assert (args.axes, args.mode) == (None, "volume")  # the layout comes from each file
    argv = [*argv, "--method", "dip"]  # the other method's settings are dropped
    args = _batch_args(argv)
    batch_cli.apply_params(args, argv)
    assert (args.method, args.denoiser, args.denoiser_sigma) == ("dip", None, None)
    doc["inputs"]["mask"] = "holes"
    params.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="pass it as a file: --mask FILE"):
        batch_cli.apply_params(_batch_args(argv), argv)
    assert batch_cli.given_options(["--no-early-stop", "--tile=64", "--", "--seed"]) == \
        {"no_early_stop", "tile"}


def test_params_errors_are_messages(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["batch", "x.tif", "-o", str(tmp_path), "--params", str(bad)]) == 2
    assert "is not JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no abbreviations: --iter is not --iterations
        _batch_args(["x.tif", "-o", "out", "--iter", "3"])


def test_threads_never_exceed_the_cores(monkeypatch):
    monkeypatch.setattr(batch_cluster, "cores", lambda: 4)
    assert batch_cluster.local_workers(None, 1) == 4
    assert batch_cluster.local_workers(None, 2) == 2
    with pytest.raises(ValueError, match="3 workers x 2 threads = 6 threads, but this "
                                         "machine has 4 cores"):
        batch_cluster.local_workers(3, 2)
    assert batch_cluster.parse_option("cores=8") == ("cores", 8)
    assert batch_cluster.parse_option("memory=16GB") == ("memory", "16GB")
    assert batch_cluster.parse_option('job_extra_directives=["--gres=gpu:1"]') == \
        ("job_extra_directives", ["--gres=gpu:1"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        batch_cluster.parse_option("queue")


def test_job_queue_options_and_the_missing_extra(monkeypatch):
    name, opts = batch_cluster.job_queue_options(
        "slurm", {"queue": "short", "cores": 8, "memory": "16GB"}, threads_per_worker=2)
    assert name == "SLURMCluster" and opts["processes"] == 4 and opts["queue"] == "short"
    with pytest.raises(ValueError, match="needs the cores and memory of one job"):
        batch_cluster.job_queue_options("pbs", {"cores": 8}, 1)
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # not installed
    with pytest.raises(ValueError, match=r'needs dask-jobqueue, in the optional extra '
                                         r'\[cluster\]: pip install "napari-dip\[cluster\]"'):
        with batch_cluster.open_client(cluster="slurm",
                                       cluster_options={"cores": 2, "memory": "2GB"}):
            pass
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ValueError, match=r'need Dask distributed: pip install '
                                         r'"napari-dip\[cluster\]"'):
        with batch_cluster.open_client():
            pass


def test_a_run_that_does_not_fit_the_worker_names_a_tile_that_does(tmp_path, monkeypatch):
    from napari_dip.request import build_plan

    image = np.random.default_rng(0).random((1024, 1024)).astype(np.float32)
    budget = 400 * 2**20
    with pytest.raises(ValueError, match=r"needs about 1\.\d+ GiB but this worker may use "
                                         r"320 MiB; --tile (\d+)") as caught:
        batch_task.check_fits(build_plan(image), budget)
    tile = int(caught.value.args[0].split("--tile ")[1].split()[0])
    batch_task.check_fits(build_plan(image, tile=tile), budget)  # fits
    # a job that would not fit is refused with that message (and the run not started)
    tifffile.imwrite(tmp_path / "big.tif", image)
    monkeypatch.setattr(batch_task, "worker_budget", lambda device: budget)
    answer = batch_task.run_job({"input": str(tmp_path / "big.tif"),
                                 "kwargs": {"device": "cpu", "iterations": 1}, "threads": 1})
    assert answer["status"] == "failed" and f"--tile {tile}" in answer["error"]


def test_file_layout_follows_the_file():
    from napari_dip.imageio import ImageData

    rgb = ImageData(np.zeros((32, 32, 3)), None)
    assert batch_task.file_layout(rgb, {"channel_axis": None}) == {"channel_axis": -1}
    stack = ImageData(np.zeros((4, 32, 32)), "ZYX", (2.0, 1.0, 1.0))
    assert batch_task.file_layout(stack, {"mode": "volume"}) == \
        {"mode": "volume", "axes": "ZYX", "spacing": (2.0, 1.0, 1.0)}
    plane = ImageData(np.zeros((32, 32)), None)
    assert batch_task.file_layout(plane, {"mode": "volume", "warm_start": False,
                                          "seed": 2}) == {"seed": 2}
    with pytest.raises(ValueError, match="does not name them; pass --axes"):
        batch_task.file_layout(ImageData(np.zeros((4, 32, 32)), None), {})


def test_batch_refuses_settings_every_file_would_refuse(tmp_path):
    from napari_dip import batch

    _tif(tmp_path / "a.tif")
    with pytest.raises(ValueError, match="iterations"):
        batch(tmp_path / "a.tif", tmp_path / "out", iterations=-3)
    with pytest.raises(ValueError, match="split takes planes"):
        batch(tmp_path / "a.tif", tmp_path / "out", split="tiles")
    assert not (tmp_path / "out").exists()


def test_batch_help_lists_the_restore_options(capsys):
    with pytest.raises(SystemExit):
        main(["batch", "--help"])
    text = capsys.readouterr().out
    for option in ("--scheduler", "--cluster-option", "--split-size", "--params",
                   "--threads-per-worker", "--task", "--tile", "--no-warm-start"):
        assert option in text


def test_per_frame_defect_options_are_refused_not_ignored(tmp_path, capsys):
    _tif(tmp_path / "a.tif")
    assert main(["batch", str(tmp_path / "a.tif"), "-o", str(tmp_path / "out"),
                 "--mask-cosmic-rays"]) == 2
    assert "batch does not take them yet; give a --mask file" in capsys.readouterr().err
