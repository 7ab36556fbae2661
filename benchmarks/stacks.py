"""Stacks, volumes and tiles: what warm start saves, volume against slice mode, and the peak
memory of a large tiled run.

    python benchmarks/stacks.py                  # everything (about 30 min on 2 CPU cores)
    python benchmarks/stacks.py --only warm      # warm start only (also: volume, tiles)
    python benchmarks/stacks.py --device cuda

Data: the real MRI volume ../shared/data/mri/anatomical.nii (nibabel's test data, 33x41x25
voxels of 2 mm), scaled to [0, 1] by its 99.9th percentile and clipped, with Rician noise of
sigma 0.1 (the magnitude of complex Gaussian noise, as MR magnitude images have). Planes
are the axial slices (axes "XYZ": Y x X = 41 x 33 per plane). PSNR is against the noise-free
volume, data range 1.

1. Warm start (the iterations it saves at equal PSNR). For each of 8 consecutive slices:
   a cold run (fresh weights) and a warm run (from the weights the cold run of the slice
   before ended with), both 1500 steps without early stopping, PSNR every 25 steps. Saved:
   1500 minus the first step at which the warm run reaches the cold run's final PSNR.
   Then the whole pipeline, ``restore(stack, axes="XYZ", warm_start=...)``: every slice cold
   against warm with a fraction of the steps, with and without early stopping.
2. Volume against slice mode on the 16 central slices of the same noisy volume.
3. Peak resident memory of a 4096 x 4096 tiled denoise (tile=512, 2 steps per tile: the
   peak does not grow with the number of steps), in a fresh process.

Writes benchmarks/results/stacks.md (and stacks.json).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time

import numpy as np
from _common import RESULTS, SHARED, machine, markdown_table, psnr

N = 1500  # the fast preset's denoising limit
EVERY = 25
PLANES = range(8, 16)


def load_volume(sigma: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, truth), axes XYZ, float32 in [0, 1]-ish."""
    import nibabel

    data = nibabel.load(SHARED / "mri" / "anatomical.nii").get_fdata()
    truth = np.clip(data / np.percentile(data, 99.9), 0, 1)
    rng = np.random.default_rng(seed)
    noisy = np.hypot(truth + rng.normal(0, sigma, truth.shape), rng.normal(0, sigma, truth.shape))
    return noisy.astype(np.float32), truth.astype(np.float32)


def plane(a: np.ndarray, k: int) -> np.ndarray:
    """Slice k as (Y, X)."""
    return np.ascontiguousarray(a[:, :, k].T)


def curve(noisy2d, truth2d, device, state=None, iterations=N):
    """PSNR every EVERY steps of one 2-D run, and the final (weights, Adam state); ``state``
    = (weights, Adam state or None) to start from."""
    from napari_dip.pipeline import build_solver
    from napari_dip.request import build_request

    solver = build_solver(build_request(noisy2d, iterations=iterations, early_stop=False,
                                    preview_every=EVERY, device=device, ensemble=1))
    if state is not None:
        solver.net.load_state_dict(state[0])
        if state[1] is not None:
            solver.optimizer.load_state_dict(state[1])
    points = []
    for step in solver.run():
        if step.preview is not None:
            points.append((step.iteration, psnr(step.preview, truth2d)))
    weights = {k: v.detach().clone() for k, v in solver.net.state_dict().items()}
    return np.array(points), (weights, copy.deepcopy(solver.optimizer.state_dict()))


def first_reaching(points: np.ndarray, level: float) -> int | None:
    hit = np.nonzero(points[:, 1] >= level)[0]
    return int(points[hit[0], 0]) if hit.size else None


