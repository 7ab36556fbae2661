"""Batches on Dask: throughput against the serial command-line loop, the cluster's cost per
file, and what ``--split planes`` costs in quality against one warm-started chain.

    python benchmarks/batch.py                        # 7 min here (2 cores, loaded by other work)
    python benchmarks/batch.py --files 12 --rounds 3 --iterations 150
    python benchmarks/batch.py --only split           # or --only throughput

1. Throughput. FILES noisy 64x64 crops of scikit-image's cameraman (Gaussian noise sigma
   0.1, float32 TIFF), each restored with a fixed ITERATIONS and no early stopping, so that
   every side does the same work:

   - *serial CLI*: ``napari-dip restore FILE -o OUT --threads 1`` per file, one subprocess
     after the other, as a shell loop would;
   - *batch, 1 worker*: ``napari-dip batch DIR -o OUT --workers 1`` (1 torch thread);
   - *batch, C workers*: ``--workers C`` (C = the cores, 1 torch thread each).

   Every side restores with one torch thread, so that the rows compare the orchestration
   (process start-up, the cluster, files in parallel), not torch's thread scaling (on this
   shared machine a first attempt with torch's default of one thread per core took 174 s
   for one serial round of 6 files of 80 steps).

   Every side runs once per round, in an order rotated from round to round; each keeps its
   fastest round (load from other work slows single rounds). *wall* is the whole command,
   Python start-up and the cluster's start and stop included; *images/min* = files / wall;
   *vs serial* = the serial loop's wall / this wall. Then the per-file cost without work:
   the serial loop and a 1-worker batch with 1 step a file (one round), and a LocalCluster
   with its client opened and closed with nothing to run (*cluster start+stop*).
2. Split planes. A synthetic 6-plane stack (the cameraman panned 3 px per plane, 48x48,
   Gaussian noise sigma 0.1, axes ZYX) with the noise level given (``noise_sigma=0.1``: each
   plane stops at the discrepancy principle) and at most ITERATIONS_SPLIT steps a plane:
   one warm-started chain (``--split-size 6``: one chunk, exactly ``restore``'s run) against
   chunks of 3 and of 2 planes on 2 workers. PSNR against the noise-free planes.

Writes benchmarks/results/batch.md (and batch.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, machine, markdown_table, psnr

SIGMA = 0.1


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "napari_dip.cli", *args]


def noisy_crops(folder: Path, files: int) -> list[Path]:
    """``files`` noisy 64x64 cameraman crops as float32 TIFFs in ``folder``."""
    import tifffile
    from skimage import data

    camera = data.camera().astype(np.float32) / 255
    paths = []
    for k in range(files):
        y, x = 64 + 48 * (k % 6), 64 + 56 * (k // 6)
        clean = camera[y:y + 64, x:x + 64]
        noisy = clean + np.random.default_rng(k).normal(0, SIGMA, clean.shape)
        paths.append(folder / f"crop{k:02d}.tif")
        tifffile.imwrite(paths[-1], noisy.astype(np.float32))
    return paths


def _run_options(iterations: int) -> list[str]:
    # one fit each (64 px files would get two from ensemble "auto"), as the results recorded
    return ["--iterations", str(iterations), "--no-early-stop", "--device", "cpu",
            "--ensemble", "1", "--quiet"]


def serial(paths: list[Path], out: Path, iterations: int) -> dict:
    """The shell loop: one ``napari-dip restore --threads 1`` process per file."""
    out.mkdir()
    compute = []
    started = time.perf_counter()
    for path in paths:
        done = subprocess.run(_cli("restore", str(path), "-o", str(out / path.name),
                                   "--threads", "1", *_run_options(iterations)),
                              capture_output=True, text=True, check=True)
        compute.append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
    return {"wall": time.perf_counter() - started, "compute": compute, "slots": 1}


def batched(folder: Path, out: Path, iterations: int, workers: int, threads: int) -> dict:
    """``napari-dip batch`` on a local cluster of ``workers`` x ``threads``."""
    started = time.perf_counter()
    subprocess.run(_cli("batch", str(folder), "-o", str(out), "--workers", str(workers),
                        "--threads-per-worker", str(threads), *_run_options(iterations)),
                   capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    lines = [json.loads(line) for line in (out / "napari-dip-batch.jsonl").read_text()
             .splitlines() if '"status"' in line]
    assert all(r["status"] == "done" for r in lines), lines
    return {"wall": wall, "compute": [r["seconds"] for r in lines], "slots": workers}


def cluster_start_stop(workers: int) -> float:
    """Seconds to start a LocalCluster of ``workers`` processes with a client and close both,
    in a fresh process (as a batch does)."""
    code = ("import logging, time, distributed\nif __name__ == '__main__':\n"
            " t = time.perf_counter()\n"
            f" c = distributed.LocalCluster(n_workers={workers}, threads_per_worker=1, "
            "dashboard_address=None, silence_logs=logging.ERROR)\n"
            " k = distributed.Client(c); k.close(); c.close()\n"
            " print(time.perf_counter() - t)\n")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(code)
    try:
        done = subprocess.run([sys.executable, fh.name], capture_output=True, text=True,
                              check=True)
    finally:
        os.unlink(fh.name)
    return float(done.stdout.strip().splitlines()[-1])


def _sides(cores: int, iterations: int, which=None) -> dict:
    sides = {
        "serial CLI loop": lambda d, o: serial(sorted(d.glob("*.tif")), o, iterations),
        "batch, 1 worker": lambda d, o: batched(d, o, iterations, 1, 1),
        f"batch, {cores} workers": lambda d, o: batched(d, o, iterations, cores, 1),
    }
    return {k: v for k, v in sides.items() if which is None or k in which}


def _fastest(sides: dict, folder: Path, tmp: Path, rounds: int, label: str) -> dict:
    """Every side once a round, the order rotated each round; each side's fastest run."""
    best: dict[str, dict] = {}
    names = list(sides)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            got = sides[name](folder, tmp / f"out-{label}-{r}-{names.index(name)}")
            print(f"{label} round {r + 1}: {name}: {got['wall']:.1f} s", file=sys.stderr)
            if name not in best or got["wall"] < best[name]["wall"]:
                best[name] = got
    return {name: best[name] for name in names}


