"""Quality benchmark: PSNR and SSIM of DIP (and DeepRED) against classical methods, on real
images with synthetic degradations made by the engine's own operators and fixed seeds.

    python benchmarks/quality.py                         # every task, small crops, CPU
    python benchmarks/quality.py --tasks denoise,sr      # a subset: results/quality-denoise-sr.*
    python benchmarks/quality.py --tasks sr --merge      # rerun one task inside results/quality.*
    python benchmarks/quality.py --full --device cuda    # full-size images (GPU)

Writes benchmarks/results/quality.md, quality.json and quality.png (``--replot X.json``
redraws a PNG). "ES gap" is the PSNR of the run's best preview minus that of the estimate
early stopping kept (0 = it picked the best). It sees only the steps the run took: a run
that stops at the noise level (DIP denoising) keeps its last step and scores 0 by
construction; early_stopping.py measures what such runs miss by running on.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _common import RESULTS, SHARED, follow, machine, markdown_table, psnr, ssim
from skimage import data, img_as_float, io
from skimage.restoration import (
    denoise_nl_means,
    denoise_tv_chambolle,
    inpaint_biharmonic,
    unsupervised_wiener,
    wiener,
)
from skimage.transform import resize

from napari_dip import iterate
from napari_dip.kernels import blur_kernel
from napari_dip.operators import Blur, Downsample

SIGMA = 25 / 255
#: ``--ensembles``: extra rows ``ensemble=K`` for each K, on the tasks other than denoising
#: (which always has its own ensemble rows), beside the default DIP row.
ENSEMBLES: list[int] = []
#: ``--only``: run only the DIP and DeepRED rows whose label holds one of these (the
#: classical rows always run); with ``--merge`` only those rows are replaced.
ONLY: list[str] = []


def wanted(label: str) -> bool:
    """Whether ``--only`` lets the engine row ``label`` run."""
    return not ONLY or any(part in label for part in ONLY)


def dip_rows(label: str, kw: dict) -> list[tuple[str, dict]]:
    """The DIP row (label, engine options) and one ``ensemble=K`` row per ``--ensembles``."""
    plain = label.replace(" (default)", "")
    return [(label, kw)] + [(f"{plain}, ensemble={k}", {**kw, "ensemble": k})
                            for k in ENSEMBLES]


def _crop(image: np.ndarray, size: int | None, y: float = 0.5, x: float = 0.5) -> np.ndarray:
    if size is None:
        return image
    h, w = image.shape[:2]
    y0 = int((h - size) * y)
    x0 = int((w - size) * x)
    return image[y0:y0 + size, x0:x0 + size]


def images(full: bool) -> dict[str, np.ndarray]:
    """Grey and colour test pictures, float in [0, 1] (crops unless ``full``)."""
    s = None if full else 96
    out = {
        "camera": _crop(img_as_float(data.camera()), s, 0.25, 0.45),
        "astronaut": _crop(img_as_float(data.astronaut()), s, 0.2, 0.45),
    }
    barbara = SHARED / "dip" / "barbara.png"
    if barbara.is_file():
        b = img_as_float(io.imread(barbara))
        out["barbara"] = _crop(b if b.ndim == 2 else b[..., 0], s, 0.6, 0.8)
    return out


def apply(operator, image: np.ndarray) -> np.ndarray:
    chw = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
    with torch.no_grad():
        out = operator(torch.as_tensor(chw[None].copy(), dtype=torch.float32))[0].numpy()
    return out[0] if image.ndim == 2 else out.transpose(1, 2, 0)


def run_engine(degraded, truth, **kwargs) -> dict:
    """Run napari-dip, tracking PSNR of previews, and report the kept result."""
    kwargs.setdefault("preview_every", 50)
    if degraded.ndim == 3:
        kwargs.setdefault("channel_axis", -1)
    start = time.perf_counter()
    previews = []

    def record(step):
        if step.preview is not None:
            previews.append(psnr(step.preview, truth))

    result = follow(iterate(degraded, **kwargs), record)
    seconds = time.perf_counter() - start
    best = max(previews, default=-np.inf)
    value = psnr(result.image, truth)
    out = {"psnr": value, "ssim": ssim(result.image, truth), "seconds": seconds,
           "fits": result.parameters.get("ensemble"), "iterations": result.iterations,
           "stopped_at": result.stopped_at, "es_gap": max(best, value) - value}
    weight = result.parameters.get("classical_blend_weight")
    if weight:  # a classical blend (napari_dip.thinning): the network's part of it
        out["blend_w"] = weight
        classical = blended_classical(degraded, result.parameters)
        out["network_psnr"] = psnr((result.image - (1 - weight) * classical) / weight, truth)
    return out


def blended_classical(degraded: np.ndarray, params: dict) -> np.ndarray:
    """The classical estimate a blended run used (its ``classical``), in ``degraded``'s
    layout ((H, W) or (H, W, C))."""
    from types import SimpleNamespace

    from napari_dip.kernels import blur_kernel
    from napari_dip.thinning import anscombe_bm3d, bm3d_at_sigma
    from napari_dip.thinning import unsupervised_wiener as self_tuned

    chw = degraded[None] if degraded.ndim == 2 else np.moveaxis(degraded, -1, 0)
    chw = chw.astype(np.float64)
    if params["classical"] == "anscombe-bm3d":
        out = anscombe_bm3d(chw)
    elif params["classical"] == "wiener":
        out = self_tuned(chw, SimpleNamespace(
            kernel=blur_kernel(params["kernel"]), boundary="circular", seed=params["seed"]))
    else:
        out = bm3d_at_sigma(chw, SimpleNamespace(noise_sigma=params["noise_sigma"]))
    return out[0] if degraded.ndim == 2 else np.moveaxis(out, 0, -1)


def classical(name: str, estimate, truth, seconds: float) -> dict:
    return {"method": name, "psnr": psnr(estimate, truth), "ssim": ssim(estimate, truth),
            "seconds": seconds}


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def bench_denoise(imgs, device, full, rows):
    from bm3d import bm3d, bm3d_rgb

    rng = np.random.default_rng(0)
    for name, clean in imgs.items():
        noisy = clean + rng.normal(0, SIGMA, clean.shape)
        colour = clean.ndim == 3
        ca = -1 if colour else None
        base = {"task": "denoise σ=25/255", "image": f"{name} {'RGB' if colour else 'grey'}"}
        rows.append({**base, **classical("noisy input", noisy, clean, 0)})
        est, t = timed(denoise_nl_means, noisy, h=0.8 * SIGMA, sigma=SIGMA, fast_mode=True,
                       patch_size=5, patch_distance=6, channel_axis=ca)
        rows.append({**base, **classical("non-local means (true σ)", est, clean, t)})
        est, t = timed(denoise_tv_chambolle, noisy, weight=0.08, channel_axis=ca)
        rows.append({**base, **classical("TV (weight 0.08)", est, clean, t)})
        if colour:
            est, t = timed(bm3d_rgb, noisy, SIGMA)
        else:
            est, t = timed(bm3d, noisy, SIGMA)
        rows.append({**base, **classical("CBM3D (true σ)" if colour else "BM3D (true σ)",
                                         np.clip(est, 0, 1), clean, t)})
        # the default: one fit, a validation fit and the blend with BM3D (thinning)
        for label, kw in [("DIP fast, ensemble=1, no blend", {"ensemble": 1, "blend": False}),
                          ("DIP fast (default: 1 fit + validation fit, BM3D blend)", {}),
                          ("DIP fast, ensemble=4, no blend", {"ensemble": 4, "blend": False}),
                          ("DIP paper, no blend", {"preset": "paper", "blend": False}),
                          ("DeepRED-NLM fast (default: + validation fit, BM3D blend)",
                           {"method": "deepred"}),
                          ("DeepRED-NLM fast, no blend", {"method": "deepred", "blend": False}),
                          ("DeepRED-BM3D fast (default: + validation fit, BM3D blend)",
                           {"method": "deepred", "denoiser": "bm3d"}),
                          ("DeepRED-BM3D fast, no blend",
                           {"method": "deepred", "denoiser": "bm3d", "blend": False})]:
            if not wanted(label):
                continue
            if kw.get("preset") == "paper" and not full and device == "cpu":
                # the paper's 3000 steps of its 128-channel network take ~20 min per crop
                # on a 2-core CPU: capped here, labelled; --full runs them all
                kw = {**kw, "iterations": 600}
                label += " (capped at 600 steps)"
            r = run_engine(noisy.astype(np.float32), clean, device=device, **kw)
            rows.append({**base, "method": label, **r})
            print(rows[-1], flush=True)


def lanczos_upsample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Lanczos-3 resampling of a float image (Y, X[, C]) to ``shape`` with Pillow."""
    from PIL import Image

    channels = image[..., None] if image.ndim == 2 else image
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(c, dtype=np.float32))
                      .resize(shape[::-1], Image.Resampling.LANCZOS))
           for c in np.moveaxis(channels, -1, 0)]
    return out[0] if image.ndim == 2 else np.stack(out, -1)