def warm_start(device: str) -> dict:
    noisy, truth = load_volume()
    rows, curves = [], {}
    previous = None
    for k in PLANES:
        y, t = plane(noisy, k), plane(truth, k)
        cold, weights = curve(y, t, device)
        row = {"slice": k, "noisy PSNR": psnr(y, t), "cold PSNR @1500": cold[-1, 1],
               "cold best": cold[:, 1].max(),
               "cold steps to its final -0.1 dB": first_reaching(cold, cold[-1, 1] - 0.1)}
        if previous is not None:
            warm, _ = curve(y, t, device, state=previous)
            reach = first_reaching(warm, cold[-1, 1])
            fresh, _ = curve(y, t, device, state=(previous[0], None))
            fresh_reach = first_reaching(fresh, cold[-1, 1])
            row.update({
                "fresh-Adam warm PSNR @100": fresh[3, 1],
                "fresh-Adam warm steps to cold @1500":
                    fresh_reach if fresh_reach is not None else "never",
                "warm PSNR @100": warm[3, 1], "warm PSNR @375": warm[14, 1],
                "warm PSNR @1500": warm[-1, 1],
                "warm steps to cold @1500": reach if reach is not None else "never",
                "steps saved": N - reach if reach is not None else 0,
            })
            curves[k] = {"cold": cold.tolist(), "warm": warm.tolist()}
        rows.append(row)
        previous = weights
        print(row, flush=True)
    return {"rows": rows, "curves": curves}


def pipeline(device: str) -> list[dict]:
    """restore() on the 8-slice stack: cold against warm with fractions of the steps."""
    from napari_dip import restore

    noisy, truth = load_volume()
    sub = slice(PLANES.start, PLANES.stop)
    stack, ref = noisy[:, :, sub], truth[:, :, sub]
    rows = []
    settings = [("cold", False, False), ("warm (default: to the first slice's loss)", True,
                                         False),
                ("warm, 150 steps each", 150, False), ("warm, 375 steps each", 375, False),
                ("cold, early stop", False, True), ("warm (default), early stop", True, True)]
    for name, warm, early in settings:
        t0 = time.perf_counter()
        r = restore(stack, axes="XYZ", warm_start=warm, iterations=N, early_stop=early,
                    device=device, ensemble=1)
        seconds = time.perf_counter() - t0
        per = [psnr(plane(r.image, i), plane(ref, i)) for i in range(stack.shape[2])]
        rows.append({"setting": name, "total steps": r.iterations,
                     "steps per slice": "/".join(str(p["iterations"]) for p in r.parts),
                     "mean PSNR": float(np.mean(per)),
                     "mean PSNR slices 2-8": float(np.mean(per[1:])),
                     "min PSNR": float(np.min(per)), "seconds": seconds})
        print(rows[-1], flush=True)
    return rows


def blended_stack(device: str, sigma: float = 0.1) -> list[dict]:
    """The 8-slice stack with Gaussian noise (no Rician floor): the network alone, the
    default (each plane blended with BM3D at the weight the first plane's validation fit
    chose) and BM3D per plane; the last row blends each plane at the weight its truth
    would choose (the cost of sharing one weight)."""
    from types import SimpleNamespace

    from napari_dip import restore
    from napari_dip.noise_levels import gaussian_sigma
    from napari_dip.thinning import bm3d_at_sigma

    _, truth = load_volume()
    sub = slice(PLANES.start, PLANES.stop)
    ref = truth[:, :, sub]
    noisy = (ref + np.random.default_rng(1).normal(0, sigma, ref.shape)).astype(np.float32)
    n = ref.shape[2]

    def scores(image):
        return [psnr(plane(image, i), plane(ref, i)) for i in range(n)]

    rows = []
    for name, kwargs in [("network alone (blend=False; auto: 2 fits)", {"blend": False}),
                         ("default (1 fit, blended at the first plane's weight)", {})]:
        t0 = time.perf_counter()
        r = restore(noisy, axes="XYZ", device=device, **kwargs)
        seconds = time.perf_counter() - t0
        per = scores(r.image)
        rows.append({"setting": name, "mean PSNR": float(np.mean(per)),
                     "min PSNR": float(np.min(per)), "total steps": r.iterations,
                     "validation steps": r.parameters.get("validation_iterations", 0),
                     "weight": r.parameters.get("classical_blend_weight", ""),
                     "seconds": seconds})
        print(rows[-1], flush=True)
    weight = r.parameters["classical_blend_weight"]
    classical, oracle = np.empty_like(r.image), []
    for i in range(n):
        chw = plane(noisy, i)[None].astype(np.float64)
        est = bm3d_at_sigma(chw, SimpleNamespace(noise_sigma=gaussian_sigma(chw)))[0]
        classical[:, :, i] = est.T
        network = (plane(r.image, i) - (1 - weight) * est) / weight
        best = max(np.linspace(0, 1, 101), key=lambda w, net=network, e=est, k=i: psnr(
            w * net + (1 - w) * e, plane(ref, k)))
        oracle.append(psnr(best * network + (1 - best) * est, plane(ref, i)))
    per = scores(classical)
    rows.append({"setting": "BM3D per plane (at its estimated sigma)",
                 "mean PSNR": float(np.mean(per)), "min PSNR": float(np.min(per))})
    rows.append({"setting": "each plane at its truth's best weight (oracle)",
                 "mean PSNR": float(np.mean(oracle)), "min PSNR": float(np.min(oracle))})
    return rows


