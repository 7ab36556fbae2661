"""Early stopping on denoising: the estimate each stopping rule keeps, against the best
estimate of the same run.

    python benchmarks/early_stopping.py                # 9 crops, fast preset (~20 min, 2 cores)
    python benchmarks/early_stopping.py --images barbara,brick
    python benchmarks/early_stopping.py --replot
    python benchmarks/early_stopping.py --rescore      # the rules again, on the saved runs
    python benchmarks/early_stopping.py --deepred      # DeepRED's rule (~4 min)

Every image is a 96 px crop: the quality benchmark's three denoising crops (camera, astronaut,
barbara, with the same noise: sigma 25/255, seed 0), five more pictures (sigma 25/255, seed 1)
and the Poisson cell (peak 30 photons). Each gets two 1500-step fast-preset runs that never
stop (previews every 10 steps):

- *all pixels*, the engine as it is. The rules are read off its loss and variance series
  and previews, with the engine's own code: the default (stop once the loss reaches the
  noise variance the engine estimates: the discrepancy principle), the same with the true
  noise level given, ES-WMV keeping the estimate at the variance minimum (the default
  before), ES-WMV keeping the estimate at its stop, and no early stopping (the last step).
- *10 % held out*, an experiment and not an engine option: the loss leaves out a fixed random
  tenth of the pixels, and the rule keeps the preview whose error on those pixels is lowest
  (squared error; Poisson: negative log-likelihood), stopping after the same patience.
  Their noise never reaches the network, so that error tracks the error against the truth
  (self-validation: Li, Zhuang, Mao, Sun, Sun, "Self-Validation: Early Stopping for
  Single-Instance Deep Generative Priors", BMVC 2021).

Writes benchmarks/results/early-stopping.md, .json and .png. PSNR of a kept iteration is
that of the nearest preview (at most 5 steps away).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import numpy as np
import torch
from _common import RESULTS, SHARED, follow, machine, markdown_table, psnr
from quality import SIGMA, images
from skimage import data, img_as_float, io
from speed import es_stop

ITERATIONS = 1500
EVERY = 10
HELD_OUT = 0.1


def crops() -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """name -> (truth, degraded, iterate() keywords)."""
    out = {}
    rng = np.random.default_rng(0)
    for name, clean in images(False).items():  # quality.py's crops and noise
        out[name] = (clean, clean + rng.normal(0, SIGMA, clean.shape), {})
    rng = np.random.default_rng(1)
    extra = {
        "coffee": img_as_float(data.coffee())[150:246, 200:296],
        "hubble": img_as_float(data.hubble_deep_field())[200:296, 300:396],
        "brick": img_as_float(data.brick())[100:196, 100:196],
        "chelsea": img_as_float(data.chelsea())[50:146, 100:196],
    }
    barbara = SHARED / "dip" / "barbara.png"
    if barbara.is_file():
        b = img_as_float(io.imread(barbara))
        extra = {"barbara face": (b if b.ndim == 2 else b[..., 0])[100:196, 250:346], **extra}
    for name, clean in extra.items():
        out[name] = (clean, clean + rng.normal(0, SIGMA, clean.shape), {})
    from napari_dip.samples import cell

    peak = 30.0
    truth = cell(size=96).truth
    truth = truth / truth.max() * peak
    counts = np.random.default_rng(0).poisson(truth).astype(np.float64)
    out["cell (Poisson)"] = (truth, counts, {"noise": "poisson", "peak": peak})
    return out


@contextlib.contextmanager
def holding_out(held: np.ndarray):
    """Make DIP's data term ignore the pixels where ``held`` is True (the crops need no
    padding, so the network's grid is the image's)."""
    from napari_dip.solvers import dip

    weight = torch.as_tensor(~held, dtype=torch.float32)[None, None]
    original = dip.DIPSolver.data_term

    def data_term(self, out):
        ax = self.problem.operator(out)
        if ax.shape[-2:] != weight.shape[-2:]:
            raise ValueError("hold-out experiment: the crop must need no padding")
        if self.request.noise == "poisson":
            rate = ax.clamp_min(dip._RATE_FLOOR)
            error = rate - self.problem.y * torch.log(rate)
        else:
            error = (ax - self.problem.y) ** 2
        return (error * weight).sum() / (weight.sum() * ax.shape[1])

    dip.DIPSolver.data_term = data_term
    try:
        yield
    finally:
        dip.DIPSolver.data_term = original


def trajectory(truth, degraded, kw, held=None) -> dict:
    """One run that never stops: PSNR of every preview, the variance series, and (with a
    hold-out) the previews' error on the held-out pixels."""
    from napari_dip import iterate

    kw = dict(kw)
    peak = kw.pop("peak", 1.0)
    start = time.perf_counter()
    steps = iterate(degraded.astype(np.float32), iterations=ITERATIONS, preview_every=EVERY,
                    early_stop=ITERATIONS + 1, channel_axis=-1 if degraded.ndim == 3 else None,
                    ensemble=1, **kw)
    its, psnrs, held_error = [], [], []

    def record(step):
        if step.preview is None:
            return
        its.append(step.iteration)
        psnrs.append(psnr(step.preview, truth, peak))
        if held is not None:
            p, y = step.preview[held].astype(np.float64), degraded[held]
            if kw.get("noise") == "poisson":
                rate = np.maximum(p, 1e-6)
                held_error.append(float(np.mean(rate - y * np.log(rate))))
            else:
                held_error.append(float(np.mean((p - y) ** 2)))

    result = follow(steps, record)
    return {"iterations": its, "psnr": psnrs, "variance": result.history["variance"],
            "loss": result.history["loss"],
            "held_error": held_error, "seconds": time.perf_counter() - start}


