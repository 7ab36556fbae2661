"""The Deep Image Prior loop: fit a randomly initialised generator f(z) so that A f(z) ~ y.

Per step: perturb the input z with fresh N(0, sigma_p^2) noise, one Adam step on the data
term, update the exponential average, the backtracking checkpoint and the early-stopping
rule (the discrepancy principle where the noise level is known or estimated, else ES-WMV),
and yield a :class:`~napari_dip.records.Step`. Subclasses (DeepRED)
add terms to the objective and updates after the step through hooks; the loss a step
reports, and the discrepancy rule compares with the noise variance, is the data term alone.

Ensembles (``Request.ensemble`` = K > 1, DIP only): K fits in one batched network
(:func:`napari_dip.networks.combine_members`). Member k starts from the weights, input and
perturbation generator of a single run with seed + k, and Adam minimises the sum of the
members' data terms, so each member's gradient, and with Adam's elementwise updates its
whole trajectory, is what it would be alone (to float rounding). The estimate is the
members' mean. The loss a step reports, and the discrepancy principle compares with the
noise level, is the members' mean data term, so the run stops where the members, on
average, fit the data to the noise level: where each would stop alone (the mean's own
residual is smaller; stopping on it ended runs 25-40 % sooner and up to 0.96 dB lower,
``benchmarks/results/ensemble.md``). ES-WMV watches the mean output's variance. The
result's ``uncertainty`` is the members' per-pixel standard deviation
(:func:`napari_dip.problem.to_outputs`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from ..cancel import join_leftovers, raise_if_cancelled
from ..likelihoods import make_likelihood
from ..methods import METHODS, Method, noise_level_applies
from ..networks import combine_members, make_network
from ..plan import Request
from ..presets import Preset
from ..problem import Problem, to_output, to_outputs
from ..records import Result, Step
from ..stabilisers import (
    Backtracking,
    Discrepancy,
    EarlyStopping,
    ExponentialAverage,
    NoStopping,
    PoissonDiscrepancy,
    RicianDiscrepancy,
    default_patience,
    poisson_discrepancy,
    rician_discrepancy,
)
from ..tasks import TASKS, get_noise_model


def make_input(preset: Preset, problem: Problem, generator: torch.Generator) -> torch.Tensor:
    """The fixed network input z: U(0, 0.1) noise, a coordinate meshgrid, or the guide image."""
    n, _, *spatial = problem.estimate_shape  # (h, w), or (d, h, w) for a volume
    device = problem.y.device
    if preset.input_kind == "image":
        return problem.guide.clone()
    if preset.input_kind == "meshgrid":
        grids = torch.meshgrid(*(torch.linspace(0, 1, s, device=device) for s in spatial),
                               indexing="ij")
        return torch.stack(grids[::-1])[None]  # x, y (, z) coordinates
    z = torch.rand((n, preset.input_channels, *spatial), generator=generator, device=device)
    return z * 0.1


def build_members(request: Request, preset: Preset, problem: Problem, device: torch.device
                  ) -> tuple[torch.nn.Module, torch.Tensor, list[torch.Generator]]:
    """(network, its input z, one random generator per member) of a run: member k's weights,
    input and generator are those of a single run with seed + k (``request.ensemble``
    members; one member is the single run). Weights are drawn from torch's global RNG, in
    a fork, so the caller's state is untouched."""
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    networks, inputs, generators = [], [], []
    for k in range(request.ensemble):
        generator = torch.Generator(device=device)
        generator.manual_seed(request.seed + k)
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(request.seed + k)
            z = make_input(preset, problem, generator)
            # 2-D skip network, or the 3-D one for a volume (problem.z_strides set)
            networks.append(make_network(z.shape[1], problem.channels, preset.network,
                                         problem.z_strides).to(device))
        inputs.append(z)
        generators.append(generator)
    z = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)
    return combine_members(networks), z, generators


