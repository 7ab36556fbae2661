"""What a run reports: one :class:`Step` per iteration and a :class:`Result` at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Step:
    """One optimisation step, as yielded by :func:`napari_dip.iterate`.

    Attributes
    ----------
    iteration:
        1-based number of the step just taken.
    total:
        The iteration limit of the run (the run may stop earlier when early stopping fires).
    loss:
        Data-fidelity loss of this step (mean squared error, or Poisson negative log-likelihood,
        in the normalised [0, 1] intensity units the network works in).
    elapsed:
        Seconds since the optimisation started (set-up excluded).
    preview:
        The current estimate (what the run would return if it stopped now) in the input's
        value range and layout, every ``preview_every`` steps and on the last step; else None.
    extras:
        Method-specific numbers, e.g. ``{"variance": ...}`` for early stopping or
        ``{"admm_residual": ...}`` for DeepRED.
    """

    iteration: int
    total: int
    loss: float
    elapsed: float
    preview: np.ndarray | None = None
    extras: dict[str, float] = field(default_factory=dict)

    @property
    def seconds_left(self) -> float:
        """Estimated seconds until the iteration limit, at the mean speed so far."""
        if self.iteration <= 0:
            return float("nan")
        return self.elapsed / self.iteration * (self.total - self.iteration)


@dataclass
class Result:
    """The outcome of :func:`napari_dip.restore` (or the return value of ``iterate``).

    Attributes
    ----------
    image:
        float32 array in the input's value range and axis order. Same Y, X as the input,
        or Y*factor, X*factor for super-resolution.
    iterations:
        Number of optimisation steps run.
    stopped_at:
        Iteration whose estimate was kept (the early-stopping point, or ``iterations``).
    history:
        Per-iteration records: ``"loss"`` always, ``"variance"`` (ES-WMV, NaN until the
        window is full), plus method-specific series (e.g. ``"admm_residual"``).
    parameters:
        Every setting of the run (task, method, preset, learning rate, seed, device, ...),
        JSON-serialisable, enough to repeat it.
    elapsed:
        Wall time of the optimisation in seconds.
    """

    image: np.ndarray
    iterations: int
    stopped_at: int
    history: dict[str, list[float]]
    parameters: dict[str, Any]
    elapsed: float