VOLUME_SLICES = slice(4, 20)  # 16 central axial slices: 16 x 41 x 33 voxels


def volume_vs_slices(device: str, volume_steps: int = 800) -> list[dict]:
    """Slice mode (defaults) against volume mode, PSNR every 100 steps of the volume run."""
    from napari_dip import iterate, restore

    noisy, truth = load_volume()
    noisy, truth = noisy[:, :, VOLUME_SLICES], truth[:, :, VOLUME_SLICES]
    rows = [{"mode": "noisy input", "PSNR": psnr(noisy, truth)}]
    for warm in (True, False):
        t0 = time.perf_counter()
        r = restore(noisy, axes="XYZ", iterations=N, early_stop=False, warm_start=warm,
                    device=device, ensemble=1)
        rows.append({"mode": f"slices ({'warm, default' if warm else 'cold'})",
                     "steps per part": N, "total steps": r.iterations,
                     "PSNR": psnr(r.image, truth), "seconds": time.perf_counter() - t0})
        print(rows[-1], flush=True)
    t0 = time.perf_counter()
    steps = iterate(noisy, axes="XYZ", mode="volume", iterations=volume_steps,
                    early_stop=False, preview_every=100, spacing=(2.0, 2.0, 2.0),
                    device=device)
    while True:
        try:
            step = next(steps)
        except StopIteration:
            break
        if step.preview is not None:
            rows.append({"mode": "volume", "steps per part": step.iteration,
                         "total steps": step.iteration, "PSNR": psnr(step.preview, truth),
                         "seconds": time.perf_counter() - t0})
            print(rows[-1], flush=True)
    return rows


TILED = """
import json, resource, time, numpy as np, torch
from napari_dip import restore
rng = np.random.default_rng(0)
yy, xx = np.mgrid[:4096, :4096] / 4096
image = (0.5 + 0.3 * np.sin(40 * xx) * np.cos(30 * yy) + rng.normal(0, 0.1, (4096, 4096))
         ).astype(np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
r = restore(image, tile={tile}, iterations=2, early_stop=False, device={device!r})
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
gpu = torch.cuda.max_memory_allocated() / 2**20 if {device!r}.startswith("cuda") else 0
print(json.dumps({{"tiles": r.parameters["tiles"], "tile": r.parameters["tile"],
                  "overlap": r.parameters["overlap"], "peak_mb": peak,
                  "before_run_mb": before, "gpu_mb": gpu, "seconds": seconds}}))
"""


def tiled_memory(device: str) -> list[dict]:
    from napari_dip.memory import gib
    from napari_dip.request import build_plan
    from napari_dip.sizing import part_bytes

    rows = []
    for tile in (512,):
        out = subprocess.run([sys.executable, "-c", TILED.format(tile=tile, device=device)],
                             capture_output=True, text=True)
        if out.returncode:
            rows.append({"tile": tile, "error": out.stderr[-400:]})
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        plan = build_plan(np.zeros((64, 64), np.float32) + np.eye(64), axes="YX")
        r["estimate per tile"] = gib(part_bytes(plan.template, (tile, tile), 1))
        r["estimate untiled"] = gib(part_bytes(plan.template, (4096, 4096), 1))
        rows.append(r)
        print(r, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=("warm", "pipeline", "volume", "tiles", "blend"),
                        action="append")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # comparable with the test suite; one core each
    parts = args.only or ["warm", "pipeline", "volume", "tiles", "blend"]
    RESULTS.mkdir(exist_ok=True)
    json_path = RESULTS / "stacks.json"
    saved = json.loads(json_path.read_text()) if json_path.exists() else {}
    started = time.time()
    if "warm" in parts:
        saved["warm"] = warm_start(args.device)
    if "pipeline" in parts:
        saved["pipeline"] = pipeline(args.device)
    if "volume" in parts:
        saved["volume"] = volume_vs_slices(args.device)
    if "tiles" in parts:
        saved["tiles"] = tiled_memory(args.device)
    if "blend" in parts:
        saved["blend"] = blended_stack(args.device)
    # parts run on different days and machines keep their own machine line
    saved["machine"] = machine()
    saved.setdefault("machines", {}).update(dict.fromkeys(parts, saved["machine"]))
    json_path.write_text(json.dumps(saved, indent=1))
    write_markdown(saved, args.device)
    print(f"{time.time() - started:.0f} s")