def perturbation(z: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Fresh N(0, 1) noise of z's shape, each member's channels from its own generator."""
    if len(generators) == 1:
        return torch.randn(z.shape, generator=generators[0], device=z.device)
    n, c, *spatial = z.shape
    shape = (n, c // len(generators), *spatial)
    return torch.cat([torch.randn(shape, generator=g, device=z.device) for g in generators],
                     dim=1)


def rician_stopping(solver) -> RicianDiscrepancy | None:
    """The discrepancy principle for Rician data (:class:`RicianDiscrepancy`: the residual
    about the Rician mean reaches the Rician variance, times its factor) where the
    likelihood knows sigma and the run stops at a noise level; else None. On the MRI cases of
    ``benchmarks/science.py`` it stopped within 0.1 dB of the best step, and ahead of ES-WMV
    (660 against 874 steps, +0.3 dB, on the 64 px phantom at sigma 0.10)."""
    if solver.likelihood_sigma is None or solver.request.early_stop is not True \
            or not (solver.method.stops_at_noise_level and solver.task.squared_residual):
        return None
    return rician_discrepancy(solver.problem,
                              solver.likelihood_sigma / solver.problem.scaling.scale)


def photon_counts(image: np.ndarray) -> bool:
    """Whether ``image`` holds photon counts: whole numbers, none negative. Only then does
    the Poisson variance (one count's) give a noise level; intensities in other units (a
    camera's gain, normalised data) leave the Poisson likelihood right but its variance
    unknown."""
    image = np.asarray(image)
    if image.dtype.kind in "ui":
        return bool(image.min() >= 0) if image.size else False
    return bool(image.size and np.all(image >= 0) and np.all(image == np.round(image)))


def _own_rule_wanted(request) -> bool:
    """Early stopping on, with neither an ES-WMV patience (``early_stop=N``) nor
    ``noise_sigma=None``, both of which ask for ES-WMV."""
    return request.early_stop is True and request.patience is None \
        and request.noise_sigma is not None


def poisson_stopping(solver) -> PoissonDiscrepancy | None:
    """The discrepancy principle for photon counts (:class:`PoissonDiscrepancy`: the counts'
    scatter about the estimated rate reaches the Poisson variance, times its factor) where the
    noise model is Poisson, the data are counts (:func:`photon_counts`) and early stopping
    is on without an ES-WMV patience or ``noise_sigma=None``; else None (ES-WMV decides)."""
    r = solver.request
    if r.noise != "poisson" or not _own_rule_wanted(r) \
            or not (solver.method.stops_at_noise_level and solver.task.squared_residual) \
            or not photon_counts(r.image):
        return None
    return poisson_discrepancy(solver.problem)


def held_out_stopping(solver):
    """Inpainting's rule (:class:`napari_dip.held_out.HeldOut`: keep the estimate that best
    predicts a hidden share of the known pixels) where early stopping is on without an
    ES-WMV patience or ``noise_sigma=None`` and the method returns the estimate its rule
    keeps (DIP); else None (ES-WMV decides). Hides those pixels from the problem."""
    r = solver.request
    if r.task != "inpaint" or not _own_rule_wanted(r) \
            or not solver.method.keeps_minimum_variance:
        return None
    from ..held_out import hold_out

    return hold_out(solver.problem, default_patience(solver.iterations), r.seed)


#: Networks whose finest scale has at most this many channels run channels-last. Narrow
#: 2-D networks (the fast presets) ran 8-14 % faster so at 128² on two of the four CPUs
#: measured and up to 25 % slower on another; the paper's 128-channel network ran 10-20 %
#: faster on one and 35-70 % slower on another (benchmarks/README.md), so it keeps the
#: default layout. The numbers change only by rounding.
CHANNELS_LAST_MAX = 32


class DIPSolver:
    """Deep Image Prior. Build with a request, its problem and preset; run with :meth:`run`.

    What the method is (its name, options and stopping behaviour) is declared in
    :data:`napari_dip.methods.METHODS`; the request's options arrive checked and resolved."""

    method: Method = METHODS["dip"]
    #: Set by the pipeline: a threading.Event that cancels the run (None: never).
    cancel = None

    def __init__(self, request: Request, problem: Problem, preset: Preset, device: torch.device):
        self.task = TASKS[request.task]
        self.options = dict(request.options)
        self.request = request
        self.problem = problem
        self.preset = preset
        self.device = device
        self.iterations = request.iterations or preset.iterations
        self.preview_every = request.preview_every
        self.likelihood_sigma, self.likelihood_sigma_estimated = self._likelihood_sigma()
        self.likelihood = make_likelihood(
            request.noise, None if self.likelihood_sigma is None
            else self.likelihood_sigma / problem.scaling.scale)
        self.output_floor = get_noise_model(request.noise).output_floor

        self.ensemble = request.ensemble
        self.net, z, self.generators = build_members(request, preset, problem, device)
        self.generator = self.generators[0]
        if problem.z_strides is None and preset.network.channels_down[0] <= CHANNELS_LAST_MAX:
            self.net = self.net.to(memory_format=torch.channels_last)
            z = z.contiguous(memory_format=torch.channels_last)
        self.z = z
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=preset.lr)
        self.average = ExponentialAverage(preset.ema)
        self.backtracking = Backtracking()
        self.noise_sigma, self.noise_sigma_estimated = self._noise_level()
        self.stopping = self._stopping_rule()
        self.history: dict[str, list[float]] = {"loss": [], "variance": []}
        # Host syncs: every step on the CPU (free there); on accelerators the loss and the
        # early-stopping numbers stay on the device and reach the host every this many steps.
        self.sync_every = 1 if device.type == "cpu" else 25

    @property
    def name(self) -> str:
        return self.method.name

    def _stopping_rule(self):
        """The discrepancy principle at a noise level, the rules of :func:`rician_stopping`,
        :func:`poisson_stopping`, :func:`held_out_stopping`, else ES-WMV or none."""
        request = self.request
        if self.noise_sigma is not None:
            # The data term is a mean over the whole (padded) measurement, which carries data
            # only where it is known (inpainting) and measured (not a valid boundary's margin).
            known = 1.0 if request.mask is None else float(1 - request.mask.mean())
            known *= self.problem.operator.measured_fraction
            threshold = (self.noise_sigma / self.problem.scaling.scale) ** 2 * known
            if threshold > 0:
                return Discrepancy(threshold)
            self.noise_sigma = None
        for special in (rician_stopping, poisson_stopping, held_out_stopping):
            if (rule := special(self)) is not None:
                return rule
        if request.early_stop:
            return EarlyStopping(
                window=100, patience=request.patience or default_patience(self.iterations),
                generator=self.generator)
        return NoStopping()

    @property
    def discrepancy(self) -> Discrepancy | None:
        return self.stopping if isinstance(self.stopping, Discrepancy) else None

    @property
    def early_stopping(self) -> EarlyStopping | None:
        return self.stopping if isinstance(self.stopping, EarlyStopping) else None

    def _noise_level(self) -> tuple[float | None, bool]:
        """(Gaussian noise standard deviation in the image's units, estimated?) that the
        discrepancy principle stops at, or (None, False) to stop by ES-WMV.

        "auto" estimates it only for tasks whose measurement keeps its noise at the finest
        scale (``Task.noise_estimable``: denoising): the estimate
        (:func:`~napari_dip.noise_levels.gaussian_sigma`: wavelet, patch-covariance and
        weak-texture estimates) is reliable on a noisy image, but not on holes,
        low-resolution or blurred measurements, whose fine scales hold little of the noise.
        """
        r = self.request
        if not noise_level_applies(r.task, self.name, r.noise,
                                   r.early_stop if r.patience is None else r.patience):
            return None, False
        if isinstance(r.noise_sigma, (int, float)):
            return float(r.noise_sigma), False
        if r.noise_sigma != "auto" or not self.task.noise_estimable:
            return None, False
        from ..noise_levels import gaussian_sigma

        sigma = gaussian_sigma(r.image)
        return (sigma, True) if sigma > 0 else (None, False)

    def _likelihood_sigma(self) -> tuple[float | None, bool]:
        """(the noise's standard deviation in the image's units, estimated?) for noise models
        whose likelihood needs it (Rician: given as ``noise_sigma``, or estimated from the
        image's dark background), else (None, False)."""
        r = self.request
        if not get_noise_model(r.noise).likelihood_sigma:
            return None, False
        if isinstance(r.noise_sigma, (int, float)):
            return float(r.noise_sigma), r.noise_sigma_estimated
        from ..noise_levels import rician_sigma

        return rician_sigma(r.image), True

    # -- warm start -----------------------------------------------------------------------
    def state(self) -> tuple[dict, dict]:
        """A copy of the network's weights and the optimiser's state, for :meth:`load_state`
        of the next part's solver (warm start)."""
        return ({k: v.detach().clone() for k, v in self.net.state_dict().items()},
                copy.deepcopy(self.optimizer.state_dict()))

    def load_state(self, state: tuple[dict, dict]) -> None:
        """Start from another solver's :meth:`state`: the weights and Adam's moments (with
        fresh moments the first steps jolt every weight by about the learning rate)."""
        self.net.load_state_dict(state[0])
        self.optimizer.load_state_dict(state[1])

    def signature(self) -> tuple:
        """What must match for this solver's state to load into another's."""
        return (self.preset.network, tuple(self.z.shape[:2]), self.problem.channels,
                self.problem.z_strides)

    # -- hooks for subclasses -------------------------------------------------------------
    def data_term(self, out: torch.Tensor) -> torch.Tensor:
        """Fidelity of A(out) to y under the noise model's likelihood."""
        return self.likelihood(self.problem.operator(out), self.problem.y)

    def objective(self, out: torch.Tensor) -> torch.Tensor:
        """What Adam minimises (DeepRED adds a proximity term); ensembles: members' sum."""
        return self.data_term(out) * self.ensemble if self.ensemble > 1 else self.data_term(out)

    def fit_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss a step reports and the stopping rules see, from :meth:`objective`'s
        value: the data term alone (DeepRED leaves its proximity term out)."""
        return loss

    def after_step(self, out: torch.Tensor, iteration: int) -> dict[str, float]:
        """Updates after the network step (DeepRED's x- and u-updates); returns extras."""
        return {}

    def estimate(self) -> torch.Tensor:
        """Current estimate of the clean image (padded, normalised): an ensemble's mean."""
        value = self.average.value
        return value if self.ensemble == 1 else value.mean(dim=0, keepdim=True)

    def members(self) -> torch.Tensor:
        """The members' current estimates, (K, C, ...); a single run's estimate."""
        return self.estimate() if self.ensemble == 1 else self.average.value

    def finished(self) -> None:
        """The loop ran to its end (not cancelled, no error); called before :meth:`close`."""

    def close(self) -> None:
        """Release resources (background threads); called however the run ends."""

    # -- the loop -------------------------------------------------------------------------
    def fit_psnr(self, out: torch.Tensor) -> float:
        with torch.no_grad():
            mse = float(torch.mean((self.problem.operator(out) - self.problem.y) ** 2))
        return -10 * math.log10(mse) if mse > 0 else math.inf

    def run(self) -> Generator[Step, None, Result]:
        """The run's steps; returns the Result. Raises RunCancelled once ``self.cancel`` (a
        threading.Event, or None) is set, checked before every iteration."""
        try:
            join_leftovers(self.cancel)  # an earlier, stopped run's denoiser call
            result = yield from self._loop()
            self.finished()
            return result
        finally:
            self.close()

    def _step(self, iteration: int) -> tuple:
        """One optimisation step; returns what the step record needs, still on the device:
        (iteration, loss, extras, the stopping rule's variance or None)."""
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        z = self.z
        sigma_p = self.preset.input_noise
        if sigma_p > 0:
            z = z + sigma_p * perturbation(z, self.generators)
        out = self.net(z)
        if self.output_floor:  # (0, 1) -> (-floor, 1): see NoiseModel.output_floor
            out = out * (1 + self.output_floor) - self.output_floor
        loss = self.objective(out)
        loss.backward()
        self.optimizer.step()
        out = out.detach()

        extras: dict[str, float] = {}
        if self.backtracking.due(iteration) and self.backtracking.check(
                self.fit_psnr(out), self.net):
            extras["backtracked"] = 1.0
        self.average.update(out)
        extras.update(self.after_step(out, iteration))
        loss = self.fit_loss(loss)
        if self.ensemble > 1:  # objective() sums the members: their mean data term
            loss = loss / self.ensemble
        variance = self.stopping.observe(iteration, out, self.members(), loss)
        return iteration, loss.detach(), extras, variance

    def _loop(self) -> Generator[Step, None, Result]:
        start = time.perf_counter()
        # Steps wait here, with their numbers still on the device, until the next host sync.
        pending: list[tuple] = []
        iteration = 0
        for iteration in range(1, self.iterations + 1):
            raise_if_cancelled(self.cancel, f" at iteration {iteration}")
            pending.append((*self._step(iteration), time.perf_counter() - start))
            preview_due = bool(self.preview_every) and iteration % self.preview_every == 0
            last = iteration == self.iterations
            if not (preview_due or last or len(pending) >= self.sync_every):
                continue
            stop = self.stopping.should_stop(iteration)
            steps = self._flush(pending)
            pending = []
            for key, value in self.stopping.progress(iteration).items():
                setattr(steps[-1], key, value)
            if preview_due or stop or last:
                steps[-1].preview = to_output(self.estimate(), self.problem, self.request)
            yield from steps
            if stop:
                break

        elapsed = time.perf_counter() - start
        final, stopped_at = self.members(), iteration
        kept = self.stopping.kept() if self.method.keeps_minimum_variance else None
        if kept is not None:
            final, stopped_at = kept
        image, uncertainty = to_outputs(final, self.problem, self.request)
        return Result(
            image=image,
            iterations=iteration,
            stopped_at=int(stopped_at),
            history=self.history,
            parameters=self.parameters(),
            elapsed=elapsed,
            uncertainty=uncertainty,
        )

    def _flush(self, pending) -> list[Step]:
        """Bring the pending steps' numbers to the host (one sync) and record them."""
        losses = torch.stack([p[1] for p in pending]).float().cpu().tolist()
        variances = [math.nan if p[3] is None else p[3] for p in pending]
        if any(isinstance(v, torch.Tensor) for v in variances):
            variances = [float(v) for v in variances]
        steps = []
        for (iteration, _, extras, _, elapsed), loss, variance in zip(pending, losses,
                                                                      variances, strict=True):
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"the loss became {loss} at iteration {iteration}; lower the learning "
                    "rate or check the input for extreme values"
                )
            extras = {k: float(v) for k, v in extras.items()}
            self.history["loss"].append(loss)
            for key, value in extras.items():
                self.history.setdefault(key, []).append(value)
            self.history["variance"].append(variance)
            if self.stopping.records_variance:
                extras["variance"] = variance
            steps.append(Step(iteration, self.iterations, loss, elapsed, None, extras))
        return steps

    def parameters(self) -> dict[str, Any]:
        """Every setting of the run, JSON-serialisable (:func:`run_parameters`)."""
        return run_parameters(self)


