"""The network's estimate blended with the classical method's, the weight chosen on data the
estimates have not seen (data thinning), so a run does not end below the free method.

Four blends (:func:`blend_for` picks one from the built solver, DIP's or DeepRED's: both
methods have the ``blend`` option):

- **Photon counts** (denoising of whole counts, stopped by the Poisson discrepancy
  principle): with Anscombe + BM3D. Each count y splits into y1 ~ Binomial(y, 1/2) and
  y2 = y - y1, two independent Poisson images of half the rate (data thinning: Leiner, Duan,
  Wasserman and Ramdas, "Data fission", JASA 2023; Neufeld, Dharamshi, Gao and Witten, "Data
  thinning for convolution-closed distributions", JMLR 2024).
- **Gaussian noise** (denoising stopped by the discrepancy principle at a noise level
  sigma, given or estimated): with BM3D at sigma. With z ~ N(0, sigma^2) drawn here,
  y1 = y + z and y2 = y - z carry independent noise of variance 2 sigma^2 (data fission,
  Leiner et al. 2023, Gaussian case).
- **Deblurring with Gaussian noise and a circular boundary** (a 2-D kernel, the
  default stopping; synthetic data blurred with wrap-around): with scikit-image's self-tuned
  Wiener filter, averaged with a fixed weight (:data:`DEBLUR_WEIGHT`; the noise level is
  unknown, so there is no validation data). A valid boundary (real images) keeps the
  network alone: the Wiener filter's wrap-around rings there.
- **Photon-count deconvolution** (deblurring of whole counts, Poisson rule): with
  Richardson-Lucy (Richardson 1972, Lucy 1974) on the reflect-padded measurement, its
  iteration count the one whose blurred estimate of y1 best predicts y2. Here the weight
  is fixed (:data:`DECONVOLUTION_WEIGHT`): through the blur, y2 only checks what the PSF
  passes, and the weight chosen there was off by up to 0.4 from the truth's.

For the two denoising blends both methods restore y1 (a second network fit, its steps
marked ``stage="validation"``); the weight whose combination predicts y2 best (least
squares, clipped to [0, 1]: y2's noise is independent of both predictions, so it adds the
same to every weight's error) is then applied to the two estimates of the whole data.

Single images and the planes of a stack (``mode="slices"``, whole planes) blend; a stack
fits the validation data of its first blended plane only and blends every plane at that
weight (:mod:`napari_dip.drivers`). Tiles and volumes keep the network's estimate.

Measured (``benchmarks/results/quality.md``, ``deconvolution.md``, 2026-12-07): photon counts
(the cell, peak 30) 28.94 dB against Anscombe + BM3D 28.82 and the network's 28.41; Gaussian
noise (sigma 25/255, 96 px crops, one fit plus the validation fit, two threads) camera
28.37 / astronaut 31.12 / barbara 29.11 against (C)BM3D 28.31 / 31.02 / 29.09 (the network
alone 27.46 / 30.12 / 27.29; with one thread the thinned weights were 0.21 / 0.27 / 0.00
against the truth's 0.23 / 0.25 / 0.05); photon-count deconvolution +0.59 to +0.66 dB over
Richardson-Lucy at the truth's best iteration count on the benchmark's three 2-D scenes
(+0.22 to +0.62 on six others); circular deblurring of the camera crop 26.94 / 25.20
(Gaussian / box blur) against the self-tuned Wiener's 26.16 / 25.11 and the network's
25.65 / 22.79. DeepRED (since 2026-12-07, same crops): denoising with NLM 28.37 / 31.08 /
29.16 dB and with BM3D as its denoiser 28.39 / 31.12 / 29.17 (alone 27.37-30.00); circular
deblurring 26.98 / 25.32 (alone 25.67 / 22.92).

Torch-free (the solvers' rules are imported where a solver is checked).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, replace

import numpy as np

from .cancel import raise_if_cancelled
from .records import Result, Step, map_steps

#: Share of each count given to the validation half.
SHARE = 0.5
#: The network's share of a photon-count deconvolution (no validation fit): the weights the
#: truth would choose for two fits and Richardson-Lucy were 0.37-0.78 over the benchmark's
#: three scenes and three seeds (``benchmarks/results/deconvolution.md``); 0.5 lost at most
#: 0.25 dB to them.
DECONVOLUTION_WEIGHT = 0.5
#: The classical methods by their record name (``classical``), in words.
LABELS = {"anscombe-bm3d": "Anscombe + BM3D", "bm3d": "BM3D",
          "richardson-lucy": "Richardson-Lucy", "wiener": "Wiener (self-tuned)"}
#: The network's share of a deblurred image with Gaussian noise, blended with the
#: self-tuned Wiener filter (no validation data: its noise level is unknown). On the quality
#: benchmark's camera crop the truth's weights were 0.40 (Gaussian blur) and 0.28 (9x9 box).
DEBLUR_WEIGHT = 0.5
#: Richardson-Lucy iteration counts tried on the thinned half (cheap: no network).
RL_ITERATIONS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)


@dataclass(frozen=True)
class Blend:
    """One classical method blended with the network's estimate.

    ``estimate(data, request)`` gives the classical estimate of ``data`` (C, ...) in its
    units; ``split(request)`` the validation data (y1, y2, the validation request's changes),
    or None where the weight is ``fixed``."""

    name: str  # the record's ``classical`` (a key of LABELS)
    estimate: Callable[[np.ndarray, object], np.ndarray]
    split: Callable[[object], tuple[np.ndarray, np.ndarray, dict]] | None = None
    fixed: float | None = None


def gaussian_blend_planned(task: str, method: str, noise: str, whole_planes: bool,
                           early_stop, patience, noise_sigma, options) -> bool:
    """Whether a run blends with BM3D, from the request alone: DIP or DeepRED denoising of
    whole 2-D planes (a single image or a stack's planes, not tiles or volumes) with Gaussian
    noise, stopped at a noise level (early stopping on, no ES-WMV patience, ``noise_sigma``
    not None), its ``blend`` option on. DIP's ``ensemble="auto"`` is then one fit: the
    validation fit takes the second fit's time, and two fits blended gained nothing over
    one (within 0.02 dB on the quality benchmark's three crops)."""
    return (task == "denoise" and blends(method) and noise == "gaussian" and whole_planes
            and early_stop is True and patience is None and noise_sigma is not None
            and options.get("blend", True))


def blends(method: str) -> bool:
    """Whether ``method`` (a name in :data:`~napari_dip.methods.METHODS`) has the ``blend``
    option."""
    from .methods import METHODS

    return any(option.name == "blend" for option in METHODS[method].options)


def blend_for(solver) -> Blend | None:
    """The blend of a DIP or DeepRED run of one 2-D image or plane (its built solver), or
    None: the network's estimate alone: ``blend=False``; volumes (tiles: the driver does
    not ask); ``early_stop=N`` (ES-WMV) and ``early_stop=False``; for the denoising blends
    and photon-count deconvolution also ``noise_sigma=None`` and scaled intensities (where
    neither split is exact)."""
    from .stabilisers import Discrepancy, PoissonDiscrepancy

    r = solver.request
    if not blends(r.method) or r.image.ndim != 3 or not r.options.get("blend", True):
        return None
    counts = isinstance(solver.stopping, PoissonDiscrepancy)
    if r.task == "denoise" and counts:
        return Blend("anscombe-bm3d", lambda y, _: anscombe_bm3d(y),
                     split=split_counts)
    if r.task == "deblur" and counts and r.kernel is not None and r.kernel.ndim == 2:
        return Blend("richardson-lucy", richardson_lucy_thinned,
                     fixed=DECONVOLUTION_WEIGHT)
    if r.task == "deblur" and r.noise == "gaussian" and r.boundary == "circular" \
            and r.kernel is not None and r.kernel.ndim == 2 and r.early_stop \
            and r.patience is None:
        return Blend("wiener", unsupervised_wiener, fixed=DEBLUR_WEIGHT)
    if r.task == "denoise" and isinstance(solver.stopping, Discrepancy) \
            and solver.noise_sigma is not None and gaussian_blend_planned(
                r.task, r.method, r.noise, True, r.early_stop, r.patience, r.noise_sigma,
                r.options):
        return Blend("bm3d", bm3d_at_sigma, split=split_gaussian)
    return None


def applies(solver) -> bool:
    """Whether a single-image run (its built solver) blends: :func:`blend_for` finds one."""
    return blend_for(solver) is not None


# -- classical estimates ---------------------------------------------------------------------
def anscombe_bm3d(counts: np.ndarray) -> np.ndarray:
    """Anscombe + BM3D of ``counts`` (C, H, W): the variance-stabilising transform
    2 sqrt(y + 3/8) (Anscombe 1948), BM3D at unit noise (colour through its RGB entry point)
    and the closed-form approximation of the exact unbiased inverse (Makitalo and Foi, IEEE
    TIP 2011)."""
    from .denoisers import _bm3d

    d = np.maximum(_bm3d(2 * np.sqrt(counts + 3 / 8), 1.0), 1e-3)  # its inverse divides by d
    return np.maximum((d / 2) ** 2 + 0.25 * np.sqrt(1.5) / d - 11 / 8 / d ** 2
                      + 5 / 8 * np.sqrt(1.5) / d ** 3 - 1 / 8, 0.0)


def bm3d_at_sigma(image: np.ndarray, request) -> np.ndarray:
    """BM3D of ``image`` (C, H, W) at the request's ``noise_sigma`` (image units; colour
    through BM3D's RGB entry point, other channels one at a time), run on the image mapped
    to [0, 1] by its own range and mapped back."""
    from .denoisers import _bm3d

    low, high = float(image.min()), float(image.max())
    scale = high - low if high > low else 1.0
    out = _bm3d((image - low) / scale, float(request.noise_sigma) / scale)
    return np.asarray(out, np.float64) * scale + low


def richardson_lucy_steps(data: np.ndarray, kernel: np.ndarray, counts) -> dict:
    """Richardson-Lucy estimates of ``data`` (H, W, non-negative) blurred by ``kernel`` (2-D,
    sum 1) after each number of iterations in ``counts``: {n: estimate (H, W)}. The data are
    padded by reflection by the kernel's half-width first (and the estimates cropped back),
    which spares the zero boundary's artefacts. The multiplicative update
    x <- x * K^T (y / K x) (Richardson 1972, Lucy 1974), from a flat start at half the
    data's maximum, as scikit-image's ``richardson_lucy`` (0.5 on data scaled by it)."""
    from scipy.signal import fftconvolve

    half = [n // 2 for n in kernel.shape]
    y = np.pad(np.asarray(data, np.float64), [(h, h) for h in half], mode="reflect")
    crop = tuple(slice(h, h + n) for h, n in zip(half, data.shape, strict=True))
    mirrored = kernel[::-1, ::-1]
    tiny = 1e-12 * max(float(y.max()), 1.0)
    x = np.full_like(y, 0.5 * max(float(y.max()), tiny))
    out, wanted = {}, set(counts)
    for n in range(1, max(counts) + 1):
        ratio = y / np.maximum(fftconvolve(x, kernel, mode="same"), tiny)
        x = x * fftconvolve(ratio, mirrored, mode="same")
        if n in wanted:
            out[n] = x[crop].copy()
    return out


def unsupervised_wiener(image: np.ndarray, request) -> np.ndarray:
    """scikit-image's self-tuned Wiener-Hunt deconvolution (its noise and prior levels drawn
    by a Gibbs sampler: Orieux, Giovannelli and Rodet, JOSA A 2010) of ``image`` (C, H, W)
    with the request's kernel, each channel mapped to [0, 1] by its own range (and back),
    the sampler seeded by the request's seed. Its FFTs wrap around: the model of a circular
    boundary only (on a 64 px crop blurred with a valid boundary it fell 9-17 dB below the
    blurred input, reflection padding or not)."""
    from skimage.restoration import unsupervised_wiener as wiener

    out = []
    for channel in image:
        low, high = float(channel.min()), float(channel.max())
        scale = high - low if high > low else 1.0
        estimate = wiener((channel - low) / scale, request.kernel, clip=False,
                          rng=np.random.default_rng([request.seed, 7]))[0]
        out.append(np.asarray(estimate, np.float64) * scale + low)
    return np.stack(out)


def _valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    return fftconvolve(x, kernel, mode="valid")


def richardson_lucy_thinned(counts: np.ndarray, request) -> np.ndarray:
    """Richardson-Lucy of ``counts`` (C, H, W) with the request's kernel, each channel at the
    iteration count (of :data:`RL_ITERATIONS`) whose estimate of one thinned half best
    predicts the other inside the image (where the blur of an image-sized estimate is
    defined). On the deconvolution benchmark's 2-D scenes it picked 3-10 iterations where
    the truth's best was 3-10 (within 0.3 dB of it)."""
    kernel = request.kernel
    y1, y2 = split(counts, request.seed)
    inner = tuple(slice(n // 2, n // 2 + m - n + 1)
                  for n, m in zip(kernel.shape, counts.shape[1:], strict=True))
    out = []
    for channel, half, other in zip(counts, y1, y2, strict=True):
        tries = richardson_lucy_steps(half, kernel, RL_ITERATIONS)
        error = {n: float(np.sum((_valid(x, kernel) - other[inner]) ** 2))
                 for n, x in tries.items()}
        best = min(error, key=error.get)
        out.append(richardson_lucy_steps(channel, kernel, (best,))[best])
    return np.stack(out)


# -- splits ----------------------------------------------------------------------------------
def split(counts: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Binomial thinning: (y1, y2), y1 ~ Binomial(counts, SHARE), y2 = counts - y1; both
    whole, non-negative, of counts' shape and dtype (a numpy generator of its own)."""
    whole = np.rint(counts).astype(np.int64)
    half = np.random.default_rng([seed, 7]).binomial(whole, SHARE)
    return half.astype(counts.dtype), (whole - half).astype(counts.dtype)


def split_counts(request) -> tuple[np.ndarray, np.ndarray, dict]:
    """The request's counts thinned (:func:`split`); the validation run needs no change."""
    return (*split(request.image, request.seed), {})


def split_gaussian(request) -> tuple[np.ndarray, np.ndarray, dict]:
    """Data fission of Gaussian noise of the request's ``noise_sigma`` s: y + z and y - z
    with z ~ N(0, s^2) (a numpy generator of its own), whose noises (variance 2 s^2 each)
    are independent; the validation run stops at that noise level, s * sqrt(2)."""
    sigma = float(request.noise_sigma)
    z = np.random.default_rng([request.seed, 7]).normal(0.0, sigma, request.image.shape)
    return request.image + z, request.image - z, {
        "noise_sigma": sigma * np.sqrt(2), "noise_sigma_estimated": False}


# -- the run ---------------------------------------------------------------------------------
def blended_run(solver, device, cancel=None) -> Generator[Step, None, Result]:
    """The run of a solver that :func:`blend_for` blends (built, so its errors come before
    the first step): the network's fit (its steps and previews); for a blend with a split,
    the fit of the validation data (steps with ``stage="validation"`` and no preview) and
    the weight; then the blend (:func:`blended`)."""
    blend = blend_for(solver)
    request = request_to_blend(solver)
    full = yield from solver.run()
    del solver  # its network and optimiser state: not held beside the next fit's
    weight, validation_iterations = yield from weight_for(blend, request, full, device, cancel)
    return blended(blend, request, full, weight, validation_iterations, cancel)


def request_to_blend(solver):
    """The solver's request with the noise level its run stops at (estimated or given):
    the one the classical estimate and the validation split use."""
    if solver.noise_sigma is None:
        return solver.request
    return replace(solver.request, noise_sigma=solver.noise_sigma)


def weight_for(blend: Blend, request, full: Result, device, cancel=None
               ) -> Generator[Step, None, tuple[float, int]]:
    """(the network's share, the validation fit's iterations): the fixed weight, or the
    one a validation fit chooses (its steps yielded with ``stage="validation"``)."""
    if blend.split is None:
        return float(blend.fixed), 0
    return (yield from _validated_weight(blend, request, full, device, cancel))


def blended(blend: Blend, request, full: Result, weight: float, validation_iterations: int,
            cancel=None) -> Result:
    """``full`` (the network's result of ``request``) blended with the classical estimate
    at the network's share ``weight``. The result's ``parameters`` add ``classical``,
    ``classical_blend_weight`` (in [0, 1]) and ``validation_iterations`` (0 without a
    validation fit); its ``uncertainty`` (ensembles) is the members' spread times that
    weight, as the blend scales the network's part."""
    from .problem import Scaling, in_layout

    raise_if_cancelled(cancel, " before the classical estimate")
    scaling = Scaling.fit(request.image, request.noise, request.value_range)
    classical = in_layout(np.clip(blend.estimate(request.image, request), scaling.low,
                                  scaling.high), request)  # the data's range, as the network's
    image = (weight * full.image + (1 - weight) * classical).astype(np.float32)
    parameters = {**full.parameters, "classical": blend.name,
                  "classical_blend_weight": weight,
                  "validation_iterations": validation_iterations}
    spread = None if full.uncertainty is None else \
        (weight * full.uncertainty).astype(np.float32)
    return replace(full, image=image, parameters=parameters, uncertainty=spread)


def _validated_weight(blend: Blend, request, full: Result, device, cancel
                      ) -> Generator[Step, None, tuple[float, int]]:
    """(the network's share, the validation fit's iterations): both methods restore y1, the
    least-squares weight of their blend predicting y2 (:func:`~napari_dip.held_out.
    blend_weight`)."""
    from .held_out import blend_weight
    from .pipeline import build_solver
    from .problem import in_layout

    y1, y2, changes = blend.split(request)
    half_request = replace(request, image=y1, **changes)
    solver = build_solver(half_request, device, cancel=cancel)
    # numbered on from the first fit's steps, so progress and plots run on
    half = yield from map_steps(solver.run(), lambda step: replace(
        step, preview=None, stage="validation", run_iteration=full.iterations + step.iteration,
        run_total=full.iterations + step.total, run_elapsed=full.elapsed + step.elapsed))
    # the weight's sums do not depend on the layout: y1's estimates and y2 in the result's
    raise_if_cancelled(cancel, " before the classical estimate")
    weight = blend_weight(half.image, in_layout(blend.estimate(y1, half_request), request),
                          in_layout(y2, request))
    return weight, half.iterations
