"""Small objects the optimisation loop consults every step; shared by DIP and DeepRED.

The stopping rules (:class:`EarlyStopping` = ES-WMV, :class:`Discrepancy` and its versions
for signal-dependent noise, :class:`RicianDiscrepancy` and :class:`PoissonDiscrepancy`,
:class:`NoStopping`)
share one interface, so the loop has no special cases: ``observe(iteration, out, estimate,
loss)`` after every step (``out``: the step's network output, an ensemble's K members
stacked; ``loss``: the data term, an ensemble's members' mean; returns the ES-WMV
variance, or None), ``should_stop(iteration)``
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


class RunningMinimum:
    """The smallest of a stream of 0-d values, the iteration it came at and the estimate
    recorded with it, all kept on the values' device (``torch.where``, no host sync until
    :attr:`best_iteration` is read). Shared by the rules that return the estimate at a
    minimum (ES-WMV's variance, :class:`napari_dip.held_out.HeldOut`'s error)."""

    def __init__(self):
        self.value: torch.Tensor | None = None
        self.iteration: torch.Tensor | None = None
        #: The estimate at the minimum so far (None before the first value).
        self.estimate: torch.Tensor | None = None

    @property
    def best_iteration(self) -> int | None:
        return None if self.iteration is None else int(self.iteration)

    def update(self, iteration: int, value: torch.Tensor, estimate: torch.Tensor) -> None:
        it = torch.full((), iteration, device=value.device)  # a fill, not a host copy
        if self.value is None:
            self.value, self.iteration = value, it
            self.estimate = estimate.detach().clone()
            return
        new = value < self.value
        self.value = torch.where(new, value, self.value)
        self.iteration = torch.where(new, it, self.iteration)
        self.estimate = torch.where(new, estimate.detach(), self.estimate)


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
        self._minimum = RunningMinimum()

    @property
    def kept_estimate(self) -> torch.Tensor | None:
        """The estimate at the minimum-variance iteration so far (None until the window
        fills)."""
        return self._minimum.estimate

    @property
    def best_iteration(self) -> int | None:
        return self._minimum.best_iteration

    @property
    def best_variance(self) -> float:
        return math.inf if self._minimum.value is None else float(self._minimum.value)

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
        self._minimum.update(iteration, variance, estimate)
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
        # an ensemble's members (K, C, ...): the variance of their mean
        return self.update(iteration, out.mean(dim=0, keepdim=True) if out.shape[0] > 1
                           else out, estimate)

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

    Subclasses whose bound changes from step to step (:class:`RicianDiscrepancy`) pass a
    ``bound`` to :meth:`update` with each statistic; the windowed mean of the statistic is
    then compared with the windowed mean of the bounds.
    """

    #: The statistic compared is the loss the steps report, so :meth:`progress` can give
    #: the threshold in the loss's units (``Step.threshold``, drawn over the loss curve).
    statistic_is_loss = True

    def __init__(self, threshold: float, window: int = 20):
        if not threshold > 0:
            raise ValueError(f"discrepancy threshold must be positive, got {threshold}")
        self._threshold = float(threshold)
        self.window = window
        self._losses: list[torch.Tensor] = []
        self._bounds: list[torch.Tensor] = []
        self._first: torch.Tensor | None = None  # first iteration at the threshold, or -1
        #: Iteration at which the averaged loss first reached the threshold (None: not yet).
        self.reached_at: int | None = None
        self._mean: torch.Tensor | None = None  # the last full window's mean loss
        self._bound: torch.Tensor | None = None  # ... and mean bound (varying bounds only)
        self._trend: list[tuple[int, float]] = []  # (iteration, averaged loss) at host syncs

    @property
    def threshold(self) -> float:
        """What the windowed statistic stops at: the constant threshold, or (varying
        bounds) the last full window's mean bound (a host sync)."""
        return self._threshold if self._bound is None else float(self._bound)

    def update(self, iteration: int, loss: torch.Tensor,
               bound: torch.Tensor | None = None) -> None:
        """Add this step's statistic ``loss`` (and, for a varying threshold, its ``bound``,
        in the same units); 0-d tensors, kept on their device."""
        self._losses.append(loss.detach().reshape(()).float())
        if bound is not None:
            self._bounds.append(bound.detach().reshape(()).float())
        if len(self._losses) > self.window:
            self._losses.pop(0)
        if len(self._bounds) > self.window:
            self._bounds.pop(0)
        if len(self._losses) < self.window:
            return
        self._mean = torch.stack(self._losses).mean()  # stays on the device
        if self._bounds:
            self._bound = torch.stack(self._bounds).mean()
            hit = self._mean <= self._bound
        else:
            hit = self._mean <= self._threshold
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
        """The threshold (where the statistic is the loss), and when the averaged statistic
        will reach it if it keeps falling as it did over the last ``4 * window`` steps (a
        straight line in log(statistic))."""
        out: dict = {"threshold": self.threshold} if self.statistic_is_loss else {}
        if self.reached_at is not None:
            return {**out, "expected_stop": self.reached_at}
        if self._mean is None:
            return out
        mean = float(self._mean)  # a sync: called at host syncs only
        threshold = self.threshold
        self._trend.append((iteration, mean))
        while len(self._trend) > 1 and iteration - self._trend[0][0] > 4 * self.window:
            self._trend.pop(0)
        (i0, m0), (i1, m1) = self._trend[0], self._trend[-1]
        if i1 - i0 < self.window or not m0 > m1 > 0 or not threshold > 0:
            return out
        rate = (math.log(m0) - math.log(m1)) / (i1 - i0)  # log-loss fall per step
        steps = (math.log(m1) - math.log(threshold)) / rate
        return {**out, "expected_stop": iteration + max(0, math.ceil(steps))}

    def parameters(self) -> dict:
        return {"stopping": self.name, "discrepancy_window": self.window,
                "discrepancy_reached_at": self.reached_at}


