"""One short check of a CUDA machine: does the GPU restore what the CPU does, how fast, and
what ensembles and autocast do there.

    python benchmarks/gpu_check.py                      # on a CUDA machine, ~1-3 min
    python benchmarks/gpu_check.py --device cpu --quick # checks the script itself, ~5 s

Checks (denoising the cameraman crop, sigma 25/255, seed 0):

1. **device vs CPU**: PSNR of a 128² fast-preset run of ``--iterations`` steps (no early
   stopping, so both run the same steps) on the device and on the CPU; they must agree
   within 0.3 dB (the exit status is 1 when they do not).
2. **ms/step** of the fast and paper presets at 256² and 512² (after warm-up steps, with
   the device synchronised).
3. **ensembles**: ms/step of ``ensemble`` K = 1, 4, 16 (fast preset, 256²), and per member.
4. **autocast**: ms/step and PSNR of the run of check 1 with the network's forward pass
   under bf16 and fp16 autocast, against fp32; "not supported: <reason>" where torch
   refuses.

``--quick``: 64² images and a few steps everywhere (the table has the same rows). Prints one
Markdown table and writes it to ``--out`` (default benchmarks/results/gpu-check.md), with
the machine (the GPU's name), the date and the torch version.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

from _common import RESULTS, cpu_name, markdown_table, noisy_cameraman, psnr

SIGMA = 25 / 255
#: Largest |PSNR(device) - PSNR(CPU)| accepted, dB.
AGREEMENT_DB = 0.3
NO_CUDA = "no CUDA device; run with --device cpu to check the script"


def _solver(noisy, device: str, iterations: int, preset: str = "fast", ensemble: int = 1,
            autocast: str | None = None):
    """A DIP solver; with ``autocast`` its network's forward pass runs under torch.autocast
    of that dtype (the loss and everything after it in float32)."""
    import torch

    from napari_dip.pipeline import build_solver
    from napari_dip.request import build_request

    solver = build_solver(build_request(noisy, iterations=iterations, early_stop=False,
                                        preset=preset, ensemble=ensemble, device=device))
    if autocast is not None:
        dtype = getattr(torch, autocast)
        forward = solver.net.forward

        def cast(z):
            with torch.autocast(solver.device.type, dtype=dtype):
                return forward(z).float()

        solver.net.forward = cast
    return solver


def _sync(device: str):
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def ms_per_step(noisy, device: str, warm: int, measured: int, **settings) -> float:
    """Milliseconds per step over ``measured`` steps after ``warm`` (both multiples of the
    solver's host-sync interval, so the marks fall where steps reach the caller)."""
    solver = _solver(noisy, device, warm + measured, **settings)
    sync, marks = _sync(device), {}
    for step in solver.run():
        sync()
        marks[step.iteration] = time.perf_counter()
    return 1000 * (marks[warm + measured] - marks[warm]) / measured


def run_psnr(noisy, clean, device: str, iterations: int, **settings) -> tuple[float, float]:
    """(PSNR of the returned estimate, ms per step over the whole run)."""
    from napari_dip.drivers import drain

    solver = _solver(noisy, device, iterations, **settings)
    sync = _sync(device)
    sync()
    start = time.perf_counter()
    result = drain(solver.run())
    sync()
    return psnr(result.image, clean), 1000 * (time.perf_counter() - start) / iterations


def _failure(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"not supported: {text[:160]}"


def _agreement(noisy, clean, device, cfg) -> tuple[list[dict], float, bool]:
    """Check 1: the device's PSNR against the CPU's; returns the rows, fp32's PSNR and
    whether they agree."""
    value, ms = run_psnr(noisy, clean, device, cfg["iterations"])
    reference, cpu_ms = run_psnr(noisy, clean, "cpu", cfg["iterations"])
    diff = value - reference
    ok = abs(diff) <= AGREEMENT_DB
    setting = f"{cfg['psnr_size']}² fast, {cfg['iterations']} steps"
    return [{"check": f"{device} vs cpu PSNR", "setting": setting, "ms/step": ms,
             "PSNR (dB)": value, "difference": f"{diff:+.2f} dB vs cpu {reference:.2f} dB",
             "note": f"agree within {AGREEMENT_DB} dB: {'yes' if ok else 'NO'}; cpu "
                     f"{cpu_ms:.1f} ms/step"}], value, ok


def _speeds(device, cfg) -> list[dict]:
    """Checks 2 and 3: ms/step of the presets and of ensembles."""
    rows = []
    for preset in ("fast", "paper"):
        for size in cfg["sizes"]:
            noisy, _ = noisy_cameraman(size)
            try:
                ms = ms_per_step(noisy, device, cfg["warm"], cfg["measured"], preset=preset)
                rows.append({"check": "ms/step", "setting": f"{preset} preset, {size}²",
                             "ms/step": ms})
            except Exception as error:  # noqa: BLE001 - out of memory and the like
                rows.append({"check": "ms/step", "setting": f"{preset} preset, {size}²",
                             "note": _failure(error)})
            print(rows[-1], flush=True)
    noisy, _ = noisy_cameraman(cfg["ensemble_size"])
    single = None
    for k in (1, 4, 16):
        setting = f"ensemble={k}, fast, {cfg['ensemble_size']}²"
        try:
            ms = ms_per_step(noisy, device, cfg["warm"], cfg["measured"], ensemble=k)
        except Exception as error:  # noqa: BLE001
            rows.append({"check": "ensemble ms/step", "setting": setting,
                         "note": _failure(error)})
            continue
        single = ms if k == 1 else single
        note = f"{ms / k:.2f} ms per member-step"
        if k > 1 and single:
            note += f" ({ms / (k * single):.2f} of a single step)"
        rows.append({"check": "ensemble ms/step", "setting": setting, "ms/step": ms,
                     "note": note})
        print(rows[-1], flush=True)
    return rows


def _autocast(noisy, clean, device, cfg, fp32: float) -> list[dict]:
    """Check 4: bf16 and fp16 autocast against fp32."""
    rows = []
    for dtype in ("bfloat16", "float16"):
        setting = f"{dtype} autocast, {cfg['psnr_size']}² fast, {cfg['iterations']} steps"
        try:
            value, ms = run_psnr(noisy, clean, device, cfg["iterations"], autocast=dtype)
            rows.append({"check": f"autocast {dtype}", "setting": setting, "ms/step": ms,
                         "PSNR (dB)": value, "difference": f"{value - fp32:+.2f} dB vs fp32"})
        except Exception as error:  # noqa: BLE001 - torch refuses the dtype here
            rows.append({"check": f"autocast {dtype}", "setting": setting,
                         "note": _failure(error)})
        print(rows[-1], flush=True)
    return rows


def machine(device: str) -> str:
    import torch

    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") \
        else cpu_name()
    return (f"{name}; torch {torch.__version__} ({torch.get_num_threads()} CPU threads); "
            f"{datetime.date.today().isoformat()}")


def table(rows: list[dict]) -> str:
    columns = ["check", "setting", "ms/step", "PSNR (dB)", "difference", "note"]
    return markdown_table([{k: v for k, v in r.items() if v is not None} for r in rows],
                          columns)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true",
                        help="64² images and a few steps (to check the script on a CPU)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="steps of the PSNR runs (default 1000; --quick: 5)")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu-check.md")
    args = parser.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: {NO_CUDA}", file=sys.stderr)
        return 2
    if args.device not in ("cpu",) and not args.device.startswith("cuda"):
        print("gpu_check: --device takes cuda, cuda:N or cpu", file=sys.stderr)
        return 2
    cfg = {"psnr_size": 64, "sizes": (64,), "ensemble_size": 64, "warm": 1, "measured": 2,
           "iterations": 5} if args.quick else \
        {"psnr_size": 128, "sizes": (256, 512), "ensemble_size": 256, "warm": 25,
         "measured": 50, "iterations": 1000}
    if args.iterations is not None:
        cfg["iterations"] = args.iterations
    start = time.time()
    noisy, clean = noisy_cameraman(cfg["psnr_size"])
    rows, fp32, ok = _agreement(noisy, clean, args.device, cfg)
    for row in rows:
        print(row, flush=True)
    rows += _speeds(args.device, cfg)
    rows += _autocast(noisy, clean, args.device, cfg, fp32)
    text = "\n".join([
        f"# GPU check ({args.device}{', quick' if args.quick else ''})", "",
        f"Machine: {machine(args.device)}; total {time.time() - start:.0f} s. Written by "
        "`benchmarks/gpu_check.py`: denoising the cameraman crop (sigma 25/255, seed 0, no "
        "early stopping); ms/step after warm-up steps, the device synchronised.", "",
        table(rows), ""])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
