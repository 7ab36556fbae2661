"""Shared helpers of the benchmark scripts: images, degradations, metrics, table output."""

from __future__ import annotations

import datetime
import platform
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def psnr(estimate, truth, data_range: float = 1.0) -> float:
    mse = np.mean((np.asarray(estimate, np.float64) - np.asarray(truth, np.float64)) ** 2)
    return float(10 * np.log10(data_range**2 / mse))


def ssim(estimate, truth, data_range: float = 1.0) -> float:
    from skimage.metrics import structural_similarity

    estimate, truth = np.asarray(estimate, np.float64), np.asarray(truth, np.float64)
    channel_axis = -1 if truth.ndim == 3 else None
    return float(structural_similarity(estimate, truth, data_range=data_range,
                                       channel_axis=channel_axis))


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def machine() -> str:
    import os

    import torch

    return (f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {datetime.date.today().isoformat()}")


def noisy_cameraman(size: int, sigma: float = 25 / 255, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) float32 in [0, 1]: the cameraman's centre ``size`` x ``size`` crop and
    it with Gaussian noise of standard deviation ``sigma`` (seeded)."""
    from skimage import data

    half = size // 2
    clean = data.camera()[256 - half:256 + half, 256 - half:256 + half].astype(np.float32)
    clean /= 255
    noise = np.random.default_rng(seed).normal(0, sigma, clean.shape).astype(np.float32)
    return clean + noise, clean


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.2f}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def follow(steps, on_step):
    """Pass every step of an :func:`napari_dip.iterate` generator to ``on_step`` and return
    the run's :class:`~napari_dip.records.Result` (the generator's return value)."""
    from napari_dip.drivers import drain

    return drain(steps, on_step)
