"""DeepRED: Deep Image Prior powered by Regularization by Denoising.

Mataev, Elad, Milanfar, "DeepRED: Deep Image Prior Powered by RED", ICCV Workshops 2019.
The problem is

    min_{theta, x}  1/2 ||A f_theta(z) - y||^2 + (lam/2) x^T (x - D(x))   s.t.  x = f_theta(z)

with D an off-the-shelf denoiser that is never differentiated. It is solved by scaled ADMM
(the paper's Algorithm 1), one network step per outer iteration:

1. theta-step: one Adam step on  data(f(z + eps)) + mu * mean((f(z + eps) - (x - u))^2),
   fresh eps each step (the DIP loop's input perturbation sigma_p).
2. x-step (RED fixed point):  x <- (lam * D(x) + mu * (f + u)) / (lam + mu),
   clipped to [0, 1]. D(x) is refreshed every ``denoise_every`` iterations in a background
   thread while the network keeps stepping (as the paper does); in between the last D(x) is
   used; before the first refresh (iteration ``denoise_every``) x0 stands in for D(x). The
   first call starts on D(x0) at the first iteration; each refresh is collected at a fixed
   iteration (waiting for it if needed) and the next one is started on the new x, so a run
   repeats exactly whatever the thread timing. A call that takes longer than
   ``denoiser_timeout`` seconds ends the run with an error; a cancelled run stops waiting at
   once and leaves its call to finish in the background, joined before the next run starts
   (:mod:`napari_dip.cancel`).
3. Dual step:  u <- u + f - x.

Units: all of x, u, f and D(x) are in the network's normalised [0, 1] intensities, and so is
``denoiser_sigma`` (a fraction of the image's intensity range).

Scaling of the theta-step objective: the paper writes 1/2 ||A f - y||^2 + (mu/2) ||f - (x - u)||^2
with sums. Like the reference code (torch ``MSELoss`` on both terms) we use means, each over
its own pixels: ``data_term`` (the DIP loop's mean squared error, or Poisson negative
log-likelihood) plus ``mu * mean((f - (x - u))^2)``. For denoising, deblurring and inpainting
both terms run over the same number of pixels, so this is the paper's objective times 2/N and
has the same minimiser; for super-resolution the data term runs over factor^2 fewer pixels, so
its weight relative to the proximity term is factor^2 larger than in the summed form (again as
in the reference code). The x-step is per pixel and does not depend on this scaling.

Result: the exponential average of f(z) for denoising, x - u otherwise (reference code).
x starts from the measurement (denoising, deblurring), its bicubic upsampling
(super-resolution) or the measurement with each hole filled from its nearest known pixel
(inpainting); u starts at 0.

Stopping: as DIP's (:mod:`napari_dip.solvers.dip`): where the Gaussian noise level is known
or estimated (denoising), the run stops once the mean data term of its last 20 steps falls
to the noise variance; the loss a step reports is that data term, without the proximity
term. Elsewhere ES-WMV, keeping the estimate at the stop (the variance minimum comes early,
before the estimate is good).

Records: every step's ``extras`` (and ``Result.history``) hold ``admm_residual``, the primal
residual ||x - f|| after the x-step as a root mean square in normalised units, and with
``denoiser_sigma="auto"`` also ``denoiser_sigma``, the estimate behind the D(x) in use (NaN
before the first refresh).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .. import denoisers
from ..cancel import BackgroundCall, RunCancelled
from ..methods import METHODS
from ..plan import Request
from ..presets import Preset
from ..problem import Problem
from ..tasks import TASKS, DeepREDDefaults
from .dip import DIPSolver

#: Name prefix of the background denoiser threads (one per call; a run's last call is
#: finished when the run returns, or, for a cancelled or failed run, before the next starts).
THREAD_PREFIX = "napari-dip-denoiser"

#: DeepRED's per-task settings, as declared in the task registry (``napari_dip.tasks``).
TASK_DEFAULTS: dict[str, DeepREDDefaults] = {
    name: task.method_defaults["deepred"] for name, task in TASKS.items()
    if "deepred" in task.method_defaults}


# -- the ADMM updates (pure functions on tensors) -----------------------------------------------
def x_update(denoised: torch.Tensor, out: torch.Tensor, u: torch.Tensor, lam: float, mu: float,
             low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """RED fixed-point x-step (Mataev et al. 2019, one fixed-point iteration per ADMM step):
    ``(lam * D(x) + mu * (f + u)) / (lam + mu)``, clipped to [low, high]."""
    return ((lam * denoised + mu * (out + u)) / (lam + mu)).clamp(low, high)


def dual_update(u: torch.Tensor, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Scaled dual update (Mataev et al. 2019): ``u + f - x``."""
    return u + out - x


def admm_residual(x: torch.Tensor, out: torch.Tensor) -> float:
    """Primal residual ``||x - f||`` as a root mean square (normalised intensity units)."""
    return float(torch.sqrt(torch.mean((x - out) ** 2)))


def _initial_x(kind: str, problem: Problem) -> torch.Tensor:
    """The ADMM variable's start, (1, C, H, W) in [0, 1] at the estimate's size."""
    y = problem.y
    if kind == "bicubic":
        x = F.interpolate(y, scale_factor=problem.factor, mode="bicubic", align_corners=False)
    elif kind == "nearest":
        known = problem.operator.known.detach().cpu().numpy()[0, 0] != 0
        _, (iy, ix) = ndimage.distance_transform_edt(~known, return_indices=True)
        x = y[..., torch.as_tensor(iy, device=y.device), torch.as_tensor(ix, device=y.device)]
    else:  # the measurement (padded by reflection where a valid boundary zeroes y)
        x = (y if problem.start is None else problem.start).clone()
    return x.clamp(0, 1).contiguous()


