"""Inpainting's stopping rule and its blend with the classical fill, by held-out known pixels.

Inpainting data carry no noise, so no noise level says when to stop; yet DIP's fill of the
holes is often best early and then degrades while the known pixels are fitted ever more
closely (on the quality benchmark's 96 px vase crop the best preview came 2 dB above the
step ES-WMV kept). A random 5 % of the known pixels is hidden from the fit and the run
keeps the estimate that predicts them best: they are holes whose truth is known
(Self-Validation: Li, Wang, Zhuang, Sun and Qu, "Self-Validation: Early Stopping for
Single-Instance Deep Generative Priors", BMVC 2021). The same pixels then say
how much to trust the network against scikit-image's biharmonic fill, the classical method
(:func:`blend_weight`): the result is their convex combination with the weight that
predicts the held-out pixels best, so it does not end far below the classical fill where
the network fills worse. The result keeps every known pixel as measured, the held-out ones
included, so hiding them costs only what the fit near them would have learnt from them.

On the quality benchmark's three masks (``benchmarks/results/quality.md``) this took DIP
from 1.2-3.0 dB below the biharmonic fill (ES-WMV) to 0.07-0.65 dB above it. Held-out
pixels shaped like the holes (the hole mask shifted by a third of the image) were tried
and lost: they stopped the library and text runs at steps 226 and 420, 1.4 and 1.0 dB
below the biharmonic fill.

Hiding pixels is not free: it changes the fit's course, not only what it sees. With the
small-hole network (noise input) the fill of the same run with and without 5 % hidden
(fast preset, seed 0, no stopping) drifted apart: the sky sample's holes peaked at 27.6
against 30.2 dB without noise and at 27.6 against 29.4 with its read noise (two seeds each),
the text mask's image at 32.3 against 33.1 dB; the vase's meshgrid network was unharmed
(36.0 against 36.2). Hiding 1 % harmed the sky less (29.4 dB with the rule and blend) but
the vase more (36.8 against 37.65 with 5 %). Where the noise level is given the discrepancy
principle decides instead and nothing is hidden (the sky sample does so: its read noise is
known).
"""

from __future__ import annotations

import numpy as np
import torch

from .stabilisers import RunningMinimum

#: Share of the known pixels held out.
FRACTION = 0.05
#: Fewest known pixels an image needs for the rule (fewer: ES-WMV decides).
MIN_KNOWN = 400


