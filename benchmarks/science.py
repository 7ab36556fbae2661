"""Science tasks of issue 16, each against the method a user of that field would pick:

- **mri**: magnitude MR images with Rician noise, restored with the Rician likelihood against
  the Gaussian one (both DIP, default settings otherwise): the bundled MRI sample (the
  Shepp-Logan phantom, sigma 0.06, its dark background; and at 64 px with sigma 0.10, where
  the runs overfit within the step limit, so the stop matters), and a slice of the shared
  ``anatomical.nii`` (a brain crop with almost no background) with Rician noise added at
  sigma 0.05 and 0.10 of its maximum, where the Rician sigma is given (no background to read
  it from). PSNR against the truth, and the mean of the result where the truth is 0. The
  Rician model is run with each stopping rule: ES-WMV (with an explicit patience; the
  default before 2026-12-02) and the Rician discrepancy principle
  (:class:`napari_dip.stabilisers.RicianDiscrepancy`, the default, with its factor 0.9 and
  with 1); and
  both models without stopping, for their best iteration's PSNR (the oracle: what no
  stopping rule can beat).
- **astro**: the sky inpainting sample (Hubble deep field with a dead column, a satellite
  trail and cosmic-ray hits) at 128 px: DIP inpainting against scikit-image's biharmonic fill,
  PSNR inside the holes only.

    python benchmarks/science.py                 # both (~20 min on 2 cores)
    python benchmarks/science.py --only mri      # ~15 min

Writes benchmarks/results/mri.md and astro.md (with .json). Torch on 1 thread (named in the
table), each row's seconds measured in this run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import time

import numpy as np
import torch
from _common import RESULTS, SHARED, machine, markdown_table, psnr

from napari_dip import iterate, restore, samples
from napari_dip.solvers import dip as dip_solver
from napari_dip.stabilisers import default_patience


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _anatomical_slice() -> np.ndarray | None:
    path = SHARED / "mri" / "anatomical.nii"
    if not path.exists():
        return None
    import nibabel

    volume = nibabel.load(str(path)).get_fdata()
    plane = np.clip(volume[:, :, volume.shape[2] // 2], 0, None)
    return plane / plane.max()


@contextlib.contextmanager
def _rician_factor(factor: float):
    """Runs inside stop Rician-likelihood runs by the Rician discrepancy principle (the
    default, :func:`napari_dip.solvers.dip.rician_stopping`) with another factor."""
    original = dip_solver.rician_discrepancy
    dip_solver.rician_discrepancy = functools.partial(original, factor=factor)
    try:
        yield
    finally:
        dip_solver.rician_discrepancy = original


def _oracle(noisy, truth, **kwargs) -> tuple[float, int, float]:
    """(best PSNR over every step's estimate, its step, seconds) of a run without
    stopping."""
    start = time.perf_counter()
    steps = iterate(noisy, early_stop=False, preview_every=1, seed=0, device="cpu",
                    ensemble=1, **kwargs)
    best, at = -np.inf, 0
    for step in steps:
        if step.preview is not None:
            value = psnr(step.preview, truth)
            if value > best:
                best, at = value, step.iteration
    return best, at, time.perf_counter() - start


def mri_rows() -> list[dict]:
    cases = []
    sample = samples.mri()
    cases.append(("MRI sample (phantom, sigma 0.06)", sample.degraded, sample.truth, "auto"))
    # where stopping matters: at sigma 0.10 the 64 px phantom overfits within 1500 steps
    small = samples.mri(size=64, sigma=0.10)
    cases.append(("MRI sample 64 px, sigma 0.10", small.degraded, small.truth, "auto"))
    plane = _anatomical_slice()
    for sigma in (0.05, 0.10):
        if plane is None:
            break
        rng = np.random.default_rng(0)
        noisy = np.hypot(plane + rng.normal(0, sigma, plane.shape),
                         rng.normal(0, sigma, plane.shape))
        cases.append((f"anatomical.nii slice, sigma {sigma:.2f}", noisy, plane, sigma))
    rows = []
    for name, noisy, truth, sigma in cases:
        background = truth < 1e-3
        row = {"image": name, "size": "x".join(map(str, noisy.shape)),
               "noisy dB": psnr(noisy, truth),
               "background share": float(background.mean())}
        rician = {"noise_sigma": sigma}
        # an explicit patience asks for ES-WMV (the same patience a 1500-step run gets)
        wmv = {**rician, "early_stop": default_patience(1500)}
        runs = (("gaussian", "gaussian", {}, contextlib.nullcontext),
                ("rician ES-WMV", "rician", wmv, contextlib.nullcontext),
                ("rician discrepancy", "rician", rician, contextlib.nullcontext),
                ("rician discrepancy x1", "rician", rician, lambda: _rician_factor(1.0)))
        for label, noise, kwargs, rule in runs:
            with rule():
                result, seconds = _timed(lambda n=noise, k=kwargs, x=noisy: restore(
                    x, noise=n, seed=0, device="cpu", ensemble=1, **k))
            row[f"{label} dB"] = psnr(result.image, truth)
            row[f"{label} stop"] = int(result.stopped_at)
            row[f"{label} s"] = seconds
            row[f"{label} background"] = float(result.image[background].mean()) \
                if background.any() else "-"
            if noise == "rician":
                row["rician sigma"] = result.parameters.get("noise_sigma")
        for noise, kwargs in (("gaussian", {}), ("rician", {"noise_sigma": sigma})):
            best, at, seconds = _oracle(noisy, truth, noise=noise, **kwargs)
            row[f"{noise} oracle dB"], row[f"{noise} oracle step"] = best, at
        row["gain ES-WMV dB"] = row["rician ES-WMV dB"] - row["gaussian dB"]
        row["gain discrepancy dB"] = row["rician discrepancy dB"] - row["gaussian dB"]
        row["gain discrepancy x1 dB"] = row["rician discrepancy x1 dB"] - row["gaussian dB"]
        row["gain oracle dB"] = row["rician oracle dB"] - row["gaussian oracle dB"]
        rows.append(row)
        print(row, flush=True)
    return rows


def astro_rows() -> list[dict]:
    from skimage.restoration import inpaint_biharmonic

    sample = samples.sky(size=128)
    holes = sample.mask.astype(bool)
    truth = sample.truth

    def holes_db(x):
        return float(10 * np.log10(1 / np.mean((x[holes] - truth[holes]) ** 2)))

    filled, bh_seconds = _timed(lambda: inpaint_biharmonic(
        np.where(holes, 0, sample.degraded), holes))
    row = {"image": "sky sample 128x128", "holes %": 100 * float(holes.mean()),
           "zeros dB": holes_db(np.where(holes, 0, sample.degraded)),
           "biharmonic dB": holes_db(filled), "biharmonic s": bh_seconds}
    for iterations in (1500, 3000):
        result, seconds = _timed(lambda n=iterations: restore(
            sample.degraded, mask=sample.mask, task="inpaint", iterations=n,
            early_stop=False, seed=0, device="cpu"))
        row[f"DIP {iterations} dB"] = holes_db(result.image)
        row[f"DIP {iterations} s"] = seconds
    # the sample's arguments give its read noise (the run stops at it); "noise unknown": the
    # default of a frame whose noise is not given, stopped by held-out pixels and blended
    # with the biharmonic fill (held_out.py)
    for label, extra in (("default", {}), ("noise unknown", {"noise_sigma": "auto"})):
        result, seconds = _timed(lambda e=extra: restore(
            sample.degraded, mask=sample.mask, **{**sample.kwargs, **e}, seed=0,
            device="cpu"))
        row[f"DIP {label} dB"], row[f"DIP {label} s"] = holes_db(result.image), seconds
        row[f"DIP {label} iterations"] = result.iterations
    print(row, flush=True)
    return [row]


def _write(name: str, title: str, note: str, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    text = (f"# {title}\n\n{machine()}. Written by `benchmarks/science.py`.\n\n{note}\n\n"
            + markdown_table(rows, columns) + "\n")
    (RESULTS / f"{name}.md").write_text(text)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1))
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("mri", "astro"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.only in (None, "mri"):
        _write("mri", "Rician against Gaussian likelihood on magnitude MR images",
               "DIP, fast preset (1500 steps), seed 0. gaussian: the Gaussian likelihood "
               "stopped by the discrepancy principle at the noise level it estimates (the "
               "default; since 2026-12-07 blended with BM3D, napari_dip.thinning, whose "
               "validation fit its seconds include). Rician runs since 2026-12-07 stretch "
               "the network's output to (-0.2, 1) (NoiseModel.output_floor). rician "
               "ES-WMV: the Rician likelihood stopped by ES-WMV (an "
               "explicit patience; the default before 2026-12-02); rician discrepancy: "
               "stopped by the Rician discrepancy principle at 0.9 times the mean Rician "
               "variance (stabilisers.RicianDiscrepancy, the default now); x1: the same at "
               "1 times the variance (the plain principle). Rician "
               "sigma estimated from the background (phantom) or given (anatomical slice, "
               "no background). oracle: each likelihood's best step of a run without "
               "stopping (the most any stopping rule could give). dB: PSNR against the "
               "truth (range 1); stop: the step whose estimate was returned; background: "
               "the result's mean where the truth is 0 (- where it is nowhere 0).",
               mri_rows())
    if args.only in (None, "astro"):
        _write("astro", "Filling the defects of a sky frame: DIP against biharmonic",
               "PSNR inside the holes only, against the noise-free sky; DIP with the fast "
               "preset, no early stopping at 1500 and 3000 steps; the default with the "
               "sample's arguments (its read noise given: the run stops at that noise "
               "level); and the default where the noise is not given (noise unknown: the "
               "held-out pixels stop the run and weigh its blend with biharmonic).",
               astro_rows())


if __name__ == "__main__":
    main()
