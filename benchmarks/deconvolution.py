"""Deconvolution benchmark: DIP (Poisson likelihood, valid boundary) against scikit-image's
Richardson-Lucy on synthetic fluorescence, 2-D images and a 3-D Z-stack.

    python benchmarks/deconvolution.py                 # every case, CPU (about 15 min on 2 cores)
    python benchmarks/deconvolution.py --cases 2d-44   # one case: results/deconvolution-2d-44.*
    python benchmarks/deconvolution.py --cases 2d-44 --merge   # rerun it in deconvolution.*
    python benchmarks/deconvolution.py --device cuda

Each scene (filaments and blobs on a background rising along X from 2 % to 52 % of the
photon peak, so the image's opposite edges differ strongly) is larger than the camera's
field by the PSF's half-width; the measurement is its 'valid' convolution with a psfmodels
PSF (Aguet et al. 2009's vectorial model) with Poisson noise. Richardson-Lucy (Richardson
1972, Lucy 1974) gets the same PSF and its best iteration count against the ground truth,
scored separately for the whole image and for its interior; "RL reflect" runs it on the
measurement padded by reflection (and cropped back), which spares it most of its
zero-boundary artefacts. DIP runs its iterations once with previews at the checkpoints
(the estimate at step k of a longer run is the estimate of a k-step run: same seed, no
early stopping). "band/interior" is the RMSE in the 8-px border band over the interior's
(Z: 2 planes): above 1 where a result rings at its edges.

Writes benchmarks/results/deconvolution.md and deconvolution.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from _common import RESULTS, machine, markdown_table
from scipy import signal
from skimage.restoration import richardson_lucy

import napari_dip
from napari_dip import samples

RL_ITERATIONS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200)
BAND = 8

#: name -> (shape, PSF keyword arguments, photon peak, DIP checkpoints, boundaries)
CASES = {
    "2d-44": ((44, 44), dict(na=1.0, wavelength=0.52, pixel_size=0.1, shape=21), 300,
              (400, 800, 1500), ("valid", "circular")),
    "2d-64": ((64, 64), dict(na=1.0, wavelength=0.52, pixel_size=0.1, shape=21), 300,
              (400, 800, 1500), ("valid", "circular")),
    "2d-48-na1.4": ((48, 48), dict(na=1.4, wavelength=0.52, pixel_size=0.1, shape=17), 100,
                    (500, 800, 1500), ("valid",)),
    "3d-12x48x48": ((12, 48, 48), dict(na=0.8, wavelength=0.52, pixel_size=0.1, z_step=0.3,
                                        shape=(5, 17, 17)), 1000, (150, 300, 600), ("valid",)),
}


fluorescence = samples.fluorescence  # the scenes of tests/test_deconvolution.py


def acquire(shape, kernel, peak, seed: int = 0):
    """(truth, measurement): the scene's 'valid' blur with Poisson noise."""
    half = [n // 2 for n in kernel.shape]
    scene = fluorescence([n + 2 * h for n, h in zip(shape, half, strict=True)], peak, seed=seed)
    truth = scene[tuple(slice(h, h + n) for h, n in zip(half, shape, strict=True))]
    counts = np.random.default_rng(seed + 1).poisson(
        np.clip(signal.fftconvolve(scene, kernel, mode="valid"), 0, None))
    return truth, counts.astype(np.float64)


def interior(shape) -> np.ndarray:
    inside = np.zeros(shape, bool)
    margins = ((2,) if len(shape) == 3 else ()) + (BAND, BAND)
    inside[tuple(slice(m, n - m) for m, n in zip(margins, shape, strict=True))] = True
    return inside


def scores(estimate, truth, inside) -> dict:
    err = (np.asarray(estimate, np.float64) - truth) ** 2
    peak2 = truth.max() ** 2
    return {"psnr": 10 * np.log10(peak2 / err.mean()),
            "psnr_interior": 10 * np.log10(peak2 / err[inside].mean()),
            "band_ratio": float(np.sqrt(err[~inside].mean() / err[inside].mean()))}


def richardson_lucy_rows(measurement, kernel, truth, inside, pad: bool) -> list[dict]:
    """Richardson-Lucy at its best iteration count, for the whole image and the interior."""
    half = [n // 2 for n in kernel.shape]
    data = np.pad(measurement, [(h, h) for h in half], mode="reflect") if pad else measurement
    crop = tuple(slice(h, h + n) for h, n in zip(half, truth.shape, strict=True)) if pad \
        else (Ellipsis,)
    start = time.perf_counter()
    runs = [(n, scores(richardson_lucy(data / data.max(), kernel, num_iter=n, clip=False)[crop]
                       * data.max(), truth, inside)) for n in RL_ITERATIONS]
    seconds = time.perf_counter() - start
    name = "Richardson-Lucy" + (" reflect" if pad else "")
    rows = []
    for key, what in (("psnr", "best whole"), ("psnr_interior", "best interior")):
        n, s = max(runs, key=lambda r: r[1][key])
        rows.append({"method": f"{name} ({what})", "iterations": n, **s,
                     "seconds": seconds / len(RL_ITERATIONS)})
    return rows


def dip_rows(measurement, kernel, truth, inside, checkpoints, boundary, device,
             ensemble: int = 1) -> list[dict]:
    """DIP at each checkpoint of one run (no early stopping), averaging ``ensemble`` fits."""
    volume = measurement.ndim == 3
    layout = dict(axes="ZYX", mode="volume", spacing=(0.3, 0.1, 0.1)) if volume else {}
    rows, start = [], time.perf_counter()
    steps = napari_dip.iterate(measurement, task="deblur", kernel=kernel, noise="poisson",
                               boundary=boundary, iterations=max(checkpoints), early_stop=False,
                               preview_every=math.gcd(*checkpoints), device=device, seed=0,
                               ensemble=ensemble, **layout)
    label = f"DIP fast, {boundary}" + (f", ensemble={ensemble}" if ensemble > 1 else "")
    for step in steps:
        if step.iteration in checkpoints and step.preview is not None:
            rows.append({"method": label, "iterations": step.iteration,
                         **scores(step.preview, truth, inside),
                         "seconds": time.perf_counter() - start})
    return rows


def default_row(measurement, kernel, truth, inside, device) -> dict:
    """DIP as a user runs it: the defaults, which stop counts at the Poisson noise level."""
    volume = measurement.ndim == 3
    layout = dict(axes="ZYX", mode="volume", spacing=(0.3, 0.1, 0.1)) if volume else {}
    start = time.perf_counter()
    result = napari_dip.restore(measurement, task="deblur", kernel=kernel, noise="poisson",
                                device=device, seed=0, **layout)
    p = result.parameters
    blend = f", {p['ensemble']} fits + {p['classical']} x {1 - p['classical_blend_weight']:.2f}" \
        if "classical" in p else ""
    return {"method": f"DIP fast, default ({p['stopping']}{blend})",
            "iterations": result.stopped_at, **scores(result.image, truth, inside),
            "seconds": time.perf_counter() - start}


def bench(name: str, device: str, ensembles=(), seed: int = 0) -> list[dict]:
    """A case's rows; ``seed`` > 0 draws another scene and noise (Richardson-Lucy and the
    default only: the robustness check of the blend's fixed weight)."""
    shape, psf_args, peak, checkpoints, boundaries = CASES[name]
    kernel = napari_dip.psf(**psf_args)
    truth, measurement = acquire(shape, kernel, peak, seed=seed)
    inside = interior(truth.shape)
    case = {"case": name + (f", scene {seed}" if seed else ""),
            "image": "x".join(map(str, shape)),
            "psf": f"NA {psf_args['na']}, {'x'.join(map(str, kernel.shape))}", "peak": peak}
    rows = [{"method": "measurement", **scores(measurement, truth, inside)}]
    for pad in (False, True):
        rows += richardson_lucy_rows(measurement, kernel, truth, inside, pad)
    for boundary in boundaries if not seed else ():
        rows += dip_rows(measurement, kernel, truth, inside, checkpoints, boundary, device)
    rows.append(default_row(measurement, kernel, truth, inside, device))
    if measurement.ndim == 2 and not seed:  # ensembles restore planes, not volumes
        for k in ensembles:
            rows += dip_rows(measurement, kernel, truth, inside, checkpoints, "valid", device,
                             ensemble=k)
    for row in rows:
        print(name, row)
    return [{**case, **row} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--merge", action="store_true",
                        help="replace only these cases' rows in results/deconvolution.json")
    parser.add_argument("--ensembles", default="",
                        help="comma-separated K: also DIP (valid) averaging K fits, 2-D cases")
    parser.add_argument("--scene-seeds", default="",
                        help="comma-separated seeds > 0: the 2-D cases' other scenes too "
                             "(Richardson-Lucy and the default only)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = args.cases.split(",")
    rows, run = [], machine()
    for name in cases:
        first, begun = len(rows), time.time()
        rows += bench(name, args.device,
                      [int(k) for k in args.ensembles.split(",") if k.strip()])
        for row in rows[first:]:
            row.update(run=run, case_seconds=time.time() - begun)
    for seed in (int(s) for s in args.scene_seeds.split(",") if s.strip()):
        for name in (n for n in cases if len(CASES[n][0]) == 2):
            first, begun = len(rows), time.time()
            rows += bench(name, args.device, seed=seed)
            for row in rows[first:]:
                row.update(run=run, case_seconds=time.time() - begun)
    everything = cases == list(CASES) or args.merge
    name = "deconvolution" if everything else "deconvolution-" + "-".join(cases)
    if args.merge and (RESULTS / f"{name}.json").is_file():
        fresh = {r["case"] for r in rows}
        kept = [r for r in json.loads((RESULTS / f"{name}.json").read_text())
                if r["case"] not in fresh]
        rows = sorted(kept + rows, key=lambda r: (list(CASES).index(r["case"].split(",")[0]),
                                                  r["case"]))
    runs = {r["case"]: (r["case_seconds"], r["run"]) for r in rows}
    columns = ["case", "image", "psf", "peak", "method", "iterations", "psnr",
               "psnr_interior", "band_ratio", "seconds"]
    text = [f"# Deconvolution ({args.device})", "",
            *[f"- {case}: {t:.0f} s; {run}" for case, (t, run) in runs.items()], "",
            "PSNR in dB against the ground truth with its peak as the range, for the whole "
            "image and its interior (8 px from the edges in Y and X, 2 planes in Z); "
            "*band_ratio*: RMSE in the border band over the interior's; *seconds*: per "
            "Richardson-Lucy run, or the DIP run's time to that checkpoint. See the "
            "docstring of benchmarks/deconvolution.py for the data.", "",
            markdown_table(rows, columns), ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text("\n".join(text))
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1, default=float))
    print(f"wrote {RESULTS}/{name}.md and .json")


if __name__ == "__main__":
    main()