def _denoise_job(image: np.ndarray, sigma, name: str) -> tuple[np.ndarray, float]:
    return denoisers.denoise_with_sigma(image, sigma, name)


class DeepREDSolver(DIPSolver):
    """DIP + RED by ADMM. Options (``restore(..., method="deepred", **options)``):

    ``denoiser``
        ``"nlm"`` (default), ``"bm3d"`` or ``"tv"`` (see :mod:`napari_dip.denoisers`).
    ``denoiser_sigma``
        Noise level the denoiser is tuned to, in normalised units (fraction of the image's
        intensity range); ``"auto"`` estimates it on each denoiser input with scikit-image's
        ``estimate_sigma``; None: the task's default (3/255, or 5/255 for super-resolution).
    ``lam``, ``mu``
        RED weight lambda (>= 0) and ADMM penalty mu (> 0); None: the task's default.
    ``denoise_every``
        Refresh D(x) every this many iterations (default 10).
    ``denoiser_timeout``
        Seconds one D(x) call may take before the run ends with an error (default 300).
    """

    method = METHODS["deepred"]

    def __init__(self, request: Request, problem: Problem, preset: Preset, device: torch.device):
        self.method.check_task(TASKS[request.task])
        defaults = TASKS[request.task].method_defaults["deepred"]
        changes = {}
        if defaults.lr is not None:
            changes["lr"] = defaults.lr
        if defaults.input_noise is not None and preset.input_kind != "image":
            changes["input_noise"] = defaults.input_noise
        super().__init__(request, problem, replace(preset, **changes), device)

        # the options arrive checked, with the task's defaults filled in (napari_dip.methods)
        opts = self.options
        self.denoiser = opts["denoiser"]
        self.sigma = opts["denoiser_sigma"]
        self.lam, self.mu, self.denoise_every = opts["lam"], opts["mu"], opts["denoise_every"]
        self.timeout = opts["denoiser_timeout"]
        self.x_init = defaults.x_init
        self.returns = defaults.estimate

        with torch.no_grad():
            self.x = _initial_x(self.x_init, problem)
            self.u = torch.zeros_like(self.x)
            self.denoised = self.x.clone()  # D(x) until the first refresh arrives
        self.last_sigma = math.nan
        self._call: BackgroundCall | None = None
        self._started = False
        self._finished = False  # the loop reached its end: wait for the last call

    # -- hooks -------------------------------------------------------------------------------
    def objective(self, out: torch.Tensor) -> torch.Tensor:
        # theta-step (Mataev et al. 2019), as means (see the module docstring).
        self._fit = self.data_term(out)
        return self._fit + self.mu * torch.mean((out - (self.x - self.u)) ** 2)

    def fit_loss(self, loss: torch.Tensor) -> torch.Tensor:
        # the data term of this step's objective: what the noise level is compared with
        return self._fit.detach()

    def after_step(self, out: torch.Tensor, iteration: int) -> dict[str, float]:
        if not self._started:  # first step: start on D(x0)
            self._started = True
            self._submit()
        refresh = iteration % self.denoise_every == 0
        if refresh:
            self._collect(iteration)
        with torch.no_grad():
            self.x = x_update(self.denoised, out, self.u, self.lam, self.mu)
            self.u = dual_update(self.u, out, self.x)
        if refresh:
            self._submit()
        extras = {"admm_residual": admm_residual(self.x, out)}
        if self.sigma == "auto":
            extras["denoiser_sigma"] = self.last_sigma
        return extras

    def estimate(self) -> torch.Tensor:
        if self.returns == "ema":
            return self.average.value
        return self.x - self.u

    def finished(self) -> None:
        self._finished = True

    def close(self) -> None:
        """After a complete run, wait for the call in flight; after a cancelled or failed
        one, leave it to finish in the background (the next run waits for it)."""
        call, self._call = self._call, None
        if call is None:
            return
        if self._finished:
            try:
                call.wait(self.timeout, self.cancel, self._what())
                call.thread.join()
                return
            except BaseException:  # noqa: BLE001 - its result is not needed any more
                pass
        call.abandon()

    def parameters(self) -> dict[str, Any]:
        params = super().parameters()
        params["x_init"] = self.x_init
        params["estimate"] = self.returns
        return params

    # -- the background denoiser ----------------------------------------------------------------
    def _what(self) -> str:
        return f"the {self.denoiser!r} denoiser"

    def _submit(self) -> None:
        image = self.x[0].detach().cpu().to(torch.float64).numpy().copy()
        self._call = BackgroundCall(_denoise_job, image, self.sigma, self.denoiser,
                                    name=THREAD_PREFIX)

    def _collect(self, iteration: int) -> None:
        call, self._call = self._call, None
        try:
            result, used = call.wait(self.timeout, self.cancel, self._what())
        except TimeoutError:
            call.abandon()
            raise RuntimeError(
                f"the {self.denoiser!r} denoiser did not answer within {self.timeout:g} s "
                f"(D(x) due at iteration {iteration}); give it more time with "
                f"denoiser_timeout=, use a faster denoiser ('tv' or 'nlm'), or tiles "
                f"(tile=) for large images") from None
        except RunCancelled:
            call.abandon()
            raise
        except Exception as exc:
            raise RuntimeError(
                f"the {self.denoiser!r} denoiser failed (D(x) due at iteration {iteration}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not np.all(np.isfinite(result)):
            raise RuntimeError(f"the {self.denoiser!r} denoiser returned NaN or infinite values "
                               f"(D(x) due at iteration {iteration})")
        self.denoised = torch.as_tensor(result, dtype=self.x.dtype, device=self.x.device)[None]
        self.last_sigma = float(used)
