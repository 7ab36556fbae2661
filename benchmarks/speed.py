"""Speed benchmark: milliseconds per iteration of each preset and image size (against a
straightforward PyTorch loop of the same network), peak memory, and time-to-quality (wall
time until the running result first comes within 0.3 dB of the run's best PSNR).

    python benchmarks/speed.py --ttq-sizes ""   # step times 64..512 and 1024² memory
    python benchmarks/speed.py --quick          # 64 and 128 only, time to quality at 128²
    python benchmarks/speed.py --ttq-only --ttq-sizes 128,256 --paper-limit 1200
    python benchmarks/speed.py --device cuda

Writes benchmarks/results/speed.md, speed.json and speed.png (step times; with time-to-quality
runs also speed-ttq.png); ``--ttq-only`` writes ttq.md, ttq.json and ttq.png and keeps the
earlier rows of sizes it does not measure. ``--replot`` redraws the PNGs from the JSON files.
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
from _common import RESULTS, follow, machine, markdown_table, noisy_cameraman, psnr

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
                    channel_axis=-1 if colour else None, ensemble=1, blend=False)
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


def _time_pair(preset: str, size: int, colour: bool, device: str, steps: int, rounds: int
               ) -> tuple[dict, dict]:
    """napari-dip's loop and the plain loop, timed in ``rounds`` alternating rounds (the
    order swaps every round); each keeps its fastest round's median, so a burst of load
    from elsewhere on a shared machine slows one round, not the comparison."""
    runs: dict[str, list[dict]] = {"napari-dip": [], "plain": []}
    for k in range(rounds):
        for which in ("napari-dip", "plain")[:: 1 if k % 2 == 0 else -1]:
            runs[which].append(_time_one(preset, size, colour, device, which, steps=steps))
    best = []
    for which in ("napari-dip", "plain"):
        fastest = min(runs[which], key=lambda r: np.inf if np.isnan(r["ms"]) else r["ms"])
        best.append({**fastest, "rounds": [r["ms"] for r in runs[which]]})
    return best[0], best[1]


def es_stop(variance: list[float], patience: int) -> tuple[int, int]:
    """(iteration ES-WMV would stop at, iteration of the estimate it keeps), 1-based, from a
    run's variance series, as the engine's early stopping decides with ``patience``."""
    best, best_at = np.inf, 0
    for i, v in enumerate(variance, 1):
        if np.isfinite(v) and v < best:
            best, best_at = v, i
        if best_at and i - best_at >= patience:
            return i, best_at
    return len(variance), best_at or len(variance)


def time_to_quality(size: int, device: str, presets=("fast", "paper"), limits=None,
                    every: int = 10) -> list[dict]:
    """PSNR against seconds for each preset on a denoising crop (cameraman, sigma 25/255).

    Each preset runs once to its iteration limit with early stopping's bookkeeping on but a
    patience longer than the run (so it never stops: the curve is the run *without* early
    stopping); where default early stopping would have stopped, and what it would have kept,
    is read from the run's variance series (the trajectory does not depend on stopping)."""

    from napari_dip import iterate
    from napari_dip.stabilisers import default_patience

    noisy, clean = noisy_cameraman(size)
    curves = []
    for preset in presets:
        from napari_dip.presets import get_preset

        limit = (limits or {}).get(preset) or get_preset(preset, "denoise").iterations
        iterations, times, values, elapsed = [], [], [], []

        def record(step, elapsed=elapsed, iterations=iterations, times=times, values=values):
            elapsed.append(step.elapsed)
            if step.preview is not None:
                iterations.append(step.iteration)
                times.append(step.elapsed)
                values.append(psnr(step.preview, clean))

        result = follow(iterate(noisy, preset=preset, iterations=limit, early_stop=limit + 1,
                                device=device, preview_every=every, ensemble=1), record)
        values, times, iterations = np.array(values), np.array(times), np.array(iterations)
        best = values.max()
        reach = int(np.argmax(values >= best - 0.3))
        stop_at, kept = es_stop(result.history["variance"], default_patience(limit))
        nearest = int(np.argmin(np.abs(iterations - kept)))
        curves.append({
            "size": size, "preset": preset, "iterations": limit,
            "best_psnr": float(best), "best_at": int(iterations[int(np.argmax(values))]),
            "seconds_to_best-0.3dB": float(times[reach]),
            "iterations_to_best-0.3dB": int(iterations[reach]),
            "final_psnr": float(values[-1]), "total_seconds": float(result.elapsed),
            "es_stop": stop_at, "es_kept": kept, "es_psnr": float(values[nearest]),
            "es_seconds": float(elapsed[stop_at - 1]),
            "times": times.tolist(), "psnrs": values.tolist(),
            "iteration_marks": iterations.tolist(),
        })
    return curves