def throughput(files: int, iterations: int, rounds: int) -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        noisy_crops(folder, files)
        best = _fastest(_sides(cores, iterations), folder, Path(tmp), rounds, "work")
        bare = _fastest(_sides(cores, 1, ("serial CLI loop", "batch, 1 worker")), folder,
                        Path(tmp), 1, "1 step")
    serial_wall = best["serial CLI loop"]["wall"]
    rows = [{"side": name, "files": files, "wall s": got["wall"],
             "images/min": 60 * files / got["wall"], "vs serial": serial_wall / got["wall"],
             "s/file": got["wall"] / files,
             "restoration s/file": sum(got["compute"]) / files}
            for name, got in best.items()]
    overhead = [{"side": name, "files": files, "wall s (1 step each)": got["wall"],
                 "s/file": got["wall"] / files} for name, got in bare.items()]
    starts = {n: cluster_start_stop(n) for n in sorted({1, cores})}
    return {"rows": rows, "overhead": overhead, "iterations": iterations, "rounds": rounds,
            "cores": cores, "cluster start+stop s": starts}


def panned_stack(planes: int = 6, size: int = 48, step: int = 3) -> tuple[np.ndarray, ...]:
    """(noisy, truth): the cameraman panned ``step`` px a plane, ZYX float32."""
    from skimage import data

    camera = data.camera().astype(np.float32) / 255
    truth = np.stack([camera[120:120 + size, 200 + step * k:200 + step * k + size]
                      for k in range(planes)])
    noisy = truth + np.random.default_rng(7).normal(0, SIGMA, truth.shape)
    return noisy.astype(np.float32), truth


