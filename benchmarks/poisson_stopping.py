"""Stopping rules for photon counts (issue 15, targets 5 and 6): the Poisson discrepancy
principle against ES-WMV, on one trajectory per image and ensemble size.

    python benchmarks/poisson_stopping.py --threads 1          # about 15 min on 2 cores
    python benchmarks/poisson_stopping.py --ensembles 1 --cases cell-96

Each case (the quality benchmark's cell at peak 30 photons; crops of the Hubble deep field
sample at peak 30 and 100) runs once for ``--iterations`` steps of the fast preset with the
Poisson likelihood and no stopping, previews every 5 steps. The stopping rules watch that
same run through the engine's own rule objects and never stop it: each rule's *kept*
estimate is the preview nearest the step it would have stopped at (ES-WMV: the step it
would keep), so a rule's gap is the run's best preview minus that. Anscombe + BM3D (exact
unbiased inverse, Makitalo & Foi 2011) is the classical method a user would pick.

Writes benchmarks/results/poisson-stopping.md and .json.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _common import RESULTS, machine, markdown_table, psnr

import napari_dip.solvers.dip as dip_solver
from napari_dip import iterate, samples
from napari_dip.stabilisers import EarlyStopping, PoissonDiscrepancy, default_patience

#: The rules scored: label -> a factory of a rule for a solver.
RULES = {
    "Poisson discrepancy, factor 1 (the default)": lambda s: dip_solver.poisson_discrepancy(
        s.problem, factor=PoissonDiscrepancy.FACTOR),
    "Poisson discrepancy, factor 0.9 (the Rician rule's)": lambda s:
        dip_solver.poisson_discrepancy(s.problem, factor=0.9),
    "ES-WMV (the rule before)": lambda s: EarlyStopping(
        window=100, patience=default_patience(s.iterations), generator=s.generator),
}


def cases() -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """name -> (counts, true rate, peak)."""
    out = {}
    clean = samples.cell(size=96).truth
    clean = clean / clean.max() * 30.0
    out["cell-96"] = (np.random.default_rng(0).poisson(clean).astype(np.float32), clean, 30.0)
    for size, peak in ((64, 30.0), (96, 30.0), (96, 100.0)):
        sample = samples.hubble(size=size, peak=peak)
        out[f"hubble-{size}-peak{peak:g}"] = (sample.degraded, sample.truth, peak)
    return out


class Watch:
    """Stands in for the run's stopping rule: every rule observes each step; none stops."""

    name = None
    records_variance = False

    def __init__(self, rules: dict):
        self.rules = rules
        self.stops: dict[str, int | None] = dict.fromkeys(rules)

    def observe(self, iteration, out, estimate, loss):
        for label, rule in self.rules.items():
            rule.observe(iteration, out, estimate, loss)
            if self.stops[label] is None and rule.should_stop(iteration):
                kept = rule.kept()
                self.stops[label] = kept[1] if kept is not None else iteration

    def should_stop(self, iteration):
        return False

    def kept(self):
        return None

    def progress(self, iteration):
        return {}

    def parameters(self):
        return {"stopping": None}


def anscombe_bm3d(counts: np.ndarray) -> np.ndarray:
    from bm3d import bm3d

    a = 2 * np.sqrt(counts + 3 / 8)
    d = bm3d(a, 1.0)
    return (d / 2) ** 2 + 0.25 * np.sqrt(1.5) / d - 11 / 8 / d**2 \
        + 5 / 8 * np.sqrt(1.5) / d**3 - 1 / 8


def trajectory(counts, truth, peak, ensemble: int, iterations: int) -> list[dict]:
    watch: list[Watch] = []
    original = dip_solver.DIPSolver._stopping_rule

    def watched(solver):
        watch.append(Watch({label: make(solver) for label, make in RULES.items()}))
        return watch[-1]

    dip_solver.DIPSolver._stopping_rule = watched
    previews, start = {}, time.perf_counter()
    try:
        steps = iterate(counts, noise="poisson", iterations=iterations, preview_every=5,
                        seed=0, ensemble=ensemble)
        for step in steps:
            if step.preview is not None:
                previews[step.iteration] = psnr(step.preview, truth, peak)
    finally:
        dip_solver.DIPSolver._stopping_rule = original
    seconds = time.perf_counter() - start
    per_step = seconds / iterations
    its = np.array(sorted(previews))
    best_it = int(its[np.argmax([previews[i] for i in its])])
    best = previews[best_it]
    rows = [{"rule": "best preview (oracle)", "kept_at": best_it, "psnr": best, "gap": 0.0,
             "seconds": best_it * per_step}]
    for label, stop in watch[0].stops.items():
        at = int(its[np.argmin(np.abs(its - stop))]) if stop is not None else int(its[-1])
        rows.append({"rule": label, "kept_at": stop, "psnr": previews[at],
                     "gap": best - previews[at],
                     "seconds": (stop or iterations) * per_step})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--ensembles", default="1,2,4")
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    every = cases()
    names = args.cases.split(",") if args.cases else list(every)
    rows, run, begun = [], machine(), time.time()
    for name in names:
        counts, truth, peak = every[name]
        start = time.perf_counter()
        classical = anscombe_bm3d(counts)
        rows.append({"case": name, "ensemble": "", "rule": "Anscombe + BM3D",
                     "psnr": psnr(classical, truth, peak),
                     "seconds": time.perf_counter() - start})
        rows.append({"case": name, "ensemble": "", "rule": "counts",
                     "psnr": psnr(counts, truth, peak)})
        for k in (int(k) for k in args.ensembles.split(",")):
            for row in trajectory(counts, truth, peak, k, args.iterations):
                rows.append({"case": name, "ensemble": k, **row})
                print(rows[-1], flush=True)
    columns = ["case", "ensemble", "rule", "kept_at", "psnr", "gap", "seconds"]
    text = ["# Stopping rules for photon counts (cpu, fast preset, Poisson likelihood)", "",
            f"{run}; {time.time() - begun:.0f} s in all. Written by "
            "`benchmarks/poisson_stopping.py`.", "",
            "PSNR in dB against the true rate with the peak as the range. *kept_at*: the "
            "step whose estimate the rule keeps (one trajectory per case and ensemble size, "
            f"{args.iterations} steps, previews every 5: the PSNR is the nearest preview's); "
            "*gap*: the run's best preview minus the rule's; *seconds*: the run's time to "
            "that step (steps at the run's average pace).", "",
            markdown_table(rows, columns), ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "poisson-stopping.md").write_text("\n".join(text))
    (RESULTS / "poisson-stopping.json").write_text(json.dumps(rows, indent=1, default=float))
    print(f"wrote {RESULTS}/poisson-stopping.md and .json")


if __name__ == "__main__":
    main()