def bench_sr(imgs, device, full, rows):
    for name, clean in imgs.items():
        low = apply(Downsample(4), clean)
        ca = -1 if clean.ndim == 3 else None
        base = {"task": "super-resolution ×4", "image": name}
        shape = clean.shape
        for label, order in [("bicubic", 3), ("nearest", 0)]:
            est, t = timed(resize, low, shape, order=order, anti_aliasing=False)
            rows.append({**base, **classical(label, np.clip(est, 0, 1), clean, t)})
        est, t = timed(lanczos_upsample, low, shape[:2])
        rows.append({**base, **classical("Lanczos-3", np.clip(est, 0, 1), clean, t)})
        t_low = torch.as_tensor((low[None] if ca is None else low.transpose(2, 0, 1))[None].copy())
        est = torch.nn.functional.interpolate(t_low, size=shape[:2], mode="bicubic",
                                              antialias=True, align_corners=False)[0].numpy()
        est = est[0] if ca is None else est.transpose(1, 2, 0)
        rows.append({**base, **classical("bicubic (antialiased, torch)", np.clip(est, 0, 1),
                                         clean, 0)})
        for label, kw in [*dip_rows("DIP fast (default)", {}),
                          ("DeepRED-NLM fast", {"method": "deepred"})]:
            if not wanted(label):
                continue
            r = run_engine(low.astype(np.float32), clean, task="super_resolution", factor=4,
                           device=device, **kw)
            rows.append({**base, "method": label, **r})
            print(rows[-1], flush=True)