def split_quality(iterations: int) -> dict:
    import distributed
    import tifffile

    import napari_dip

    noisy, truth = panned_stack()
    rows = []
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    client.run(exec, "import torch, napari_dip.api, napari_dip.batch_task")  # not timed
    try:
        with tempfile.TemporaryDirectory() as tmp:
            stack = Path(tmp) / "stack.tif"
            tifffile.imwrite(stack, noisy, metadata={"axes": "ZYX"}, photometric="minisblack")
            for size in (len(noisy), 3, 2):
                out = Path(tmp) / f"out{size}"
                started = time.perf_counter()
                report = napari_dip.batch(stack, out, client=client, progress=False,
                                          split="planes", split_size=size, device="cpu",
                                          noise_sigma=SIGMA, iterations=iterations,
                                          ensemble=1)
                wall = time.perf_counter() - started
                entry = report.files[0]
                assert entry.status == "done", entry.error
                result = tifffile.imread(entry.output)
                per_plane = [psnr(result[k], truth[k]) for k in range(len(truth))]
                chunks = -(-len(truth) // size)
                rows.append({
                    "run": "one warm-started chain" if size == len(truth)
                    else f"--split planes --split-size {size}",
                    "chunks (cold starts)": chunks, "mean PSNR": float(np.mean(per_plane)),
                    "min PSNR": float(np.min(per_plane)), "steps": entry.iterations,
                    "wall s (2 workers)": wall})
    finally:
        client.close()
        cluster.close()
    chain = rows[0]["mean PSNR"]
    for row in rows:
        row["PSNR vs chain"] = row["mean PSNR"] - chain
    noisy_psnr = float(np.mean([psnr(noisy[k], truth[k]) for k in range(len(truth))]))
    return {"rows": rows, "noisy PSNR": noisy_psnr, "iterations": iterations}


def write_markdown(saved: dict) -> None:
    text = ["# Batches on Dask (cpu)", "", f"Machine: {saved['machine']}; load average "
            f"{saved['load'][0]:.1f} before and {saved['load'][1]:.1f} after (other work "
            "shared the machine). Reproduce: `python benchmarks/batch.py`.", ""]
    if "throughput" in saved:
        t = saved["throughput"]
        starts = ", ".join(f"{n} worker{'s' if int(n) > 1 else ''}: {s:.1f} s"
                           for n, s in t["cluster start+stop s"].items())
        text += [f"## Throughput ({t['rows'][0]['files']} files of 64x64, {t['iterations']} "
                 f"steps each, no early stopping, 1 torch thread per restoration; fastest of "
                 f"{t['rounds']} rounds, sides alternating)", "",
                 markdown_table(t["rows"], ["side", "files", "wall s", "images/min",
                                            "vs serial", "s/file"]), "",
                 "Per-file cost without work to speak of (1 step a file, one round): what "
                 "a file costs besides its restoration (the serial loop: a Python process "
                 "that imports torch; the batch: a job on a warm worker, the result sent "
                 "back, the atomic write and the synced manifest line), the cluster's "
                 "start and stop spread over the files.", "",
                 markdown_table(t["overhead"], ["side", "files", "wall s (1 step each)",
                                                "s/file"]), "",
                 f"Cluster start+stop alone (LocalCluster and client, nothing run): {starts}.",
                 ""]
    if "split" in saved:
        s = saved["split"]
        text += ["## --split planes: quality against one warm-started chain", "",
                 f"6 planes of 48x48 (cameraman panned 3 px a plane), noise sigma 0.1 (noisy "
                 f"PSNR {s['noisy PSNR']:.2f} dB), `noise_sigma=0.1`, at most "
                 f"{s['iterations']} steps a plane; every chunk's first plane starts from "
                 "fresh weights.", "",
                 markdown_table(s["rows"], ["run", "chunks (cold starts)", "mean PSNR",
                                            "min PSNR", "PSNR vs chain", "steps",
                                            "wall s (2 workers)"]), ""]
    (RESULTS / "batch.md").write_text("\n".join(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iterations-split", type=int, default=200)
    parser.add_argument("--only", choices=("throughput", "split"), action="append")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    parts = args.only or ["throughput", "split"]
    RESULTS.mkdir(exist_ok=True)
    saved: dict = {"load": [os.getloadavg()[0]]}
    started = time.time()
    if "throughput" in parts:
        saved["throughput"] = throughput(args.files, args.iterations, args.rounds)
    if "split" in parts:
        saved["split"] = split_quality(args.iterations_split)
    saved["load"].append(os.getloadavg()[0])
    saved["machine"] = machine()
    (RESULTS / "batch.json").write_text(json.dumps(saved, indent=1))
    write_markdown(saved)
    print(f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