def summary(saved: dict) -> list[str]:
    """The conclusions, from the numbers measured."""
    lines = ["## Summary", ""]
    if "warm" in saved:
        warm = [r["steps saved"] for r in saved["warm"]["rows"] if "steps saved" in r]
        lines.append(f"- A warm-started slice reaches the PSNR of a 1500-step cold run after "
                     f"{N - max(warm)}-{N - min(warm)} steps: median {np.median(warm):.0f} "
                     f"of {N} steps saved.")
    rows = {r["setting"]: r for r in saved.get("pipeline", [])}
    cold = rows.get("cold")
    default = next((r for k, r in rows.items() if k.startswith("warm (default:")), None)
    if cold and default:
        lines.append(
            f"- In the pipeline the default warm start (each slice stops at the first "
            f"slice's loss) took {default['total steps']} steps instead of "
            f"{cold['total steps']} ({100 * (1 - default['total steps'] / cold['total steps']):.0f}"
            f" % fewer) at a mean PSNR of {default['mean PSNR']:.2f} dB against "
            f"{cold['mean PSNR']:.2f} dB: warm start is the default.")
    by_mode = {r["mode"]: r for r in saved.get("volume", [])}
    w, c = by_mode.get("slices (warm, default)"), by_mode.get("slices (cold)")
    if w and c:
        lines.append(
            f"- On the 16 slices of the volume comparison: {w['total steps']} steps instead of "
            f"{c['total steps']} at {w['PSNR']:.2f} dB against {c['PSNR']:.2f} dB "
            f"({w['PSNR'] - c['PSNR']:+.2f} dB).")
    volume = [r for r in saved.get("volume", []) if r["mode"] == "volume"]
    slices = [r for r in saved.get("volume", []) if r["mode"].startswith("slices")]
    if volume and slices:
        best = max(volume, key=lambda r: r["PSNR"])
        lines.append(
            f"- Volume mode reached {best['PSNR']:.2f} dB after {best['total steps']} steps, "
            f"still rising, against {max(r['PSNR'] for r in slices):.2f} dB for slice mode: "
            "on a CPU the 3-D network needs more steps than could be afforded here; slice "
            "mode is the better default for denoising, volume mode is there for 3-D holes "
            "and thick slices.")
    for r in saved.get("tiles", []):
        if "peak_mb" in r:
            lines.append(
                f"- A 4096 x 4096 denoise in {r['tiles']} tiles of {r['tile']} px peaked at "
                f"{r['peak_mb']:.0f} MB for the whole process ({r['before_run_mb']:.0f} MB "
                f"before the run), against an estimated {r['estimate untiled']} untiled.")
    return lines + [""]


