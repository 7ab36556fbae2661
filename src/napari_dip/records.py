"""What a run reports: one :class:`Step` per iteration and a :class:`Result` at the end."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

_Returned = TypeVar("_Returned")


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

    Runs made of several parts (the planes of a stack with ``mode="slices"``, the time points
    of ``mode="volume"``, the tiles of a large image) restore one part after the other; for
    them ``iteration``, ``total``, ``loss``, ``elapsed`` and ``preview`` describe the part in
    progress, and these fields say where it lies:

    plane, planes:
        1-based number of the plane (or time point) in progress, and how many there are.
    tile, tiles:
        1-based number of the tile in progress within its plane, and how many there are.
    index:
        The plane's position on the iterated axes of the input (e.g. ``(t, z)``); ``()`` for
        a single image.
    run_iteration, run_total:
        Steps taken over the whole run so far, and the planned total over all parts (an upper
        bound when early stopping is on); None for single-part runs.
    run_elapsed:
        Seconds since the whole run started; None for single-part runs.
    threshold:
        The loss at which the run stops (the discrepancy principle: the noise variance, in
        the loss's units), or None when the run does not stop at a noise level.
    expected_stop:
        The iteration at which the stopping rule expects the part in progress to stop, at
        most ``total``: ES-WMV's latest stop (its variance minimum plus the patience), or the
        discrepancy rule's extrapolation of the loss to ``threshold``; None while it cannot
        tell (before ES-WMV's window fills, while the loss is not falling, without early
        stopping).
    kept:
        The iteration whose estimate ES-WMV would keep if the part stopped now (its variance
        minimum so far), or None.
    stage:
        None for the run's own steps; ``"validation"`` for the steps of the second fit that
        a blend with the classical method makes on validation data (half the counts, or a
        re-noised copy) to choose its weight (:mod:`napari_dip.thinning`; no preview).
    region:
        Where ``preview`` goes in :attr:`Result.image`: ``result.image[region] = preview``
        (integers on the iterated axes, slices elsewhere). None: the preview is the whole
        image. A tile's preview is the tile's own estimate, before blending.
    """

    iteration: int
    total: int
    loss: float
    elapsed: float
    preview: np.ndarray | None = None
    extras: dict[str, float] = field(default_factory=dict)
    plane: int = 1
    planes: int = 1
    tile: int = 1
    tiles: int = 1
    index: tuple[int, ...] = ()
    run_iteration: int | None = None
    run_total: int | None = None
    run_elapsed: float | None = None
    region: tuple | None = None
    threshold: float | None = None
    expected_stop: int | None = None
    kept: int | None = None
    stage: str | None = None

    @property
    def seconds_left(self) -> float:
        """Estimated seconds until the run ends, at the mean speed so far: until the
        stopping rule's :attr:`expected_stop` where it has one, else the iteration limit (for
        a stack or tiled image, the last part's)."""
        if self.run_total is not None and self.run_iteration and self.run_elapsed is not None:
            # the part in progress may end before its limit; the parts after it are planned
            left = self.run_total - self.run_iteration - (self.total - self.last_iteration)
            return self.run_elapsed / self.run_iteration * max(left, 0)
        if self.iteration <= 0:
            return float("nan")
        return self.elapsed / self.iteration * (self.last_iteration - self.iteration)

    @property
    def last_iteration(self) -> int:
        """The iteration the part in progress is expected to end at: the stopping rule's
        :attr:`expected_stop` (never before this step), else the limit."""
        if self.expected_stop is None:
            return self.total
        return int(min(self.total, max(self.expected_stop, self.iteration)))

    @property
    def fraction(self) -> float:
        """Fraction of the whole run done, in [0, 1] (iterations over the planned total)."""
        if self.run_total:
            return min(1.0, (self.run_iteration or 0) / self.run_total)
        return min(1.0, self.iteration / self.total) if self.total else 0.0


@dataclass
class Result:
    """The outcome of :func:`napari_dip.restore` (or the return value of ``iterate``).

    Attributes
    ----------
    image:
        float32 array in the input's value range and axis order. Same Y, X as the input,
        or Y*factor, X*factor for super-resolution.
    iterations:
        Number of optimisation steps run (for stacks and tiled images: over all parts).
    stopped_at:
        Iteration whose estimate was kept (the early-stopping point, or ``iterations``);
        for stacks and tiled images the sum of every part's, so it equals ``iterations``
        unless early stopping kept an earlier estimate somewhere (see ``parts``).
    history:
        Per-iteration records: ``"loss"`` always, ``"variance"`` (ES-WMV, NaN until the
        window is full, and throughout when the run stops at the noise level), plus
        method-specific series (e.g. ``"admm_residual"``). For stacks and tiled images the
        parts' series one after the other, with ``"plane"`` (and ``"tile"``) giving the
        1-based plane (tile) of every entry.
    parameters:
        Every setting of the run (task, method, preset, learning rate, seed, device, ...),
        JSON-serialisable, enough to repeat it.
    elapsed:
        Wall time of the optimisation in seconds.
    parts:
        For stacks and tiled images, one record per part (plane, time point or tile), in
        the order they ran: ``plane``, ``index`` (position on the iterated axes), ``tile``,
        ``box`` (the tile's [[y0, y1], [x0, x1]] in input pixels), ``iterations``,
        ``stopped_at``, ``limit`` (its iteration limit), ``elapsed``, ``warm`` (started from
        the previous part's weights) and
        ``skipped`` (why no optimisation ran, e.g. ``"constant"``, or None). Empty for a
        single image.
    uncertainty:
        Ensembles (``ensemble=K``, K > 1): the per-pixel standard deviation of the K
        members' estimates (sample standard deviation, ddof=1), in the input's units (the
        same units as ``image``: data scaled by 1000 gives an uncertainty 1000 times as
        large) and axis order, float32, the shape of ``image``. ``image`` is the members'
        mean, so its own standard error is about ``uncertainty / sqrt(K)``. Inpainting's
        known pixels keep the members' spread although ``image`` holds the measurement
        there; parts of a stack or tiled image that needed no run (constant, no holes) are
        0; tiles are blended with the image's weights. None for a single fit (K = 1).
    """

    image: np.ndarray
    iterations: int
    stopped_at: int
    history: dict[str, list[float]]
    parameters: dict[str, Any]
    elapsed: float
    parts: list[dict[str, Any]] = field(default_factory=list)
    uncertainty: np.ndarray | None = None


def map_steps(steps: Generator[Step, None, _Returned], each: Callable[[Step], Step]
              ) -> Generator[Step, None, _Returned]:
    """Yield ``each(step)`` for every step of ``steps`` and return what ``steps`` returns;
    ``steps`` is closed however this ends (a consumer that stops early closes it too)."""
    try:
        while True:
            try:
                step = next(steps)
            except StopIteration as stop:
                return stop.value
            yield each(step)
    finally:
        steps.close()