class HeldOut:
    """The stopping rule: the squared error of the run's estimate at the held-out pixels is
    tracked every step; the run stops ``patience`` steps after its minimum and returns the
    estimate there (:meth:`kept`).

    ``y``: the padded, normalised measurement with the held-out pixels' values (1, C, ...);
    ``held``: 1 at the held-out pixels, broadcastable to ``y``. Everything stays on ``y``'s
    device: :meth:`observe` never waits for it; :meth:`should_stop` syncs.
    """

    name = "held-out"
    records_variance = False

    def __init__(self, y: torch.Tensor, held: torch.Tensor, patience: int,
                 fraction: float = FRACTION, known: torch.Tensor | None = None):
        self.patience = int(patience)
        #: The fit's known pixels (1, 1, ...), held-out ones excluded: given, :meth:`kept`
        #: blends the estimate with the biharmonic fill (:func:`blend_weight`).
        self.known = None if known is None else known.detach()
        #: The blend's weight on the network's estimate (None: no blend yet).
        self.weight: float | None = None
        self.fraction = float(fraction)
        self._y = y.detach()
        self._held = held.detach().to(y.dtype)
        self.pixels = int(self._held.sum())
        if self.pixels == 0:
            raise ValueError("the held-out rule needs at least one held-out pixel")
        self._minimum = RunningMinimum()

    @property
    def kept_estimate(self) -> torch.Tensor | None:
        """The estimate that predicted the held-out pixels best so far, unblended."""
        return self._minimum.estimate

    @property
    def best_iteration(self) -> int | None:
        return self._minimum.best_iteration

    def error(self, estimate: torch.Tensor) -> torch.Tensor:
        """Mean squared error at the held-out pixels of ``estimate`` (an ensemble's members
        (K, C, ...): of their mean), a 0-d tensor on its device."""
        x = estimate.mean(dim=0, keepdim=True) if estimate.shape[0] > 1 else estimate
        return (((x - self._y) ** 2) * self._held).sum() / (self._held.sum() * x.shape[1])

    def observe(self, iteration: int, out: torch.Tensor, estimate: torch.Tensor,
                loss: torch.Tensor) -> None:
        self._minimum.update(iteration, self.error(estimate.detach()), estimate)

    def should_stop(self, iteration: int) -> bool:
        best = self.best_iteration
        return best is not None and iteration - best >= self.patience

    def kept(self) -> tuple[torch.Tensor, int] | None:
        """The estimate that predicted the held-out pixels best, and its iteration; with
        ``known``, blended with the biharmonic fill by :func:`blend_weight`."""
        if self.kept_estimate is None:
            return None
        estimate = self.kept_estimate
        if self.known is not None:
            estimate = self._blend(estimate)
        return estimate, self.best_iteration

    def _blend(self, estimate: torch.Tensor) -> torch.Tensor:
        held = (self._held[0, 0] > 0).cpu().numpy()
        fit_known = (self.known[0, 0] > 0).cpu().numpy()
        y = self._y[0].double().cpu().numpy()
        mean = estimate.mean(dim=0).double().cpu().numpy()  # an ensemble's mean; or the one
        # the biharmonic fill from the fit's data alone predicts the held-out pixels as the
        # network had to: the two predictions there give the weight
        cv = biharmonic(y, ~fit_known)
        self.weight = blend_weight(mean[..., held], cv[..., held], y[..., held])
        full = biharmonic(y, ~(fit_known | held))  # every known pixel
        fill = torch.as_tensor(full[None], dtype=estimate.dtype, device=estimate.device)
        return self.weight * estimate + (1 - self.weight) * fill

    def progress(self, iteration: int) -> dict:
        best = self.best_iteration
        return {} if best is None else {"kept": best, "expected_stop": best + self.patience}

    def parameters(self) -> dict:
        params = {"stopping": self.name, "held_out_fraction": self.fraction,
                  "held_out_pixels": self.pixels, "held_out_patience": self.patience}
        if self.weight is not None:
            params["held_out_blend_weight"] = self.weight
        return params


def blend_weight(network: np.ndarray, classical: np.ndarray, truth: np.ndarray) -> float:
    """The weight w in [0, 1] of ``w * network + (1 - w) * classical`` that best predicts
    ``truth`` (least squares: a cross-validated convex combination of the two
    predictions, as in stacked regression, Breiman 1996); 1 where they agree."""
    difference = network - classical
    energy = float(np.sum(difference * difference))
    if energy == 0:
        return 1.0
    return float(np.clip(np.sum((truth - classical) * difference) / energy, 0.0, 1.0))


def biharmonic(y: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """scikit-image's biharmonic fill of ``y`` (C, ...) where ``holes`` (spatial) is True."""
    from skimage.restoration import inpaint_biharmonic

    filled = inpaint_biharmonic(np.moveaxis(y, 0, -1), holes, channel_axis=-1)
    return np.moveaxis(filled, -1, 0)


def hold_out(problem, patience: int, seed: int, fraction: float = FRACTION
             ) -> HeldOut | None:
    """Hide a random ``fraction`` of an inpainting problem's known pixels (inside the image,
    not its padding) from the fit, in place: the operator's mask and the measurement lose
    them. Returns the :class:`HeldOut` rule that watches them, or
    None (nothing hidden) where the image has fewer than MIN_KNOWN known pixels. ``seed``
    draws them (a numpy generator of its own: the run's random streams are untouched)."""
    known = problem.operator.known  # (1, 1, ...) float, 1 = known
    region = (0, 0, *problem.crop)  # the image inside its padding
    image_known = (known[region] > 0).cpu().numpy()
    if int(image_known.sum()) < MIN_KNOWN:
        return None
    draw = np.random.default_rng(seed).random(image_known.shape)
    held = torch.zeros_like(known, dtype=torch.bool)
    held[region] = torch.as_tensor(image_known & (draw < fraction), device=known.device)
    problem.operator.known.mul_((~held).to(known.dtype))
    rule = HeldOut(problem.y, held, patience, fraction, known=problem.operator.known.clone())
    problem.y = problem.y * (~held).to(problem.y.dtype)
    return rule