def write_markdown(saved: dict, device: str) -> None:
    text = [f"# Stacks, volumes and tiles ({device})", "",
            *(["Machines (torch on one thread):", "",
                *[f"- {part}: {line}" for part, line in saved["machines"].items()], ""]
              if saved.get("machines") else
              [f"Machine: {saved.get('machine', '')}; torch on one thread.", ""]),
            "Data: `../shared/data/mri/anatomical.nii` (33x41x25, 2 mm), scaled to [0, 1], "
            "Rician noise sigma 0.1; slices are the axial planes (41x33). "
            "Reproduce: `python benchmarks/stacks.py`.", "",
            "The machine was shared with other benchmark runs, so wall times (*seconds*) are "
            "not comparable from row to row; steps are the measure of cost.", ""]
    text += summary(saved)
    if "warm" in saved:
        rows = saved["warm"]["rows"]
        warm_rows = [r for r in rows if "steps saved" in r]
        cols = ["slice", "noisy PSNR", "cold PSNR @1500", "cold best",
                "cold steps to its final -0.1 dB", "warm PSNR @100", "warm PSNR @375",
                "warm PSNR @1500", "warm steps to cold @1500", "steps saved",
                "fresh-Adam warm PSNR @100", "fresh-Adam warm steps to cold @1500"]
        saved_steps = [r["steps saved"] for r in warm_rows]
        text += ["## Warm start: steps saved at equal PSNR", "",
                 "Each slice from fresh weights (cold) and from the weights and Adam state the "
                 "cold run of the slice before ended with (warm, what the pipeline does); 1500 "
                 "steps, no early stopping, PSNR every 25 steps. *Steps saved*: 1500 minus the "
                 "first step at which the warm run reaches the cold run's PSNR at step 1500. "
                 "*Fresh-Adam warm*: the weights only, with a new optimiser (rejected: its "
                 "first steps move every weight by about the learning rate and undo most of "
                 "the head start).", "",
                 markdown_table(rows, cols), "",
                 f"Median steps saved: {np.median(saved_steps):.0f} of {N} "
                 f"(range {min(saved_steps)}-{max(saved_steps)}).", ""]
    if "pipeline" in saved:
        text += ["## Warm start in the pipeline", "",
                 "`restore(stack, axes='XYZ', iterations=1500, warm_start=...)` on the 8 "
                 "slices: the first slice always runs 1500 steps from fresh weights; the "
                 "others start from the slice before (warm) and stop when their loss (mean of "
                 "20 steps) comes down to the first slice's final loss (`warm_start=True`, "
                 "the default), or after a fixed number of steps (`warm_start=150`), or "
                 "run 1500 steps from fresh weights (cold, `warm_start=False`).", "",
                 markdown_table(saved["pipeline"], ["setting", "total steps",
                                                    "steps per slice", "mean PSNR",
                                                    "mean PSNR slices 2-8", "min PSNR",
                                                    "seconds"]), ""]
    if "volume" in saved:
        text += ["## Volume mode against slice mode", "",
                 "The 16 central axial slices of the noisy volume (16 x 41 x 33 voxels); slice "
                 "mode with the 2-D network (1500 steps per slice, no early stopping, warm "
                 "start as by default or off), volume mode with the 3-D network (spacing 2 mm "
                 "isotropic, no early stopping; PSNR of the running estimate every 100 "
                 "steps of one run). The 3-D network's steps are far more expensive on a CPU.",
                 "", markdown_table(saved["volume"], ["mode", "steps per part",
                                                      "total steps", "PSNR", "seconds"]), ""]
    if "tiles" in saved:
        text += ["## Peak memory of a 4096 x 4096 tiled denoise", "",
                 "`restore(image, tile=512, iterations=2)` in a fresh process (fast preset); "
                 "peak resident memory of the whole process (python, torch, the 64 MB input, "
                 "the output and the blending buffers included), against the engine's own "
                 "estimate for one tile and for the untiled image.", "",
                 markdown_table(saved["tiles"], ["tile", "overlap", "tiles", "peak_mb",
                                                 "before_run_mb", "estimate per tile",
                                                 "estimate untiled", "seconds"]), ""]
    if "blend" in saved:
        text += ["## A stack's planes blended with BM3D", "",
                 "The 8 slices with Gaussian noise of sigma 0.1 instead (BM3D has no Rician "
                 "model), `restore(stack, axes='XYZ')` with the defaults (warm start, the "
                 "noise level estimated per plane): the network alone, and each plane "
                 "blended with BM3D at the weight the first plane's validation fit chose "
                 "(napari_dip.thinning); PSNR per slice against the truth.", "",
                 markdown_table(saved["blend"], ["setting", "mean PSNR", "min PSNR",
                                                 "total steps", "validation steps", "weight",
                                                 "seconds"]), ""]
    (RESULTS / "stacks.md").write_text("\n".join(text))


if __name__ == "__main__":
    main()