def discrepancy_thresholds(degraded: np.ndarray, kw: dict) -> dict[str, float | None]:
    """The engine's discrepancy thresholds for this image: with the noise level it
    estimates (the default) and with the true one (None where it keeps ES-WMV)."""
    from napari_dip.pipeline import build_solver
    from napari_dip.request import build_request

    kw = {k: v for k, v in kw.items() if k != "peak"}
    channel_axis = -1 if degraded.ndim == 3 else None
    out = {}
    for name, sigma in (("estimated", "auto"), ("given", SIGMA)):
        if kw.get("noise") == "poisson":
            out[name] = None
            continue
        solver = build_solver(build_request(degraded, noise_sigma=sigma, channel_axis=channel_axis,
                                        device="cpu", ensemble=1, **kw))
        out[name] = None if solver.discrepancy is None else solver.discrepancy.threshold
        out[f"sigma {name}"] = solver.noise_sigma
        solver.close()
    return out


def discrepancy_stop(loss: list[float], threshold: float) -> int:
    """Iteration at which the engine's discrepancy rule stops on this loss series (the
    last iteration if it never does)."""
    from napari_dip.stabilisers import Discrepancy

    rule = Discrepancy(threshold)
    for iteration, value in enumerate(loss, 1):
        rule.update(iteration, torch.tensor(value))
        if rule.should_stop(iteration):
            return iteration
    return len(loss)


def held_out_stop(its: list[int], errors: list[float], patience: int) -> tuple[int, int]:
    """(stop, kept) of the hold-out rule on the preview grid, as ES-WMV's patience."""
    best, best_at = np.inf, its[0]
    for it, e in zip(its, errors, strict=True):
        if e < best:
            best, best_at = e, it
        if it - best_at >= patience:
            return it, best_at
    return its[-1], best_at


def at(run: dict, iteration: int) -> float:
    """PSNR of ``run``'s preview nearest ``iteration``."""
    return float(run["psnr"][int(np.argmin(np.abs(np.asarray(run["iterations"]) - iteration)))])


def evaluate(name: str, plain: dict, held: dict, patience: int, thresholds: dict) -> dict:
    stop, kept = es_stop(plain["variance"], patience)
    best = max(plain["psnr"])
    h_stop, h_kept = held_out_stop(held["iterations"], held["held_error"], patience)
    h_best = max(held["psnr"])
    noise = {}
    for which in ("estimated", "given"):
        threshold = thresholds[which]
        if threshold is None:  # the engine keeps ES-WMV here (Poisson noise)
            noise[which], noise[f"{which}_at"] = at(plain, kept), kept
        else:
            it = discrepancy_stop(plain["loss"], threshold)
            noise[which], noise[f"{which}_at"] = at(plain, it), it
    default = noise["estimated"]
    return {
        "image": name, "best": best,
        "best_at": plain["iterations"][int(np.argmax(plain["psnr"]))],
        "noise level estimated (default)": default, "estimated_at": noise["estimated_at"],
        "sigma estimated": (thresholds.get("sigma estimated") or float("nan")) * 255,
        "noise level given": noise["given"], "given_at": noise["given_at"],
        "ES-WMV kept": at(plain, kept), "kept_at": kept,
        "ES-WMV at stop": at(plain, stop), "stop_at": stop,
        "last step": plain["psnr"][-1],
        "held-out run best": h_best, "held-out kept": at(held, h_kept), "held_kept_at": h_kept,
        "gap default": best - default, "gap noise level given": best - noise["given"],
        "gap ES-WMV": best - at(plain, kept), "gap at stop": best - at(plain, stop),
        "gap last": best - plain["psnr"][-1], "gap held-out (own run)": h_best - at(held, h_kept),
        "default - ES-WMV": default - at(plain, kept),
    }


