"""Speed benchmark: milliseconds per iteration of each preset and image size (against a
straightforward PyTorch loop of the same network), peak memory, and time-to-quality (wall
time until the running result first comes within 0.3 dB of the run's best PSNR).

    python benchmarks/speed.py            # this machine's CPU, sizes 64..512 (about 15 min)
    python benchmarks/speed.py --quick    # 64 and 128 only
    python benchmarks/speed.py --device cuda

Writes benchmarks/results/speed.md and speed.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

from _common import RESULTS, machine, markdown_table, psnr

TIMING_STEPS = 12  # after 3 warm-up steps


_TIMING_CODE = """
import json, resource, sys, time, numpy as np, torch
from napari_dip import iterate
from napari_dip.networks import SkipNetwork
from napari_dip.presets import get_preset
preset, size, colour, device, which = {args!r}
rng = np.random.default_rng(0)
shape = (size, size, 3) if colour else (size, size)
image = rng.random(shape).astype(np.float32)
dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                   ("cpu" if device == "auto" else device))
sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
times = []
if which == "napari-dip":
    steps = iterate(image, preset=preset, iterations=STEPS + 3, early_stop=True, device=device,
                    channel_axis=-1 if colour else None)
    t = time.perf_counter()
    for step in steps:
        sync(); now = time.perf_counter(); times.append(now - t); t = now
else:  # the straightforward loop: same network, same input noise, plain MSE, nothing else
    p = get_preset(preset, "denoise")
    c = 3 if colour else 1
    torch.manual_seed(0)
    net = SkipNetwork(p.input_channels, c, p.network).to(dev)
    z = (torch.rand(1, p.input_channels, size, size) * 0.1).to(dev)
    y = torch.as_tensor(image.reshape(size, size, -1).transpose(2, 0, 1)[None].copy()).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=p.lr)
    for _ in range(STEPS + 3):
        t = time.perf_counter()
        opt.zero_grad()
        loss = ((net(z + p.input_noise * torch.randn_like(z)) - y) ** 2).mean()
        loss.backward(); opt.step(); loss.item()
        sync(); times.append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