def ttq_targets(curves: list[dict]) -> list[dict]:
    """The issue's target per size: seconds the fast preset takes to reach the paper preset's
    best PSNR minus 0.3 dB, against the paper preset's own time to get there."""
    rows = []
    for size in sorted({c["size"] for c in curves}):
        by = {c["preset"]: c for c in curves if c["size"] == size}
        if not {"fast", "paper"} <= set(by):
            continue
        fast, paper = by["fast"], by["paper"]
        goal = paper["best_psnr"] - 0.3
        reached = [t for t, v in zip(fast["times"], fast["psnrs"], strict=True) if v >= goal]
        fast_s = reached[0] if reached else float("nan")
        rows.append({"size": f"{size}²", "paper best PSNR": paper["best_psnr"],
                     "goal (paper best − 0.3)": goal, "fast best PSNR": fast["best_psnr"],
                     "paper seconds to goal": paper["seconds_to_best-0.3dB"],
                     "fast seconds to goal": fast_s,
                     "ratio (target ≤ 0.125)": fast_s / paper["seconds_to_best-0.3dB"]
                     if reached else float("nan"),
                     "met": "yes" if reached and fast_s <= paper["seconds_to_best-0.3dB"] / 8
                     else f"no (fast falls {goal - fast['best_psnr']:.2f} dB short)"
                     if not reached else "no (too slow)"})
    return rows