class MomentDiscrepancy(Discrepancy):
    """The discrepancy principle for noise whose variance follows the signal: stop once the
    measurement ``y`` scatters about the mean the noise model predicts from the network's
    noise-free estimate ``nu = A(out)`` no more than that noise would::

        mean_w((y - E[y | nu])^2)  <=  factor * mean_w(Var[y | nu])

    both sides averaged over the last ``window`` steps, ``mean_w`` over the values that
    hold data (``weight``, None: all). Subclasses give the noise model's :meth:`moments`.

    ``factor`` (default :attr:`FACTOR`: 0.9 here and for Rician data, 1 for Poisson data,
    each measured): the residual is that of the network's output this step (perturbed
    input), while the run returns the exponential average of the outputs, which lags behind
    it; when the output's residual reaches the variance the average has not yet. On the
    Rician runs of ``benchmarks/results/mri.md`` (anatomical
    slice at sigma 0.10, three seeds; the phantom at sigma 0.10) factor 1 returned estimates
    0.1-0.8 dB below the best step, 0.9 came within 0.1 dB on all of them, 0.8-0.85 stopped
    too late on the phantom. Taking the residual of the average instead stopped earlier
    still (it fits the data more smoothly): 0.5-2.6 dB below the best step.

    ``y``: the measurement as the likelihood sees it (the padded, normalised data);
    ``operator``: ``A`` (None: the identity, denoising); ``weight``: 1 where the measurement
    holds data, broadcastable to ``y``; ``initial``: the bound before the first window, in
    ``y``'s units squared. The statistics are not the loss the steps report (a negative
    log-likelihood), so :meth:`progress` gives ``expected_stop`` but no ``threshold``.
    Everything stays on ``y``'s device (float64 where it has it): :meth:`observe` never
    waits for it.
    """

    statistic_is_loss = False
    #: The default ``factor`` on the mean variance (see above).
    FACTOR = 0.9
    #: The noise model, as the run's record names it.
    noise = ""

    def __init__(self, y: torch.Tensor, initial: float, operator=None,
                 weight: torch.Tensor | None = None, window: int = 20,
                 factor: float = FACTOR):
        what = f"the {self.noise.capitalize()} discrepancy"
        if not factor > 0:
            raise ValueError(f"{what}'s factor must be > 0, got {factor!r}")
        super().__init__(factor * initial, window)
        self.factor = float(factor)
        dtype = torch.float32 if y.device.type == "mps" else torch.float64
        self._dtype = dtype
        self._y = y.detach().to(dtype)
        self._operator = operator
        if weight is not None:
            weight = torch.as_tensor(weight, device=y.device).to(dtype).expand_as(self._y)
            if not float(weight.sum()) > 0:
                raise ValueError(f"{what} needs at least one measured value")
        self._weight = weight

    def moments(self, nu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E[y | nu], Var[y | nu]) elementwise, in ``y``'s units and their square."""
        raise NotImplementedError

    def _average(self, x: torch.Tensor) -> torch.Tensor:
        if self._weight is None:
            return x.mean()
        x = x.mean(dim=0, keepdim=True) if x.shape[0] > 1 else x  # over an ensemble's members
        return (x * self._weight).sum() / self._weight.sum()

    def statistics(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean squared residual about the predicted mean, mean variance) of the network
        output ``out``: 0-d tensors in ``y``'s units squared (the bound the rule stops at is
        ``factor`` times the second)."""
        with torch.no_grad():
            nu = out.detach() if self._operator is None else self._operator(out.detach())
            mean, variance = self.moments(nu.to(self._dtype))
            # an ensemble's members (K, C, ...) against y (1, C, ...): their mean statistic
            return self._average((self._y - mean) ** 2), self._average(variance)

    def observe(self, iteration: int, out: torch.Tensor, estimate: torch.Tensor,
                loss: torch.Tensor) -> None:
        residual, variance = self.statistics(out)
        self.update(iteration, residual, self.factor * variance)

    def parameters(self) -> dict:
        return {**super().parameters(), "discrepancy_noise": self.noise,
                "discrepancy_factor": self.factor}


class RicianDiscrepancy(MomentDiscrepancy):
    """The discrepancy principle for magnitude (Rician) data (:class:`MomentDiscrepancy`
    with the Rician moments of :func:`napari_dip.likelihoods.rician_moments`; Gudbjartsson
    & Patz 1995, Koay & Basser 2006)::

        mean_w((m - E[m | nu])^2)  <=  factor * mean_w(Var[m | nu]),
        Var[m | nu] = nu^2 + 2 sigma^2 - E[m | nu]^2

    At high SNR this is the Gaussian rule at ``sigma^2``; where the signal is zero the bound
    falls to ``(2 - pi/2) sigma^2`` and the residual is taken about the noise floor
    ``sigma sqrt(pi/2)``, not about 0, so the background's floor is not fitted as signal.
    ``sigma``: the noise's standard deviation per real/imaginary component in ``y``'s units.
    """

    noise = "rician"

    def __init__(self, y: torch.Tensor, sigma: float, operator=None,
                 weight: torch.Tensor | None = None, window: int = 20,
                 factor: float = MomentDiscrepancy.FACTOR):
        if not sigma > 0:
            raise ValueError(f"the Rician discrepancy needs sigma > 0, got {sigma!r}")
        # the bound before the first window: the high-SNR one, factor * sigma^2
        super().__init__(y, float(sigma) ** 2, operator, weight, window, factor)
        self.sigma = float(sigma)

    def moments(self, nu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from .likelihoods import rician_moments

        return rician_moments(nu, self.sigma)


class PoissonDiscrepancy(MomentDiscrepancy):
    """The discrepancy principle for photon counts (:class:`MomentDiscrepancy` with the
    Poisson moments ``E[y | nu] = nu``, ``Var[y | nu] = nu``): stop once the counts scatter
    about the estimated rate no more than Poisson noise would. This is Morozov's rule with
    the Poisson variance; Bertero, Boccacci, Talenti, Zanella and Zanni ("A discrepancy
    principle for Poisson data", Inverse Problems 26, 2010) state it with the Kullback-Leibler
    divergence, whose expectation of 1/2 per value holds only at large counts, while the
    variance's expectation is exact at any rate.

    ``unit``: one count in ``y``'s units (the data are counts / scale, so ``Var[y | nu] =
    nu * unit``); the data must be photon counts (or counts times a known gain folded into
    ``unit``), not arbitrary intensities.

    ``factor`` defaults to 1, the plain principle, not the Rician rule's 0.9: on the Poisson
    cases of ``benchmarks/results/poisson-stopping.md`` (a cell at peak 30, Hubble crops at
    peak 30 and 100; one fit and ensembles of 2 and 4) factor 1 kept estimates 0.01-0.19 dB
    below the run's best, 0.9 up to 1.13 dB (it waits while the cell's smooth background
    takes up its noise) and ES-WMV, the rule before, up to 0.83 dB.
    """

    noise = "poisson"
    FACTOR = 1.0

    def __init__(self, y: torch.Tensor, unit: float, operator=None,
                 weight: torch.Tensor | None = None, window: int = 20,
                 factor: float = FACTOR):
        if not unit > 0:
            raise ValueError(f"the Poisson discrepancy needs a count unit > 0, got {unit!r}")
        self.unit = float(unit)
        # the bound before the first window: the variance if the rate were the data
        super().__init__(y, max(float(y.clamp_min(0).mean()), 1e-12) * self.unit, operator,
                         weight, window, factor)

    def moments(self, nu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rate = nu.clamp_min(0)
        return rate, rate * self.unit


def _data_weight(operator) -> torch.Tensor | None:
    """1 where an operator's measurement holds data (its ``known`` pixels for inpainting,
    its ``measured`` region for a valid boundary), None where it all does."""
    weight = None
    for name in ("known", "measured"):
        mask = getattr(operator, name, None)
        if isinstance(mask, torch.Tensor):
            weight = mask if weight is None else weight * mask
    return weight


def rician_discrepancy(problem, sigma: float, window: int = 20,
                       factor: float = RicianDiscrepancy.FACTOR) -> RicianDiscrepancy:
    """The :class:`RicianDiscrepancy` of a solver's problem (a
    :class:`napari_dip.problem.Problem`: its padded normalised ``y`` and its operator);
    ``sigma`` in the network's normalised units (the image's sigma / ``scaling.scale``)."""
    return RicianDiscrepancy(problem.y, sigma, operator=problem.operator,
                             weight=_data_weight(problem.operator), window=window,
                             factor=factor)


def poisson_discrepancy(problem, window: int = 20,
                        factor: float = PoissonDiscrepancy.FACTOR) -> PoissonDiscrepancy:
    """The :class:`PoissonDiscrepancy` of a solver's problem whose data are photon counts
    (one count is ``1 / scaling.scale`` in the network's units)."""
    return PoissonDiscrepancy(problem.y, 1.0 / problem.scaling.scale,
                              operator=problem.operator,
                              weight=_data_weight(problem.operator), window=window,
                              factor=factor)


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