def run_parameters(solver: DIPSolver) -> dict[str, Any]:
    """Every setting of a DIP (or DeepRED) run, JSON-serialisable."""
    from .. import __version__

    r = solver.request
    params: dict[str, Any] = {
        "task": r.task, "method": solver.name, "preset": solver.preset.name,
        "iterations": solver.iterations, "early_stop": r.early_stop, "seed": r.seed,
        "ensemble": solver.ensemble,
        "device": str(solver.device), "noise": r.noise, "channel_axis": r.channel_axis,
        "factor": r.factor if solver.task.needs("factor") else None,
        "kernel": r.kernel_name,
        "lr": solver.preset.lr, "input_noise": solver.preset.input_noise,
        "input_kind": solver.preset.input_kind, "input_channels": solver.preset.input_channels,
        "ema": solver.preset.ema, "network": solver.preset.network.to_dict(),
        "input_shape": list(r.input_shape), "input_dtype": r.input_dtype,
        "version": __version__,
    }
    params.update(solver.stopping.parameters())
    if solver.discrepancy is not None and solver.noise_sigma is not None:  # Gaussian's sigma
        params.update(noise_sigma=solver.noise_sigma,
                      noise_sigma_estimated=solver.noise_sigma_estimated)
    if solver.likelihood_sigma is not None:  # the likelihood's own (Rician) sigma
        params.update(noise_sigma=solver.likelihood_sigma,
                      noise_sigma_estimated=solver.likelihood_sigma_estimated)
    if r.kernel_name == "custom":
        params["kernel"] = np.asarray(r.kernel).tolist()
    if r.boundary is not None:
        params["boundary"] = r.boundary
    if solver.problem.back_project_floor is not None:  # napari_dip.consistency
        params["back_projected"] = True
    params.update({k: _jsonable(v) for k, v in solver.options.items()})
    return params


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value