def plot(curves: list[dict], name: str = "speed.png") -> None:
    """PSNR against seconds for every time-to-quality curve: results/``name``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for c in curves:
        ax.plot(c["times"], c["psnrs"], label=f"{c['preset']} {c['size']}²")
        if c.get("es_stop"):
            ax.plot(c["es_seconds"], c["es_psnr"], "o", color=ax.lines[-1].get_color())
    ax.set_xscale("log")
    ax.set_xlabel("seconds")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("Denoising: PSNR against wall time (dot: early stop)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / name, dpi=120)
    plt.close(fig)


def plot_timing(rows: list[dict], name: str = "speed.png") -> None:
    """Milliseconds per iteration against image size for each preset (solid: napari-dip,
    dashed: the plain loop): results/``name``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for preset in ("fast", "paper"):
        for colour in ("grey", "RGB"):
            pts = [r for r in rows if r["preset"] == preset and r["colour"] == colour
                   and r.get("plain loop ms")]
            if not pts:
                continue
            sizes = [int(r["size"].rstrip("²")) for r in pts]
            line, = ax.plot(sizes, [r["ms/iteration"] for r in pts], "o-",
                            label=f"{preset} {colour}")
            ax.plot(sizes, [r["plain loop ms"] for r in pts], "--", color=line.get_color())
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("image side (pixels)")
    ax.set_ylabel("ms per iteration")
    ax.set_title("Step time (dashed: plain PyTorch loop)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / name, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--quick", action="store_true", help="sizes 64 and 128 only")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating timing rounds per configuration (fastest kept)")
    parser.add_argument("--ttq-sizes", default="128",
                        help="comma-separated sizes for time-to-quality (paper preset is slow)")
    parser.add_argument("--paper-limit", type=int, default=None,
                        help="cap the paper preset's iterations in time-to-quality runs")
    parser.add_argument("--ttq-only", action="store_true",
                        help="only the time-to-quality runs (written to results/ttq.md)")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw speed.png from speed.json")
    args = parser.parse_args()
    if args.replot:
        for stem in ("speed", "ttq"):
            if (RESULTS / f"{stem}.json").is_file():
                saved = json.loads((RESULTS / f"{stem}.json").read_text())
                if saved["rows"]:
                    plot_timing(saved["rows"])
                if saved["curves"]:
                    plot(saved["curves"], "ttq.png" if stem == "ttq" else "speed-ttq.png")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = (64, 128) if args.quick else (64, 128, 256, 512)

    rows = []
    for preset in ("fast", "paper") if not args.ttq_only else ():
        for size in sizes:
            for colour in (False, True):
                steps = TIMING_STEPS if size * (preset == "paper") < 512 else 5
                ours, plain = _time_pair(preset, size, colour, args.device, steps, args.rounds)
                rows.append({
                    "preset": preset, "size": f"{size}²", "colour": "RGB" if colour else "grey",
                    "ms/iteration": ours["ms"], "plain loop ms": plain["ms"],
                    "ratio": ours["ms"] / plain["ms"], "peak MB (process)": ours["peak_mb"],
                    **({"GPU MB": ours["gpu_mb"]} if ours.get("gpu_mb") else {}),
                    "rounds ms": ours["rounds"], "rounds plain ms": plain["rounds"]})
                print(rows[-1], flush=True)
    # the memory target: a 1024x1024 colour denoise with the fast preset
    if not args.quick and not args.ttq_only:
        big = _time_one("fast", 1024, True, args.device, steps=3)
        rows.append({"preset": "fast", "size": "1024²", "colour": "RGB",
                     "ms/iteration": big["ms"], "peak MB (process)": big["peak_mb"],
                     **({"GPU MB": big["gpu_mb"]} if big.get("gpu_mb") else {})})
        print(rows[-1], flush=True)

    curves = []
    for size in [int(s) for s in args.ttq_sizes.split(",") if s]:
        for curve in time_to_quality(size, args.device, limits={"paper": args.paper_limit}):
            curves.append({**curve, "run": machine()})
        print({k: v for k, v in curves[-1].items() if k not in ("times", "psnrs")}, flush=True)
    if args.ttq_only and (RESULTS / "ttq.json").is_file():
        # keep the earlier runs of the sizes not measured now (each row says its run)
        sizes_now = {c["size"] for c in curves}
        earlier = json.loads((RESULTS / "ttq.json").read_text())["curves"]
        curves = sorted([c for c in earlier if c["size"] not in sizes_now] + curves,
                        key=lambda c: (c["size"], c["preset"]))

    RESULTS.mkdir(exist_ok=True)
    ttq_cols = ["size", "preset", "iterations", "best_psnr", "best_at",
                "iterations_to_best-0.3dB", "seconds_to_best-0.3dB", "final_psnr",
                "total_seconds", "es_stop", "es_kept", "es_psnr", "es_seconds", "run"]
    targets = ttq_targets(curves)
    timing = [
        "## Milliseconds per iteration", "",
        "Median of 12 steps after 3 warm-up steps (5 for the paper preset at 512²), each "
        "configuration in a fresh process; napari-dip's loop and the plain loop are timed "
        f"in {args.rounds} alternating rounds and each keeps its fastest round (every "
        "round's median is in speed.json). *plain loop*: the same network and input "
        "perturbation in a bare `zero_grad / forward / MSE / backward / step` loop with one "
        "`loss.item()` per step; *ratio* < 1 means napari-dip's loop (with averaging, "
        "backtracking and early-stopping bookkeeping) is faster. Peak MB is the whole "
        "process's resident memory (Python, torch and the run).", "",
        markdown_table(rows, ["preset", "size", "colour", "ms/iteration", "plain loop ms",
                              "ratio", "peak MB (process)"]
                       + (["GPU MB"] if any("GPU MB" in r for r in rows) else [])), ""]
    ttq = [
        "## Time to quality (denoising, cameraman crop, sigma 25/255)", "",
        *([f"The paper preset is capped at {args.paper_limit} steps.", ""]
          if args.paper_limit else []),
        "Each preset runs to its iteration limit (*without early stopping*: *best_psnr*, "
        "*seconds_to_best-0.3dB*, *final_psnr*, *total_seconds*); *es_stop* is where "
        "default early stopping (ES-WMV) stops that same run, *es_kept* the iteration "
        "whose estimate it keeps, *es_psnr* that estimate's PSNR (nearest preview, every "
        "10 steps) and *es_seconds* the wall time to the stop (*with early stopping*); "
        "*run*: the machine and date of the run that row comes from.",
        "", markdown_table(curves, ttq_cols), "",
        "Target: the fast preset reaches the paper preset's best PSNR − 0.3 dB in at most "
        "1/8 of the time the paper preset takes to get there.", "",
        markdown_table(targets, list(targets[0])) if targets else "", ""]
    if not curves:
        ttq = ["Time to quality: not measured in this run (`--ttq-only` writes ttq.md).", ""]
    name = "ttq" if args.ttq_only else "speed"
    text = [f"# Speed ({args.device})", "", f"Machine: {machine()}", "",
            *(ttq if args.ttq_only else timing + ttq)]
    (RESULTS / f"{name}.md").write_text("\n".join(text))
    (RESULTS / f"{name}.json").write_text(json.dumps({"rows": rows, "curves": curves,
                                                      "targets": targets}, indent=1))

    if rows:
        plot_timing(rows)
    if curves:
        plot(curves, "ttq.png" if args.ttq_only else "speed-ttq.png")
    print(f"wrote {RESULTS / (name + '.md')}")


if __name__ == "__main__":
    start = time.time()
    main()
    print(f"{time.time() - start:.0f} s")
