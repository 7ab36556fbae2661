"""Back-projection: the smallest change to an estimate that makes it reproduce its measurement.

A super-resolved estimate x is fitted to the low-resolution image y through the downsampler A,
but a run stops (at its step limit or by its rule) before A x equals y. Iterative
back-projection (Irani and Peleg, "Improving resolution by image registration", CVGIP 1991)
adds the correction that removes that residual; here it is the least-squares one,
x + A^T (A A^T)^-1 (y - A x), reached by conjugate gradients on the normal equations
(CGLS, Hestenes and Stiefel 1952) started at x, which changes x only within the span of
A^T (the detail the measurement holds) and leaves what the network invented elsewhere.

On the quality benchmark's 96 px crops (x4, noise-free; camera / astronaut / barbara) it
added 0.14 / 0.25 / 0.03 dB to one DIP fit (scratch, complete within 2 steps) and
0.13 / 0.22 / 0.02 dB to the default's two (``benchmarks/results/quality.md``); x2 on the
camera crop +0.89 dB, x8 on a 128 px camera crop +0.01 dB (one fit each, scratch).

Noise in y would come back with the correction, so the residual is never brought below the
noise level the run was given (``floor``): a fit that already reached it is left alone.
"""

from __future__ import annotations

import torch

#: Conjugate-gradient steps at most (the benchmark's gain was complete after 2).
STEPS = 5


def back_project(estimate: torch.Tensor, operator, y: torch.Tensor, floor: float = 0.0,
                 steps: int = STEPS) -> torch.Tensor:
    """``estimate`` (N, C, ...) corrected towards ``operator(x) == y`` (y: (1, C, ...), in
    the same normalised units) by at most ``steps`` CGLS steps, stopping once the residual's
    root mean square is at or below ``floor`` (0: as far as the steps go). Returns a new
    tensor; the estimate is not modified."""
    with torch.no_grad():
        x, y = estimate.detach().float().clone(), y.float()
        r = y - operator.A(x)  # residual in the measurement's space
        s = operator.A_adjoint(r)  # the normal equations' residual
        p, gamma = s.clone(), _dot(s, s)
        for _ in range(steps):
            if _rms(r) <= floor or gamma <= 0:
                break
            q = operator.A(p)
            alpha = gamma / _dot(q, q).clamp_min(torch.finfo(q.dtype).tiny)
            x = x + alpha * p
            r = r - alpha * q
            s = operator.A_adjoint(r)
            gamma, previous = _dot(s, s), gamma
            p = s + (gamma / previous) * p
        return x


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum()


def _rms(r: torch.Tensor) -> float:
    return float(r.pow(2).mean().sqrt())