def bench_inpaint(imgs, device, full, rows):
    masks = {}
    for stem in ("vase", "library"):
        path = SHARED / "dip" / f"{stem}_mask.png"
        if path.is_file():
            known = io.imread(path)
            known = (known if known.ndim == 2 else known[..., 0]) > 127
            masks[stem] = known
    rng = np.random.default_rng(0)
    text = np.ones((96, 96), bool)
    for r in range(8, 96, 14):  # text-like strokes
        text[r:r + 3, rng.integers(0, 20):rng.integers(60, 96)] = False
    masks["text"] = text
    for mname, known in masks.items():
        clean = imgs["astronaut"]
        if not full:
            known = resize(known.astype(float), clean.shape[:2], order=0) > 0.5
        else:
            clean = resize(clean, known.shape + clean.shape[2:], anti_aliasing=True)
        fill = ~known
        degraded = clean * known[..., None]
        base = {"task": f"inpainting ({mname} mask)", "image": "astronaut"}
        est, t = timed(inpaint_biharmonic, degraded, fill, channel_axis=-1)
        rows.append({**base, **classical("biharmonic", est, clean, t)})
        # the default stops by held-out known pixels; ES-WMV with the patience it had as
        # the default (a quarter of the 3000 steps) is the rule before
        for label, kw in [*dip_rows("DIP fast (default)", {}),
                          ("DIP fast, ES-WMV (the rule before)", {"early_stop": 750})]:
            if not wanted(label):
                continue
            r = run_engine(degraded.astype(np.float32), clean, task="inpaint", mask=fill,
                           device=device, **kw)
            rows.append({**base, "method": label, **r})
            print(rows[-1], flush=True)