def plot(runs: dict, rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 3
    nrows = -(-len(rows) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 2.8 * nrows), squeeze=False)
    for ax, row in zip(axes.flat, rows, strict=False):
        plain, held = runs[row["image"]]["plain"], runs[row["image"]]["held"]
        ax.plot(plain["iterations"], plain["psnr"], label="all pixels")
        ax.plot(held["iterations"], held["psnr"], label=f"{HELD_OUT:.0%} held out")
        for it, value, marker, label in [
                (row["estimated_at"], row["noise level estimated (default)"], "*",
                 "noise level (default)"),
                (row["kept_at"], row["ES-WMV kept"], "o", "ES-WMV kept"),
                (row["stop_at"], row["ES-WMV at stop"], "s", "ES-WMV stop"),
                (row["held_kept_at"], row["held-out kept"], "^", "held-out kept")]:
            ax.plot([it], [value], marker, color="k", mfc="none", label=label)
        ax.set_title(row["image"], fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=6)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    fig.supxlabel("iteration")
    fig.supylabel("PSNR (dB)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


COLUMNS = ["image", "best", "best_at", "noise level estimated (default)", "estimated_at",
           "sigma estimated", "noise level given", "given_at", "ES-WMV kept", "kept_at",
           "ES-WMV at stop", "stop_at", "last step", "held-out run best", "held-out kept",
           "held_kept_at"]
GAPS = ["image", "gap default", "gap noise level given", "gap ES-WMV", "gap at stop",
        "gap last", "gap held-out (own run)", "default - ES-WMV"]


def _rounded(value):
    if isinstance(value, float):
        return float(f"{value:.6g}") if np.isfinite(value) else value
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def write(runs: dict, rows: list[dict], run_info: str, seconds: float) -> None:
    means = {"image": "mean", **{k: float(np.mean([r[k] for r in rows])) for k in GAPS[1:]}}
    text = [
        "# Early stopping (denoising, fast preset, 96 px crops)", "",
        f"Machine: {run_info}; {seconds:.0f} s.", "",
        "PSNR in dB of the estimate each rule keeps (Poisson cell: peak 30 as the range). "
        "*best*: the best preview of the all-pixels run; *noise level estimated*: the "
        "engine's default, which stops once the mean loss of the last 20 steps falls to the "
        "noise variance it estimates (*sigma estimated*, in grey levels of 255; true: 25), "
        "and ES-WMV for Poisson noise; *noise level given*: the same rule with the true "
        "sigma (`noise_sigma=25/255`); *ES-WMV kept*: the estimate at the "
        "windowed-variance minimum (patience 375 of 1500 steps; `noise_sigma=None`, the "
        "default before); *at stop*: the estimate when ES-WMV stops; *last step*: no early "
        f"stopping; *held-out*: the run whose loss leaves out {HELD_OUT:.0%} of the pixels, "
        "and the preview with the lowest error there.", "",
        markdown_table(rows, COLUMNS), "",
        "Gaps in dB: the best PSNR of the all-pixels run minus the kept estimate's (the "
        "held-out rule: against the best of its own run), and the default's estimate minus "
        "ES-WMV's.", "",
        markdown_table(rows + [means], GAPS), ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "early-stopping.md").write_text("\n".join(text))
    # the per-step series, to 6 significant digits and without indentation, keep the
    # file small enough to commit
    (RESULTS / "early-stopping.json").write_text(json.dumps(
        {"run": run_info, "seconds": seconds, "rows": rows, "runs": _rounded(runs)}))
    plot(runs, rows, RESULTS / "early-stopping.png")


def deepred(wanted: list[str] | None, patience: int) -> None:
    """DeepRED (NLM, fast preset) on the Gaussian crops: its default rule (the noise level,
    estimated, on the data term) against the noise level given, ES-WMV (keeping the
    estimate at the stop, its rule before) and running to the limit;
    early-stopping-deepred.md."""
    start = time.perf_counter()
    runs, rows = {}, []
    for name, (truth, degraded, kw) in crops().items():
        if kw or (wanted and name not in wanted):
            continue
        run = trajectory(truth, degraded, {"method": "deepred"})
        thresholds = discrepancy_thresholds(degraded, {"method": "deepred"})
        its, values = np.asarray(run["iterations"]), np.asarray(run["psnr"])
        estimated = discrepancy_stop(run["loss"], thresholds["estimated"])
        given = discrepancy_stop(run["loss"], thresholds["given"])
        stop, _ = es_stop(run["variance"], patience)
        best = float(values.max())
        row = {"image": name, "best": best, "best_at": int(its[values.argmax()]),
               "noise level estimated (default)": at(run, estimated), "estimated_at": estimated,
               "sigma estimated": thresholds["sigma estimated"] * 255,
               "noise level given": at(run, given), "given_at": given,
               "ES-WMV at stop": at(run, stop), "stop_at": stop, "last step": float(values[-1])}
        row.update({"gap default": best - row["noise level estimated (default)"],
                    "gap noise level given": best - row["noise level given"],
                    "gap ES-WMV": best - row["ES-WMV at stop"],
                    "gap last": best - row["last step"]})
        rows.append(row)
        runs[name] = run
        print({k: round(v, 2) if isinstance(v, float) else v for k, v in rows[-1].items()},
              flush=True)
    gaps = ["gap default", "gap noise level given", "gap ES-WMV", "gap last"]
    means = {"image": "mean", **{k: float(np.mean([r[k] for r in rows])) for k in gaps}}
    worst = {"image": "worst", **{k: float(np.max([r[k] for r in rows])) for k in gaps}}
    seconds = time.perf_counter() - start
    text = ["# Early stopping of DeepRED (denoising, NLM, fast preset, 96 px crops)", "",
            f"Machine: {machine()}; {seconds:.0f} s.", "",
            "The Gaussian crops of early-stopping.md, one 1500-step DeepRED run each that "
            "never stops, rescored by each rule. *noise level estimated*: DeepRED's default, "
            "which stops once the mean data term of the last 20 steps (without the ADMM "
            "proximity term) falls to the noise variance it estimates (*sigma estimated*, in "
            "grey levels of 255; true: 25); *noise level given*: the same with the true sigma; "
            f"*ES-WMV at stop*: the variance rule (patience {patience}), keeping the estimate "
            "at the stop (the default before); *last step*: no early stopping. PSNR in dB; "
            "gaps: the run's best PSNR minus the kept estimate's.", "",
            markdown_table(rows, ["image", "best", "best_at", "noise level estimated (default)",
                                  "estimated_at", "sigma estimated", "noise level given",
                                  "given_at", "ES-WMV at stop", "stop_at", "last step"]), "",
            markdown_table(rows + [means, worst], ["image", *gaps]), ""]
    (RESULTS / "early-stopping-deepred.md").write_text("\n".join(text))
    (RESULTS / "early-stopping-deepred.json").write_text(json.dumps(
        {"run": machine(), "seconds": seconds, "rows": rows, "runs": _rounded(runs)}))
    print(f"wrote {RESULTS / 'early-stopping-deepred.md'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=None, help="comma-separated subset of the crops")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw early-stopping.png from the JSON file")
    parser.add_argument("--rescore", action="store_true",
                        help="apply the stopping rules again to the runs in the JSON file "
                             "(after a change to a rule; the runs never stop, so they stay)")
    parser.add_argument("--deepred", action="store_true",
                        help="DeepRED's rule instead (early-stopping-deepred.md, ~4 min)")
    args = parser.parse_args()
    from napari_dip.stabilisers import default_patience

    patience = default_patience(ITERATIONS)
    wanted = args.images.split(",") if args.images else None
    if args.deepred:
        deepred(wanted, patience)
        return
    if args.replot or args.rescore:
        saved = json.loads((RESULTS / "early-stopping.json").read_text())
        if args.replot:
            plot(saved["runs"], saved["rows"], RESULTS / "early-stopping.png")
            return
        images = crops()
        rows = [evaluate(name, run["plain"], run["held"], patience,
                         discrepancy_thresholds(images[name][1], images[name][2]))
                for name, run in saved["runs"].items()]
        machine_line = saved["run"].split(" (rules rescored")[0]
        write(saved["runs"], rows, f"{machine_line} (rules rescored "
              f"{time.strftime('%Y-%m-%d')})", saved["seconds"])
        return
    start = time.perf_counter()
    runs, rows = {}, []
    for name, (truth, degraded, kw) in crops().items():
        if wanted and name not in wanted:
            continue
        held = np.random.default_rng(123).random(degraded.shape[:2]) < HELD_OUT
        plain = trajectory(truth, degraded, kw)
        with holding_out(held):
            held_run = trajectory(truth, degraded, kw, held)
        runs[name] = {"plain": plain, "held": held_run}
        rows.append(evaluate(name, plain, held_run, patience,
                             discrepancy_thresholds(degraded, kw)))
        print({k: round(v, 2) if isinstance(v, float) else v for k, v in rows[-1].items()},
              flush=True)
    write(runs, rows, machine(), time.perf_counter() - start)
    print(f"wrote {RESULTS / 'early-stopping.md'}")


if __name__ == "__main__":
    main()
