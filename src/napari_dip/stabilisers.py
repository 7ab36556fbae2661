"""Small objects the optimisation loop consults every step; shared by DIP and DeepRED.

The stopping rules (:class:`EarlyStopping` = ES-WMV, :class:`Discrepancy`, :class:`NoStopping`)
share one interface, so the loop has no special cases: ``observe(iteration, out, estimate,
loss)`` after every step (returns the ES-WMV variance, or None), ``should_stop(iteration)``
at host syncs, ``kept()`` for the estimate the rule would return instead of the last one
(``(estimate, iteration)`` or None), ``progress(iteration)`` for what a step reports of the
rule (at host syncs: ``threshold``, ``expected_stop``, ``kept``, as in
:class:`napari_dip.records.Step`) and ``parameters()`` for the run's record.
"""

from __future__ import annotations

import math

import torch


class ExponentialAverage:
    """Exponential moving average of the network outputs (DIP reference code, weight 0.99).

    The decay ramps up as ``min(decay, (1 + t) / (10 + t))`` so that the first, still random
    outputs are forgotten quickly and short runs are not dominated by them (the same warm-up
    TensorFlow's ExponentialMovingAverage applies with ``num_updates``).
    """

    def __init__(self, decay: float = 0.99):
        if not 0 <= decay < 1:
            raise ValueError(f"averaging weight must be in [0, 1), got {decay}")
        self.decay = decay
        self.value: torch.Tensor | None = None
        self._updates = 0

    def update(self, x: torch.Tensor) -> torch.Tensor:
        if self.value is None or self.decay == 0:
            self.value = x.detach().clone()
        else:
            d = min(self.decay, (1 + self._updates) / (10 + self._updates))
            self.value.mul_(d).add_(x.detach(), alpha=1 - d)
        self._updates += 1
        return self.value


class Backtracking:
    """Undo divergence: every ``every`` steps compare the fit PSNR (to the measurement) with
    the last checkpoint's; if it dropped by more than ``drop_db`` dB, reload a real copy of
    the checkpoint's weights, else take a new checkpoint (DIP reference code: 5 dB, every 100
    steps; the copy must be a clone, not a reference to the live parameters)."""

    def __init__(self, every: int = 100, drop_db: float = 5.0):
        self.every = every
        self.drop_db = drop_db
        self._psnr: float | None = None
        self._state: dict[str, torch.Tensor] | None = None
        self.restores = 0

    def due(self, iteration: int) -> bool:
        return iteration % self.every == 0

    def check(self, psnr_fit: float, module: torch.nn.Module) -> bool:
        """Call when :meth:`due`; returns True if the weights were restored."""
        if self._state is not None and self._psnr is not None \
                and (not math.isfinite(psnr_fit) or psnr_fit < self._psnr - self.drop_db):
            module.load_state_dict(self._state)
            self.restores += 1
            return True
        self._psnr = psnr_fit
        self._state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        return False