def richardson_lucy_circular(blurred: np.ndarray, kernel: np.ndarray, iterations: int
                             ) -> np.ndarray:
    """Richardson-Lucy with circular convolution (the blur model of the engine's operator);
    scikit-image's zero-padded version darkens the borders of a small crop and spreads the
    error inwards by the kernel's radius every iteration."""
    shape = blurred.shape
    padded = np.zeros(shape)
    kh, kw = kernel.shape
    padded[:kh, :kw] = kernel
    otf = np.fft.rfft2(np.roll(padded, (-(kh // 2), -(kw // 2)), axis=(0, 1)))

    def blur(x, transfer):
        return np.fft.irfft2(np.fft.rfft2(x) * transfer, s=shape)

    y = np.clip(blurred, 1e-6, None)
    x = np.full(shape, y.mean())
    for _ in range(iterations):
        x = x * blur(y / np.maximum(blur(x, otf), 1e-12), np.conj(otf))
    return np.clip(x, 0, 1)


def bench_deblur(imgs, device, full, rows):
    rng = np.random.default_rng(0)
    clean = imgs["camera"]
    for kname in ("gaussian", "uniform"):
        k = blur_kernel(kname)
        blurred = apply(Blur(kname), clean) + rng.normal(0, 2**0.5 / 255, clean.shape)
        base = {"task": f"deblur ({kname})", "image": "camera"}
        rows.append({**base, **classical("blurred input", blurred, clean, 0)})
        est, t = timed(wiener, blurred, k, balance=0.01)
        rows.append({**base, **classical("Wiener (balance 0.01)", np.clip(est, 0, 1), clean, t)})
        est, t = timed(richardson_lucy_circular, blurred, k, 30)
        rows.append({**base, **classical("Richardson-Lucy (30, circular)", est, clean, t)})
        est, t = timed(unsupervised_wiener, blurred, k, clip=False,
                       rng=np.random.default_rng(0))
        rows.append({**base, **classical("Wiener, self-tuned (unsupervised)",
                                         np.clip(est[0], 0, 1), clean, t)})
        for label, kw in [*dip_rows("DIP fast (default: blend with self-tuned Wiener)", {}),
                          ("DIP fast, no blend", {"blend": False}),
                          ("DeepRED-NLM fast (default: blend with self-tuned Wiener)",
                           {"method": "deepred"}),
                          ("DeepRED-NLM fast, no blend", {"method": "deepred", "blend": False})]:
            if not wanted(label):
                continue
            # the data was blurred with the circular operator: the engine models it so
            r = run_engine(blurred.astype(np.float32), clean, task="deblur", kernel=kname,
                           boundary="circular", device=device, **kw)
            rows.append({**base, "method": label, **r})
            print(rows[-1], flush=True)


def bench_poisson(imgs, device, full, rows):
    from bm3d import bm3d

    from napari_dip.samples import cell

    peak = 30.0
    clean = cell(size=96 if not full else 256).truth
    clean = clean / clean.max() * peak
    counts = np.random.default_rng(0).poisson(clean).astype(np.float32)
    base = {"task": f"Poisson (peak {peak:g})", "image": "cell"}
    rows.append({**base, "method": "noisy counts", "psnr": psnr(counts, clean, peak)})
    # Anscombe transform, BM3D at unit sigma, exact unbiased inverse (closed-form approx.)
    a = 2 * np.sqrt(counts + 3 / 8)
    d, t = timed(bm3d, a, 1.0)
    inv = (d / 2) ** 2 + 0.25 * np.sqrt(1.5) / d - 11 / 8 / d**2 \
        + 5 / 8 * np.sqrt(1.5) / d**3 - 1 / 8
    rows.append({**base, "method": "Anscombe + BM3D", "psnr": psnr(inv, clean, peak),
                 "seconds": t})
    for label, kw in [*dip_rows("DIP fast, Poisson NLL (default)", {"noise": "poisson"}),
                      ("DIP fast, MSE", {})]:
        if not wanted(label):
            continue
        r = run_engine(counts, clean, device=device, **kw)
        for key in ("psnr", "network_psnr"):  # psnr() above assumed range 1
            if key in r:
                r[key] = r[key] + 20 * np.log10(peak)
        r.pop("ssim", None)
        rows.append({**base, "method": label, **r})
        print(rows[-1], flush=True)


def plot(rows: list[dict], path) -> None:
    """One panel per task and image: PSNR of every method as horizontal bars, napari-dip's
    runs in colour, the inputs and classical baselines in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["image"]), []).append(r)
    cols = 3
    nrows = -(-len(groups) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 2.1 * nrows), squeeze=False)
    for ax, ((task, image), group) in zip(axes.flat, groups.items(), strict=False):
        names = [g["method"] for g in group]
        values = [g["psnr"] for g in group]
        colours = ["tab:blue" if n.startswith(("DIP", "DeepRED")) else "0.6" for n in names]
        ax.barh(range(len(group)), values, color=colours)
        ax.set_yticks(range(len(group)), names, fontsize=7)
        ax.invert_yaxis()
        low = min(values)
        ax.set_xlim(low - 1, max(values) + 0.5)
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=7)
        ax.set_title(f"{task}, {image}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.supxlabel("PSNR (dB)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


TASKS = {"denoise": bench_denoise, "sr": bench_sr, "inpaint": bench_inpaint,
         "deblur": bench_deblur, "poisson": bench_poisson}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--full", action="store_true", help="full-size images (use a GPU)")
    parser.add_argument("--ensembles", default="",
                        help="comma-separated K: add 'DIP fast, ensemble=K' rows to the "
                             "super-resolution, inpainting, deblurring and Poisson tasks")
    parser.add_argument("--only", default="",
                        help="semicolon-separated label parts: only these DIP / "
                             "DeepRED rows (e.g. 'default'); with --merge the other rows "
                             "of the earlier run stay")
    parser.add_argument("--merge", action="store_true",
                        help="replace only these tasks' rows in results/quality.json")
    parser.add_argument("--replot", metavar="JSON",
                        help="only redraw the PNG of an earlier run from its JSON file")
    args = parser.parse_args()
    if args.replot:
        from pathlib import Path

        source = Path(args.replot)
        plot(json.loads(source.read_text()), source.with_suffix(".png"))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    ENSEMBLES[:] = [int(k) for k in args.ensembles.split(",") if k.strip()]
    ONLY[:] = [part for part in args.only.split(";") if part.strip()]
    imgs = images(args.full)
    tasks = args.tasks.split(",")
    rows: list[dict] = []
    run = machine()
    for task in tasks:
        start, first = time.time(), len(rows)
        TASKS[task](imgs, args.device, args.full, rows)
        seconds = time.time() - start
        for r in rows[first:]:
            r.update(bench=task, bench_seconds=seconds, run=run)
    everything = tasks == list(TASKS)
    name = "quality" if everything or args.merge else "quality-" + "-".join(tasks)
    if args.merge and (RESULTS / "quality.json").is_file():
        fresh = {(r["bench"], r["image"], r["method"]) for r in rows}
        kept = [r for r in json.loads((RESULTS / "quality.json").read_text())
                if r["bench"] not in tasks
                or ONLY and (r["bench"], r["image"], r["method"]) not in fresh
                and not any(part in r["method"] for part in ONLY)]
        rows = kept + rows
        images_seen = list(dict.fromkeys(r["image"] for r in rows))
        rows.sort(key=lambda r: (list(TASKS).index(r["bench"]), images_seen.index(r["image"]),
                                 r["method"].startswith(("DIP", "DeepRED"))))
    write(rows, name, args.device, args.full)


def write(rows: list[dict], name: str, device: str, full: bool) -> None:
    """The Markdown table, JSON and plot of ``rows`` as results/{name}.*; the header gives
    each task's wall time and the machine and date of its run."""
    RESULTS.mkdir(exist_ok=True)
    runs: dict[str, list] = {}  # a task's runs (--only --merge keeps an earlier one's rows)
    for r in rows:
        if (r["bench_seconds"], r["run"]) not in runs.setdefault(r["bench"], []):
            runs[r["bench"]].append((r["bench_seconds"], r["run"]))
    cols = ["task", "image", "method", "fits", "psnr", "ssim", "seconds", "iterations",
            "stopped_at", "es_gap", "blend_w", "network_psnr"]
    text = [f"# Quality ({device}, {'full size' if full else '96 px crops'})", "",
            f"Wall time {sum(t for each in runs.values() for t, _ in each):.0f} s in all:", "",
            *[f"- {bench}: " + "; rows of another run: ".join(f"{t:.0f} s; {run}"
                                                             for t, run in each)
              for bench, each in runs.items()], "",
            "PSNR in dB against the clean image (Poisson rows: peak 30 photons as the range); "
            "*fits*: how many fits a DIP row averaged (its `ensemble`; blank in rows run "
            "before 2026-12-07); *es_gap*: best preview PSNR of the run minus the kept "
            "estimate's (only over "
            "the steps run: 0 by construction for runs that stop at the noise level and "
            "keep that step; `early_stopping.py` measures what they miss); *blend_w*: for "
            "runs blended with the classical method (napari_dip.thinning; since 2026-12-07: "
            "photon counts with Anscombe + BM3D, Gaussian denoising with BM3D, circular "
            "deblurring with the self-tuned Wiener filter at weight 0.5) the "
            "network's weight in the blend (data thinning chose it for denoising), and "
            "*network_psnr* the network's part alone; *psnr* is the blend's. DIP rows run "
            "before 2026-12-07 (the header's dates) had no blend; DeepRED rows blend since "
            "the denoise runs of 212 s and 1309 s and the deblur run of 95 s (rows labelled "
            "'no blend' before them ran without). Super-resolution results are "
            "back-projected onto their measurement (napari_dip.consistency) since the sr "
            "run of 2026-12-07 with 492 s.", "",
            markdown_table(rows, cols), ""]
    (RESULTS / f"{name}.md").write_text("\n".join(text))
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1, default=float))
    plot(rows, RESULTS / f"{name}.png")
    print(f"wrote {RESULTS}/{name}.md, .json and .png")


if __name__ == "__main__":
    main()
