"""Speed levers: what makes a DIP step cheaper on this machine, and what it costs in quality.

    python benchmarks/levers.py                 # CPU, 128² denoising, fast preset (~10 min)
    python benchmarks/levers.py --device cuda   # adds fp16/bf16 autocast on the GPU

Each lever runs in a fresh process on the cameraman crop (128², sigma 25/255): milliseconds
per step over 50 steps after 25 warm-up steps (torch.compile: after its compilation, whose
time is the first step's), and for levers that change the numbers, the best PSNR of a full
fast-preset run (previews every 25 steps) and the PSNR of the estimate it returns.
``--networks`` compares skip-channel layouts of the fast network on the quality benchmark's
denoising crops instead.

Writes benchmarks/results/levers.md and levers.json (levers-networks.md with --networks).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _common import RESULTS, machine, markdown_table

# One lever per entry: (name, settings). Settings the worker understands:
#   threads, load (busy processes running meanwhile), channels_first (undo the engine's
#   channels-last default), channels_last, autocast (dtype name),
#   compile, sync_every, lr, network ("light": half the fast preset's channels), quality.
LEVERS = [
    ("baseline (fast preset, 2 threads)", {"threads": 2, "quality": True}),
    ("1 thread", {"threads": 1}),
    ("2 threads, 1 busy process alongside", {"threads": 2, "load": 1}),
    ("1 thread, 1 busy process alongside", {"threads": 1, "load": 1}),
    ("channels-first memory format (before: channels-last is the default)",
     {"threads": 2, "channels_first": True}),
    ("bfloat16 autocast (CPU)", {"threads": 2, "autocast": "bfloat16", "quality": True}),
    ("torch.compile", {"threads": 2, "compile": True}),
    ("host sync every 25 steps (CPU default: every step)", {"threads": 2, "sync_every": 25}),
    ("learning rate 0.02 (default 0.01)", {"threads": 2, "lr": 0.02, "quality": True}),
    ("learning rate 0.05", {"threads": 2, "lr": 0.05, "quality": True}),
    ("lighter network (half the channels)", {"threads": 2, "network": "light",
                                             "quality": True}),
]
CUDA_LEVERS = [
    ("CUDA baseline", {"quality": True}),
    ("CUDA fp16 autocast", {"autocast": "float16", "quality": True}),
    ("CUDA bf16 autocast", {"autocast": "bfloat16", "quality": True}),
    ("CUDA channels-first", {"channels_first": True}),
    ("CUDA torch.compile", {"compile": True}),
]

_WORKER = r'''
import json, sys, time
from dataclasses import replace
import numpy as np, torch
from skimage import data
import napari_dip.presets as presets
from napari_dip.pipeline import build_solver
from napari_dip.request import build_request

settings, device, size = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if settings.get("threads"):
    torch.set_num_threads(settings["threads"])
original = presets.get_preset

def patched(*args, **kwargs):
    p = original(*args, **kwargs)
    if settings.get("lr"):
        p = replace(p, lr=settings["lr"])
    if settings.get("network") == "light":
        n = p.network
        p = replace(p, network=replace(n, channels_down=tuple(c // 2 for c in n.channels_down),
                                       channels_up=tuple(c // 2 for c in n.channels_up),
                                       channels_skip=tuple(c // 2 for c in n.channels_skip)))
    return p

presets.get_preset = patched
clean = data.camera()[256 - size // 2: 256 + size // 2,
                       256 - size // 2: 256 + size // 2].astype(np.float32) / 255
noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape).astype(np.float32)

def solver_for(iterations, preview_every=None):
    s = build_solver(build_request(noisy, iterations=iterations, early_stop=True, device=device,
                               preview_every=preview_every, ensemble=1))
    if settings.get("channels_first"):
        s.net = s.net.to(memory_format=torch.contiguous_format)
        s.z = s.z.contiguous()
    if settings.get("channels_last"):
        s.net = s.net.to(memory_format=torch.channels_last)
        s.z = s.z.contiguous(memory_format=torch.channels_last)
    if settings.get("autocast"):
        dtype = getattr(torch, settings["autocast"])
        forward = s.net.forward
        def cast(z):
            with torch.autocast(s.device.type, dtype=dtype):
                return forward(z).float()
        s.net.forward = cast
    if settings.get("compile"):
        s.net.forward = torch.compile(s.net.forward)
    if settings.get("sync_every"):
        s.sync_every = settings["sync_every"]
    return s

sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
out = {}
warm, measured = 25, 50
start = time.perf_counter()
marks = {}  # wall time at which each step reached the caller (steps may come in batches)
for step in solver_for(warm + measured).run():
    sync()
    marks[step.iteration] = time.perf_counter()
    if step.iteration == 1:
        out["first_step_s"] = marks[1] - start
out["ms"] = 1000 * (marks[warm + measured] - marks[warm]) / measured
if settings.get("quality"):
    def psnr(x):
        return float(10 * np.log10(1 / np.mean((np.asarray(x, np.float64) - clean) ** 2)))
    best, t0 = -np.inf, time.perf_counter()
    steps = solver_for(None, 25).run()
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            result = stop.value
            break
        if step.preview is not None:
            best = max(best, psnr(step.preview))
    out.update(best_psnr=best, kept_psnr=psnr(result.image), iterations=result.iterations,
               stopped_at=result.stopped_at, run_seconds=time.perf_counter() - t0)
print(json.dumps(out))
'''


def run_lever(settings: dict, device: str, size: int) -> dict:
    """One lever in a fresh process (with busy processes alongside if asked)."""
    env = dict(os.environ)
    if settings.get("threads"):
        env["OMP_NUM_THREADS"] = str(settings["threads"])
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(settings.get("load", 0))]
    try:
        done = subprocess.run([sys.executable, "-c", _WORKER, json.dumps(settings), device,
                               str(size)], capture_output=True, text=True, env=env)
    finally:
        for p in busy:
            p.kill()
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1][:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


SKIP_LAYOUTS = {"skips 4 at the two deepest scales (the snail's)": (0, 0, 0, 4, 4),
                "skips 4 at every scale (the default)": (4, 4, 4, 4, 4)}


def network_comparison(device: str) -> list[dict]:
    """The fast preset with each skip layout on the quality benchmark's denoising crops."""
    from dataclasses import replace

    import numpy as np
    from _common import psnr
    from quality import SIGMA, images

    import napari_dip.presets as presets
    from napari_dip import iterate

    original = presets.get_preset
    rows = []
    try:
        for label, skips in SKIP_LAYOUTS.items():
            def patched(*args, skips=skips, **kwargs):
                p = original(*args, **kwargs)
                return replace(p, network=replace(p.network, channels_skip=skips))

            presets.get_preset = patched
            rng = np.random.default_rng(0)  # the same noise as quality.py's denoising rows
            for name, clean in images(False).items():
                noisy = (clean + rng.normal(0, SIGMA, clean.shape)).astype(np.float32)
                start, best = time.perf_counter(), -np.inf
                steps = iterate(noisy, device=device, preview_every=50,
                                channel_axis=-1 if clean.ndim == 3 else None, ensemble=1,
                                blend=False)
                while True:
                    try:
                        step = next(steps)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    if step.preview is not None:
                        best = max(best, psnr(step.preview, clean))
                rows.append({"network": label, "image": name, "best_psnr": best,
                             "kept_psnr": psnr(result.image, clean),
                             "iterations": result.iterations, "stopped_at": result.stopped_at,
                             "seconds": time.perf_counter() - start})
                print(rows[-1], flush=True)
    finally:
        presets.get_preset = original
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--networks", action="store_true",
                        help="compare skip layouts of the fast network on the denoising crops")
    args = parser.parse_args()
    if args.networks:
        start = time.time()
        rows = network_comparison(args.device)
        RESULTS.mkdir(exist_ok=True)
        text = ["# Fast network: skip layouts (denoising, sigma 25/255, 96 px crops)", "",
                f"Machine: {machine()}; total {time.time() - start:.0f} s.", "",
                "The crops and noise of `quality.py`'s denoising rows; fast preset, early "
                "stopping on; *best_psnr*: best preview (every 50 steps), *kept_psnr*: the "
                "estimate returned.", "",
                markdown_table(rows, ["network", "image", "best_psnr", "kept_psnr",
                                      "iterations", "stopped_at", "seconds"]), ""]
        (RESULTS / "levers-networks.md").write_text("\n".join(text))
        print(f"wrote {RESULTS}/levers-networks.md")
        return
    levers = CUDA_LEVERS if args.device.startswith("cuda") else LEVERS
    rows, start = [], time.time()
    base = None
    for name, settings in levers:
        r = {"lever": name, **run_lever(settings, args.device, args.size)}
        if base is None:
            base = r
        if "ms" in r and "ms" in base:
            r["speed-up"] = base["ms"] / r["ms"]
        rows.append(r)
        print(r, flush=True)
    RESULTS.mkdir(exist_ok=True)
    cols = ["lever", "ms", "speed-up", "first_step_s", "best_psnr", "kept_psnr", "iterations",
            "stopped_at", "run_seconds", "error"]
    text = [f"# Speed levers ({args.device}, {args.size}² denoising, fast preset)", "",
            f"Machine: {machine()}; total {time.time() - start:.0f} s.", "",
            "*ms*: milliseconds per step (over 50 steps after 25 warm-up steps, fresh "
            "process); *speed-up* against the first row; *first_step_s*: the first step, "
            "which includes torch.compile's compilation; *best_psnr*: best preview of a full "
            "run (every 25 steps), *kept_psnr*: the estimate the run returns (early stopping "
            "on), both in dB on the cameraman crop with sigma 25/255 noise.", "",
            markdown_table(rows, [c for c in cols if any(c in r for r in rows)]), ""]
    suffix = "" if args.device == "cpu" else "-" + args.device.split(":")[0]
    (RESULTS / f"levers{suffix}.md").write_text("\n".join(text))
    (RESULTS / f"levers{suffix}.json").write_text(json.dumps(rows, indent=1, default=float))
    print(f"wrote {RESULTS}/levers{suffix}.md")


if __name__ == "__main__":
    main()
