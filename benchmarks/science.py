"""Science tasks of issue 16, each against the method a user of that field would pick:

- **mri**: magnitude MR images with Rician noise, restored with the Rician likelihood against
  the Gaussian one (both DIP, default settings otherwise): the bundled MRI sample (the
  Shepp-Logan phantom, sigma 0.06, its dark background), and a slice of the shared
  ``anatomical.nii`` (a brain crop with almost no background) with Rician noise added at
  sigma 0.05 and 0.10 of its maximum, where the Rician sigma is given (no background to read
  it from). PSNR against the truth, and the mean of the result where the truth is 0.
- **astro**: the sky inpainting sample (Hubble deep field with a dead column, a satellite
  trail and cosmic-ray hits) at 128 px: DIP inpainting against scikit-image's biharmonic fill,
  PSNR inside the holes only.

    python benchmarks/science.py                 # both (~6 min on 2 cores)
    python benchmarks/science.py --only mri

Writes benchmarks/results/mri.md and astro.md (with .json). Torch on 1 thread (named in the
table), each row's seconds measured in this run.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _common import RESULTS, SHARED, machine, markdown_table, psnr

from napari_dip import restore, samples


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


def mri_rows() -> list[dict]:
    cases = []
    sample = samples.mri()
    cases.append(("MRI sample (phantom, sigma 0.06)", sample.degraded, sample.truth, "auto"))
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
        for noise, kwargs in (("gaussian", {}), ("rician", {"noise_sigma": sigma})):
            result, seconds = _timed(lambda n=noise, k=kwargs, x=noisy: restore(
                x, noise=n, seed=0, device="cpu", **k))
            row[f"{noise} dB"] = psnr(result.image, truth)
            row[f"{noise} s"] = seconds
            row[f"{noise} background"] = float(result.image[background].mean()) \
                if background.any() else "-"
            if noise == "rician":
                row["rician sigma"] = result.parameters.get("noise_sigma")
        row["gain dB"] = row["rician dB"] - row["gaussian dB"]
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
            sample.degraded, mask=sample.mask, **sample.kwargs, iterations=n,
            early_stop=False, seed=0, device="cpu"))
        row[f"DIP {iterations} dB"] = holes_db(result.image)
        row[f"DIP {iterations} s"] = seconds
    result, seconds = _timed(lambda: restore(sample.degraded, mask=sample.mask,
                                             **sample.kwargs, seed=0, device="cpu"))
    row["DIP default dB"], row["DIP default s"] = holes_db(result.image), seconds
    row["DIP default iterations"] = result.iterations
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
               "DIP, fast preset, default stopping (Gaussian: the discrepancy principle at "
               "the estimated noise level; Rician: ES-WMV with its sigma estimated from the "
               "background, or given where there is none). dB: PSNR against the truth "
               "(range 1); background: the result's mean where the truth is 0.",
               mri_rows())
    if args.only in (None, "astro"):
        _write("astro", "Filling the defects of a sky frame: DIP against biharmonic",
               "PSNR inside the holes only, against the noise-free sky; DIP with the fast "
               "preset, no early stopping at 1500 and 3000 steps, and the default.",
               astro_rows())


if __name__ == "__main__":
    main()
