"""Ensembles: what K fits in one batched network cost per step, and what their mean gains.

    python benchmarks/ensemble.py                    # CPU, ~3-5 min on 2 cores
    python benchmarks/ensemble.py --iterations 600   # a shorter equal-steps run
    python benchmarks/ensemble.py --defaults         # also the default settings (~5 min more)
    python benchmarks/ensemble.py --device cuda

Denoising the cameraman crop (sigma 25/255, fast preset), as ``speed.py`` and ``levers.py``:

* **Speed**: seconds per step of ``ensemble=K`` (K = 1, 2, 4) at 128² and 64² (64² is the
  smallest network input: smaller images are padded to it), over ``--steps`` steps after 5
  warm-up steps; the sizes and K alternate in order over ``--rounds`` rounds and each keeps
  its fastest round (load from elsewhere slows single rounds). *member-step cost*: a
  member's share of a step relative to a single run's step (1 = batching saves nothing,
  0.5 = each member costs half a single step); *member-pixel-step*: microseconds per
  member, per pixel, per step (whether batching lifts small images).
* **Quality at equal steps**: one ``ensemble=4`` run for ``--iterations`` steps without
  early stopping, previews every 100 steps: PSNR of the members' mean and of each member
  (each member is a single fit with seed 0..3), and of the mean of the first two members.
* **Default settings** (``--defaults``): ``ensemble=4`` against ``ensemble=1`` with seeds
  0..3, early stopping on (the noise level estimated): PSNR of what each returns and where
  it stopped.

Writes benchmarks/results/ensemble.md and ensemble.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from _common import RESULTS, machine, markdown_table, noisy_cameraman, psnr

SIGMA = 25 / 255


def seconds_per_step(size: int, k: int, steps: int, device: str, warm: int = 5) -> float:
    """Wall seconds per step of one ensemble run (after ``warm`` steps)."""
    import torch

    from napari_dip.pipeline import build_solver
    from napari_dip.request import build_request

    noisy, _ = noisy_cameraman(size, SIGMA)
    solver = build_solver(build_request(noisy, iterations=warm + steps, early_stop=False,
                                        ensemble=k, device=device))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    marks = {}
    for step in solver.run():
        sync()
        marks[step.iteration] = time.perf_counter()
    return (marks[warm + steps] - marks[warm]) / steps


def speed(sizes, ks, steps: int, rounds: int, device: str) -> list[dict]:
    configs = [(s, k) for s in sizes for k in ks]
    best: dict[tuple[int, int], float] = {}
    for r in range(rounds):
        order = configs if r % 2 == 0 else configs[::-1]  # alternate sides
        for size, k in order:
            t = seconds_per_step(size, k, steps, device)
            best[size, k] = min(best.get((size, k), np.inf), t)
            print(f"round {r + 1}: {size}² K={k}: {1000 * t:.1f} ms/step", flush=True)
    rows = []
    for size, k in configs:
        t, single = best[size, k], best[size, ks[0]]
        rows.append({"size": f"{size}²", "K": k, "ms/step": 1000 * t,
                     "ms per member-step": 1000 * t / k,
                     "member-step cost vs K=1": t / (k * single),
                     "us per member-pixel-step": 1e6 * t / (k * size * size)})
    return rows


def equal_steps(size: int, iterations: int, device: str) -> tuple[list[dict], float]:
    """PSNR of the mean and of each member of one ensemble=4 run, every 100 steps."""
    from napari_dip.pipeline import build_solver
    from napari_dip.problem import to_output
    from napari_dip.request import build_request

    noisy, clean = noisy_cameraman(size, SIGMA)
    solver = build_solver(build_request(noisy, iterations=iterations, early_stop=False,
                                        ensemble=4, device=device))
    rows, start = [], time.perf_counter()

    def as_image(estimate):
        return to_output(estimate, solver.problem, solver.request)

    for step in solver.run():
        if step.iteration % 100 and step.iteration != iterations:
            continue
        members = solver.average.value
        member_psnr = [psnr(as_image(members[k:k + 1]), clean) for k in range(4)]
        row = {"step": step.iteration,
               "mean of 4": psnr(as_image(solver.estimate()), clean),
               "mean of members 0-1": psnr(as_image(members[:2].mean(0, keepdim=True)),
                                           clean),
               "member 0": member_psnr[0], "best member": max(member_psnr),
               "members' mean PSNR": float(np.mean(member_psnr)),
               "worst member": min(member_psnr)}
        row["gain vs member 0"] = row["mean of 4"] - row["member 0"]
        row["gain vs members' mean"] = row["mean of 4"] - row["members' mean PSNR"]
        rows.append(row)
        print(row, flush=True)
    return rows, time.perf_counter() - start


def defaults(size: int, iterations: int | None, device: str) -> list[dict]:
    """ensemble=4 and single runs with seeds 0..3 with the default early stopping."""
    from napari_dip import restore

    noisy, clean = noisy_cameraman(size, SIGMA)
    rows = []
    for k, seed in [(4, 0), (1, 0), (1, 1), (1, 2), (1, 3)]:
        start = time.perf_counter()
        r = restore(noisy, ensemble=k, seed=seed, iterations=iterations, device=device,
                    blend=False)  # the ensemble itself, not its BM3D blend
        row = {"run": f"ensemble={k}, seed {seed}" + (f" (seeds {seed}..{seed + k - 1})"
                                                      if k > 1 else ""),
               "PSNR": psnr(r.image, clean), "iterations": r.iterations,
               "stopped_at": r.stopped_at, "seconds": time.perf_counter() - start,
               "stopping": r.parameters.get("stopping")}
        if r.uncertainty is not None:
            error = np.abs(r.image.astype(np.float64) - clean)
            row["mean uncertainty (grey levels)"] = 255 * float(r.uncertainty.mean())
            row["corr(uncertainty, abs error)"] = float(
                np.corrcoef(r.uncertainty.ravel(), error.ravel())[0, 1])
        rows.append(row)
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=1000,
                        help="steps of the equal-steps run (default 1000)")
    parser.add_argument("--defaults", action="store_true",
                        help="add the default-settings runs (early stopping on; ~5 more "
                             "minutes on 2 cores)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    start, load = time.time(), os.getloadavg()[0]
    speed_rows = speed((128, 64), (1, 2, 4), args.steps, args.rounds, args.device)
    quality_rows, quality_s = equal_steps(128, args.iterations, args.device)
    default_rows = defaults(128, None, args.device) if args.defaults else []
    total = time.time() - start
    text = [
        f"# Ensembles ({args.device}, denoising, fast preset)", "",
        f"Machine: {machine()}; total {total:.0f} s; load average {load:.2f} at the "
        f"start, {os.getloadavg()[0]:.2f} at the end (other processes slow every number "
        "here). Written by `benchmarks/ensemble.py`.", "",
        "Cameraman centre crop, Gaussian noise sigma 25/255. `ensemble=K` runs K fits as "
        "one network with grouped convolutions (seeds 0..K-1).", "",
        "## Cost per step", "",
        f"Fastest of {args.rounds} rounds (order alternating) of {args.steps} steps after "
        "5 warm-up steps. *member-step cost vs K=1*: a member's share of a step over a "
        "single run's step at the same size (1: batching saves nothing). 64² is the "
        "smallest network input (smaller images are padded to it).", "",
        markdown_table(speed_rows, ["size", "K", "ms/step", "ms per member-step",
                                    "member-step cost vs K=1",
                                    "us per member-pixel-step"]), "",
        "## PSNR at equal steps (128², one `ensemble=4` run, no early stopping)", "",
        f"PSNR in dB of the members' mean and of each member (a single fit with seed "
        f"0..3) at the same step; *mean of members 0-1* is what `ensemble=2` would "
        f"return. {quality_s:.0f} s.", "",
        markdown_table(quality_rows, ["step", "mean of 4", "mean of members 0-1",
                                      "member 0", "best member", "members' mean PSNR",
                                      "worst member", "gain vs member 0",
                                      "gain vs members' mean"]), ""]
    if default_rows:
        text += ["## Default settings (128², early stopping on, noise level estimated)", "",
                 "What `restore(noisy, ensemble=K, seed=s)` returns. The ensemble stops "
                 "when its members' mean data term reaches the noise level (since "
                 "2026-12-04; before, when its mean output's did, which stopped it "
                 "early). *mean uncertainty*: `result.uncertainty` averaged, "
                 "in 8-bit grey levels (the noise is 25); *corr*: its correlation with the "
                 "result's absolute error, pixel by pixel.", "",
                 markdown_table(default_rows, ["run", "PSNR", "iterations", "stopped_at",
                                               "seconds", "stopping",
                                               "mean uncertainty (grey levels)",
                                               "corr(uncertainty, abs error)"]), ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ensemble.md").write_text("\n".join(text))
    (RESULTS / "ensemble.json").write_text(json.dumps(
        {"machine": machine(), "speed": speed_rows, "equal_steps": quality_rows,
         "defaults": default_rows}, indent=1, default=float))
    print(f"wrote {RESULTS}/ensemble.md")


if __name__ == "__main__":
    main()
