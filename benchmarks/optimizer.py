"""Adam's fused kernel against its per-tensor loop: milliseconds per step of napari-dip runs.

The engine builds Adam with ``fused=True`` on the CPU and CUDA
(:func:`napari_dip.solvers.dip.make_optimizer`); ``--rounds`` alternating rounds run each
configuration with the fused kernel and with torch's default (a loop of small operations
per weight tensor), each for ``--steps`` steps without early stopping, and the table keeps
the median milliseconds per step of each side (the steps' time, not the set-up; a
warm-up run first) and their ratio. Results differ in the last
digits only (the kernel sums in another order); the PSNR of each side's last round is
given so that shows.

    python benchmarks/optimizer.py --threads 2          # ~6 min on a 2-core CPU
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import numpy as np
import torch
from _common import RESULTS, machine, markdown_table, noisy_cameraman, psnr
from skimage import data, img_as_float

import napari_dip.solvers.dip as dip_solver
from napari_dip import restore
from napari_dip.operators import Downsample


def _cases() -> list:
    noisy, clean = noisy_cameraman(128)
    astronaut = img_as_float(data.astronaut())[100:196, 190:286].astype(np.float32)
    colour = (astronaut + np.random.default_rng(0).normal(0, 25 / 255, astronaut.shape)
              ).astype(np.float32)
    camera = img_as_float(data.camera())[110:206, 200:296].astype(np.float32)
    with torch.no_grad():
        low = Downsample(4)(torch.as_tensor(camera)[None, None])[0, 0].numpy()
    return [
        ("denoise 128² grey, 1 fit", noisy, clean, {"ensemble": 1}),
        ("denoise 96² RGB, 1 fit", colour, astronaut, {"ensemble": 1, "channel_axis": -1}),
        ("super-resolution ×4 to 96², 2 fits", low, camera,
         {"task": "super_resolution", "factor": 4, "ensemble": 2}),
    ]


def _unfused(net, lr, device):
    return torch.optim.Adam(net.parameters(), lr=lr)


def _timed(image, kwargs, steps: int, fused: bool) -> tuple[float, np.ndarray]:
    patch = mock.patch.object(dip_solver, "make_optimizer",
                              dip_solver.make_optimizer if fused else _unfused)
    with patch:
        result = restore(image, device="cpu", iterations=steps, early_stop=False,
                         blend=False, **kwargs)
    return 1000 * result.elapsed / steps, result.image  # the steps' time, not the set-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    rows = []
    for label, image, clean, kwargs in _cases():
        ms = {True: [], False: []}
        last = {}
        _timed(image, kwargs, 10, True)  # warm-up: first calls, allocations
        for r in range(args.rounds):
            for fused in ((True, False) if r % 2 == 0 else (False, True)):
                value, out = _timed(image, kwargs, args.steps, fused)
                ms[fused].append(value)
                last[fused] = out
        fused_ms, loop_ms = statistics.median(ms[True]), statistics.median(ms[False])
        rows.append({"run": label, "fused_ms": fused_ms, "loop_ms": loop_ms,
                     "saved": 1 - fused_ms / loop_ms,
                     "fused_psnr": psnr(last[True], clean),
                     "loop_psnr": psnr(last[False], clean)})
        print(rows[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    text = ["# Adam: fused kernel against the per-tensor loop", "",
            f"Machine: {machine()}; {time.time() - start:.0f} s. {args.rounds} alternating "
            f"rounds of {args.steps} steps per side (no early stopping, no blend, fast "
            "preset); *fused_ms* / *loop_ms*: median milliseconds per step with "
            "`fused=True` (the engine's default on CPU and CUDA since 2026-12-07) and with "
            "torch's default; *saved*: the share of a step the fused kernel saves; "
            "*psnr*: dB after the last round's steps.", "",
            markdown_table(rows, ["run", "fused_ms", "loop_ms", "saved", "fused_psnr",
                                  "loop_psnr"]), ""]
    (RESULTS / "optimizer.md").write_text("\n".join(text))
    print(f"wrote {RESULTS / 'optimizer.md'}")


if __name__ == "__main__":
    main()