gpu = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else 0
print(json.dumps({{"ms": 1000 * float(np.median(times[3:])), "peak_mb": peak, "gpu_mb": gpu}}))
"""


def _time_one(preset: str, size: int, colour: bool, device: str, which: str = "napari-dip",
              steps: int = TIMING_STEPS) -> dict:
    """Median ms/iteration and peak memory of one configuration, in a fresh process."""
    code = _TIMING_CODE.replace("STEPS", str(steps)).format(
        args=(preset, size, colour, device, which))
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode:
        return {"ms": float("nan"), "peak_mb": float("nan"), "error": out.stderr[-300:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_to_quality(size: int, device: str, presets=("fast", "paper"), limits=None) -> list[dict]:
    """PSNR against seconds for each preset on a denoising crop (cameraman, sigma 25/255)."""
    from skimage import data

    from napari_dip import iterate

    clean = data.camera()[256 - size // 2: 256 + size // 2,
                           256 - size // 2: 256 + size // 2].astype(np.float32) / 255
    noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape).astype(np.float32)
    curves = []
    for preset in presets:
        limit = (limits or {}).get(preset)
        times, values, es_iteration = [], [], None
        steps = iterate(noisy, preset=preset, iterations=limit, early_stop=True, device=device,
                        preview_every=25)
        while True:
            try:
                step = next(steps)
            except StopIteration as stop:
                result = stop.value
                break
            if step.preview is not None:
                times.append(step.elapsed)
                values.append(psnr(step.preview, clean))
        values, times = np.array(values), np.array(times)
        best = values.max()
        reach = times[np.argmax(values >= best - 0.3)]
        curves.append({
            "size": size, "preset": preset, "iterations": result.iterations,
            "best_psnr": float(best), "seconds_to_best-0.3dB": float(reach),
            "early_stop_psnr": psnr(result.image, clean), "stopped_at": result.stopped_at,
            "total_seconds": float(result.elapsed), "times": times.tolist(),
            "psnrs": values.tolist(),
        })
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--quick", action="store_true", help="sizes 64 and 128 only")
    parser.add_argument("--ttq-sizes", default="128",
                        help="comma-separated sizes for time-to-quality (paper preset is slow)")
    parser.add_argument("--paper-limit", type=int, default=None,
                        help="cap the paper preset's iterations in time-to-quality runs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = (64, 128) if args.quick else (64, 128, 256, 512)

    rows = []
    for preset in ("fast", "paper"):
        for size in sizes:
            for colour in (False, True):
                steps = TIMING_STEPS if size * (preset == "paper") < 512 else 5
                ours = _time_one(preset, size, colour, args.device, steps=steps)
                plain = _time_one(preset, size, colour, args.device, "plain", steps=steps)
                rows.append({
                    "preset": preset, "size": f"{size}²", "colour": "RGB" if colour else "grey",
                    "ms/iteration": ours["ms"], "plain loop ms": plain["ms"],
                    "ratio": ours["ms"] / plain["ms"], "peak MB (process)": ours["peak_mb"],
                    **({"GPU MB": ours["gpu_mb"]} if ours.get("gpu_mb") else {})})
                print(rows[-1], flush=True)
    if not args.quick:  # the memory target: a 1024x1024 colour denoise with the fast preset
        big = _time_one("fast", 1024, True, args.device, steps=3)
        rows.append({"preset": "fast", "size": "1024²", "colour": "RGB",
                     "ms/iteration": big["ms"], "peak MB (process)": big["peak_mb"],
                     **({"GPU MB": big["gpu_mb"]} if big.get("gpu_mb") else {})})
        print(rows[-1], flush=True)

    curves = []
    for size in [int(s) for s in args.ttq_sizes.split(",") if s]:
        curves += time_to_quality(size, args.device, limits={"paper": args.paper_limit})
        print({k: v for k, v in curves[-1].items() if k not in ("times", "psnrs")}, flush=True)

    RESULTS.mkdir(exist_ok=True)
    ttq_cols = ["size", "preset", "iterations", "best_psnr", "seconds_to_best-0.3dB",
                "early_stop_psnr", "stopped_at", "total_seconds"]
    text = [f"# Speed ({args.device})", "", f"Machine: {machine()}", "",
            "## Milliseconds per iteration", "",
            "Median of 12 steps after 3 warm-up steps (5 for the paper preset at 512²), each "
            "configuration in a fresh process. *plain loop*: the same network and input "
            "perturbation in a bare `zero_grad / forward / MSE / backward / step` loop with one "
            "`loss.item()` per step; *ratio* < 1 means napari-dip's loop (with averaging, "
            "backtracking and early-stopping bookkeeping) is faster. Peak MB is the whole "
            "process's resident memory (Python, torch and the run).", "",
            markdown_table(rows, ["preset", "size", "colour", "ms/iteration", "plain loop ms",
                                  "ratio", "peak MB (process)"]
                           + (["GPU MB"] if any("GPU MB" in r for r in rows) else [])), "",
            "## Time to quality (denoising, cameraman crop, sigma 25/255)", "",
            markdown_table(curves, ttq_cols), ""]
    (RESULTS / "speed.md").write_text("\n".join(text))
    (RESULTS / "speed.json").write_text(json.dumps({"rows": rows, "curves": curves}, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for c in curves:
        ax.plot(c["times"], c["psnrs"], label=f"{c['preset']} {c['size']}²")
    ax.set_xscale("log")
    ax.set_xlabel("seconds")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("Denoising: PSNR against wall time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "speed.png", dpi=120)
    print(f"wrote {RESULTS / 'speed.md'}")


if __name__ == "__main__":
    start = time.time()
    main()
    print(f"{time.time() - start:.0f} s")
