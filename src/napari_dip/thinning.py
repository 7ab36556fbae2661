"""Photon counts: the network's estimate blended with Anscombe + BM3D, the weight chosen by
binomial thinning.

For Poisson counts the classical method (the Anscombe transform, BM3D at unit variance,
the exact unbiased inverse) is a second, nearly free estimate whose errors differ from the
network's, so a convex combination of the two beats both where they are close. Which
weight, without the truth? Thinning gives data the estimates have not seen: each count y
splits into y1 ~ Binomial(y, 1/2) and y2 = y - y1, two independent Poisson images of half
the rate (data thinning: Leiner, Duan, Wasserman and Ramdas, "Data fission", JASA 2023;
Neufeld, Dharamshi, Gao and Witten, "Data thinning for convolution-closed distributions",
JMLR 2024). Both methods restore y1; the weight that makes their
combination predict y2 best (least squares, clipped to [0, 1]: y2's noise is independent
of both predictions, so it adds the same to every weight's error) is then applied to the
two estimates of the whole data. This costs one more network fit, on y1.

On the quality benchmark's cell (peak 30, 96 px) and two Hubble crops, over two noise
draws each, the thinned weight came within 0.1 of the weight the truth would choose
(0.33-1.0 against 0.32-0.85) and the blend within 0.06 dB of that oracle blend: cell 28.94
and 29.61 dB against Anscombe + BM3D's 28.82 and 29.38 and the network's 28.41 and 29.16
(``benchmarks/results/quality.md`` for the default's own row).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace

import numpy as np

from .records import Result, Step
from .stabilisers import PoissonDiscrepancy

#: Share of each count given to the validation half.
SHARE = 0.5
#: The classical estimate's name in the record.
CLASSICAL = "anscombe-bm3d"


def applies(solver) -> bool:
    """Whether a single-part run (its built solver) blends with Anscombe + BM3D: DIP
    denoising of a 2-D image that stops by the Poisson discrepancy principle, i.e. photon
    counts under the default stopping (:func:`~napari_dip.solvers.dip.poisson_stopping`);
    ``noise_sigma=None`` or ``early_stop=N`` (ES-WMV) and ``early_stop=False`` return the
    network's estimate alone."""
    r = solver.request
    return (r.task == "denoise" and r.method == "dip" and r.image.ndim == 3
            and isinstance(solver.stopping, PoissonDiscrepancy))


def anscombe_bm3d(counts: np.ndarray) -> np.ndarray:
    """Anscombe + BM3D of ``counts`` (C, H, W): the variance-stabilising transform
    2 sqrt(y + 3/8) (Anscombe 1948), BM3D at unit noise (colour through its RGB entry point)
    and the closed-form approximation of the exact unbiased inverse (Makitalo and Foi, IEEE
    TIP 2011)."""
    from .denoisers import _bm3d

    d = np.maximum(_bm3d(2 * np.sqrt(counts + 3 / 8), 1.0), 1e-3)  # its inverse divides by d
    return np.maximum((d / 2) ** 2 + 0.25 * np.sqrt(1.5) / d - 11 / 8 / d ** 2
                      + 5 / 8 * np.sqrt(1.5) / d ** 3 - 1 / 8, 0.0)


def split(counts: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Binomial thinning: (y1, y2), y1 ~ Binomial(counts, SHARE), y2 = counts - y1; both
    whole, non-negative, of counts' shape and dtype (a numpy generator of its own)."""
    whole = np.rint(counts).astype(np.int64)
    half = np.random.default_rng([seed, 7]).binomial(whole, SHARE)
    return half.astype(counts.dtype), (whole - half).astype(counts.dtype)


def blended_run(solver, device, cancel=None) -> Generator[Step, None, Result]:
    """The run of an :func:`applies` solver (built, so its errors come
    before the first step): the network's fit of the counts (its steps and previews), then
    its fit of the thinned half (steps with ``stage="validation"`` and no preview), then the
    blend. The result's ``parameters`` add ``classical``,
    ``classical_blend_weight`` (the network's share, in [0, 1]) and
    ``validation_iterations``; its ``uncertainty`` (ensembles) is the members' spread times
    that weight, as the blend scales the network's part by it."""
    from .held_out import blend_weight
    from .pipeline import build_solver
    from .problem import in_layout

    request = solver.request
    full = yield from solver.run()
    del solver  # its network and optimiser state: not held beside the next fit's
    y1, y2 = split(request.image, request.seed)
    solver = build_solver(replace(request, image=y1), device, cancel=cancel)
    steps = solver.run()
    try:
        while True:
            try:
                step = next(steps)
            except StopIteration as stop:
                half = stop.value
                break
            # numbered on from the first fit's steps, so progress and plots run on
            yield replace(step, preview=None, stage="validation",
                          run_iteration=full.iterations + step.iteration,
                          run_total=full.iterations + step.total,
                          run_elapsed=full.elapsed + step.elapsed)
    finally:
        steps.close()
    # the weight's sums do not depend on the layout: y1's estimates and y2 in the result's
    weight = blend_weight(half.image, in_layout(anscombe_bm3d(y1), request),
                          in_layout(y2, request))
    classical = in_layout(anscombe_bm3d(request.image), request)
    image = (weight * full.image + (1 - weight) * classical).astype(np.float32)
    parameters = {**full.parameters, "classical": CLASSICAL,
                  "classical_blend_weight": weight,
                  "validation_iterations": half.iterations}
    spread = None if full.uncertainty is None else \
        (weight * full.uncertainty).astype(np.float32)
    return replace(full, image=image, parameters=parameters, uncertainty=spread)