class EarlyStopping:
    """ES-WMV: early stopping by windowed moving variance (Wang, Li, Zhuang, Chen, Liang, Sun,
    "Early Stopping for Deep Image Prior", TMLR 2023).

    Keeps the last ``window`` outputs (a fixed random subset of at most ``max_pixels`` values,
    which estimates the same mean variance at a fraction of the memory), and their running
    variance. The run stops after ``patience`` steps without a new variance minimum; the
    estimate to return (:attr:`kept_estimate`) is the one recorded at the minimum.

    Everything stays on the outputs' device: :meth:`update` never waits for the device, so a
    GPU loop runs without host syncs; :meth:`should_stop` and :attr:`best_iteration` sync.
    """

    def __init__(self, window: int = 100, patience: int = 300, max_pixels: int = 65536,
                 generator: torch.Generator | None = None):
        self.window = window
        self.patience = patience
        self.max_pixels = max_pixels
        self.generator = generator
        self._index: torch.Tensor | None = None
        self._buffer: torch.Tensor | None = None
        self._sum = self._sumsq = None
        self._count = 0
        self._best_variance: torch.Tensor | None = None
        self._best_iteration: torch.Tensor | None = None
        #: The estimate at the minimum-variance iteration so far (None until the window fills).
        self.kept_estimate: torch.Tensor | None = None

    @property
    def best_iteration(self) -> int | None:
        return None if self._best_iteration is None else int(self._best_iteration)

    @property
    def best_variance(self) -> float:
        return math.inf if self._best_variance is None else float(self._best_variance)

    def _sample(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.detach().reshape(-1)
        if self._index is None and flat.numel() > self.max_pixels:
            perm = torch.randperm(flat.numel(), generator=self.generator,
                                  device=self.generator.device if self.generator else "cpu")
            self._index = perm[: self.max_pixels].to(flat.device)
        v = flat if self._index is None else flat[self._index]
        # float64 running sums keep the variance exact over long runs (float32 where the
        # device has no float64, e.g. Apple MPS).
        return v.to(torch.float32 if v.device.type == "mps" else torch.float64)

    def update(self, iteration: int, x: torch.Tensor, estimate: torch.Tensor
               ) -> torch.Tensor | None:
        """Add the output ``x`` of ``iteration``; keep ``estimate`` if the windowed variance
        reaches a new minimum. Returns the variance (0-d tensor), or None until the window
        is full."""
        v = self._sample(x)
        if self._buffer is None:
            self._buffer = torch.empty((self.window, v.numel()), dtype=v.dtype, device=v.device)
            self._sum = torch.zeros_like(v)
            self._sumsq = torch.zeros_like(v)
        slot = self._count % self.window
        if self._count >= self.window:
            old = self._buffer[slot]
            self._sum -= old
            self._sumsq -= old * old
        self._buffer[slot] = v
        self._sum += v
        self._sumsq += v * v
        self._count += 1
        if self._count < self.window:
            return None
        mean = self._sum / self.window
        variance = (self._sumsq / self.window - mean * mean).clamp_min(0).mean()
        it = torch.full((), iteration, device=variance.device)  # a fill, not a host copy
        if self._best_variance is None:
            self._best_variance, self._best_iteration = variance, it
            self.kept_estimate = estimate.detach().clone()
        else:
            new = variance < self._best_variance
            self._best_variance = torch.where(new, variance, self._best_variance)
            self._best_iteration = torch.where(new, it, self._best_iteration)
            self.kept_estimate = torch.where(new, estimate.detach(), self.kept_estimate)
        return variance

    def should_stop(self, iteration: int) -> bool:
        best = self.best_iteration
        return best is not None and iteration - best >= self.patience

    # -- the stopping-rule interface --------------------------------------------------------
    name = "es-wmv"
    #: Steps record this rule's variance (NaN until its window is full).
    records_variance = True

    def observe(self, iteration: int, out: torch.Tensor, estimate: torch.Tensor,
                loss: torch.Tensor) -> torch.Tensor | None:
        return self.update(iteration, out, estimate)

    def kept(self) -> tuple[torch.Tensor, int] | None:
        """The estimate at the variance minimum and its iteration (None before the window
        fills)."""
        return None if self.kept_estimate is None else (self.kept_estimate, self.best_iteration)

    def progress(self, iteration: int) -> dict:
        """The minimum so far, and the latest stop: the minimum plus the patience."""
        best = self.best_iteration
        if best is None:
            return {}
        return {"kept": best, "expected_stop": best + self.patience}

    def parameters(self) -> dict:
        return {"stopping": self.name, "early_stop_window": self.window,
                "early_stop_patience": self.patience}


class Discrepancy:
    """Early stopping by the discrepancy principle (Morozov, 1966): stop once the data term,
    averaged over the last ``window`` steps, has fallen to the noise variance. Further
    steps could only fit the noise.

    ``threshold`` is the mean squared residual expected of the clean image in the loss's
    units (the noise variance in the network's [0, 1] scale, times the fraction of the
    measurement that carries data). The window smooths the step-to-step jitter of the loss,
    which the input perturbation adds. Everything stays on the loss's device: :meth:`update`
    never waits for it; :meth:`should_stop` syncs.
    """

    def __init__(self, threshold: float, window: int = 20):
        if not threshold > 0:
            raise ValueError(f"discrepancy threshold must be positive, got {threshold}")
        self.threshold = threshold
        self.window = window
        self._losses: list[torch.Tensor] = []
        self._first: torch.Tensor | None = None  # first iteration at the threshold, or -1
        #: Iteration at which the averaged loss first reached the threshold (None: not yet).
        self.reached_at: int | None = None
        self._mean: torch.Tensor | None = None  # the last full window's mean loss
        self._trend: list[tuple[int, float]] = []  # (iteration, averaged loss) at host syncs

    def update(self, iteration: int, loss: torch.Tensor) -> None:
        self._losses.append(loss.detach().reshape(()).float())
        if len(self._losses) > self.window:
            self._losses.pop(0)
        if len(self._losses) < self.window:
            return
        self._mean = torch.stack(self._losses).mean()  # stays on the device
        hit = self._mean <= self.threshold
        if self._first is None:
            self._first = torch.full((), -1, dtype=torch.long, device=hit.device)
        it = torch.full_like(self._first, iteration)  # a fill, not a host copy
        self._first = torch.where(hit & (self._first < 0), it, self._first)

    def should_stop(self, iteration: int) -> bool:
        if self.reached_at is None and self._first is not None:
            first = int(self._first)
            self.reached_at = first if first > 0 else None
        return self.reached_at is not None

    # -- the stopping-rule interface --------------------------------------------------------
    name = "discrepancy"
    records_variance = False

    def observe(self, iteration: int, out: torch.Tensor, estimate: torch.Tensor,
                loss: torch.Tensor) -> None:
        self.update(iteration, loss)

    def kept(self) -> None:
        """The estimate at the stop is the one to return."""
        return None

    def progress(self, iteration: int) -> dict:
        """The threshold, and when the averaged loss will reach it if it keeps falling as
        it did over the last ``4 * window`` steps (a straight line in log(loss))."""
        out: dict = {"threshold": self.threshold}
        if self.reached_at is not None:
            return {**out, "expected_stop": self.reached_at}
        if self._mean is None:
            return out
        mean = float(self._mean)  # a sync: called at host syncs only
        self._trend.append((iteration, mean))
        while len(self._trend) > 1 and iteration - self._trend[0][0] > 4 * self.window:
            self._trend.pop(0)
        (i0, m0), (i1, m1) = self._trend[0], self._trend[-1]
        if i1 - i0 < self.window or not m0 > m1 > 0:
            return out
        rate = (math.log(m0) - math.log(m1)) / (i1 - i0)  # log-loss fall per step
        steps = (math.log(m1) - math.log(self.threshold)) / rate
        return {**out, "expected_stop": iteration + max(0, math.ceil(steps))}

    def parameters(self) -> dict:
        return {"stopping": self.name, "discrepancy_window": self.window,
                "discrepancy_reached_at": self.reached_at}


class NoStopping:
    """Every iteration runs (``early_stop=False``)."""

    name = None
    records_variance = False

    def observe(self, iteration, out, estimate, loss) -> None:
        return None

    def should_stop(self, iteration: int) -> bool:
        return False

    def kept(self) -> None:
        return None

    def progress(self, iteration: int) -> dict:
        return {}

    def parameters(self) -> dict:
        return {"stopping": None}


def default_patience(iterations: int, window: int = 100) -> int:
    """Patience for runs of ``iterations`` steps: a quarter of the run, between 2 windows and
    the paper's 1000 (the paper's 1000 suits its 3000-6000-step runs; shorter runs need a
    shorter wait to stop at all)."""
    return int(min(1000, max(2 * window, iterations // 4)))
