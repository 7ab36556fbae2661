"""The public entry points: :func:`restore` and its generator twin :func:`iterate`."""

from __future__ import annotations

from collections.abc import Generator

from .cancel import RunCancelled, check_cancel
from .records import Result, Step
from .request import build_plan

_DOC_ARGS = """
    Parameters
    ----------
    image:
        The degraded image: 2-D (Y, X), or 3-D with ``channel_axis`` naming the channel axis
        (e.g. -1 for RGB), or any stack, time series or volume with ``axes``. Any real dtype
        (uint8, uint16, float, negative values allowed); at least 16 pixels on each side.
        Never modified.
    task:
        ``"denoise"``, ``"inpaint"``, ``"super_resolution"``, ``"deblur"`` or
        ``"flash_no_flash"``.
    method:
        ``"dip"`` (Deep Image Prior) or ``"deepred"`` (DIP + Regularization by Denoising).
    mask:
        Inpainting only: (Y, X) array, nonzero at the pixels to fill (stacks: the image's
        shape without channels, or one plane's (volume's) shape for every plane).
    factor:
        Super-resolution only: 2, 4 or 8 (along Y and X); with ``mode="volume"`` 2 to 8
        along Z (thick slices made thin).
    kernel:
        Deblurring (deconvolution) only: ``"gaussian"`` (25x25, sigma 1.6 px, the default),
        ``"uniform"`` (9x9 box), a 2-D array, or with ``mode="volume"`` a 3-D (Z, Y, X) PSF
        sampled like the stack (a measured bead, or :func:`napari_dip.psf` from the
        objective's parameters). Arrays are normalised to sum 1; they must be no larger than
        the image, finite, non-negative and centred (centre of mass within 1 px, or a tenth
        of the size, of the centre pixel ``size // 2``).
    boundary:
        Deblurring only: ``"valid"`` (default) restores an estimate that reaches beyond the
        image by the kernel's half-width and compares only its blur's valid part with the
        image, so real images, whose opposite edges differ, do not ring at their edges;
        ``"circular"`` takes the blur to wrap around the edges (synthetic data blurred that
        way; it cannot be tiled). Tiles of a deblurring run overlap by at least the
        kernel's size.
    flash:
        Flash/no-flash only: the flash shot, same shape as ``image`` (the no-flash shot); it is
        also the network's input.
    iterations:
        Iteration limit; None takes the preset's.
    early_stop:
        True: stop at the noise level when there is one (see ``noise_sigma``; photon
        counts, ``noise="poisson"`` with whole-number data: when the counts scatter about
        the estimated rate no more than Poisson noise would), otherwise by ES-WMV
        (windowed moving variance, window 100): once the variance has not reached a new
        minimum for a quarter of the iteration limit (at least 200, at most 1000
        steps), return the estimate at the minimum. An integer sets that patience in
        iterations and asks for ES-WMV. False runs every iteration and returns the last
        estimate.
    noise_sigma:
        Standard deviation of Gaussian noise in the image's own units (8-bit data with
        noise of 25 grey levels: 25). Given, DIP (and DeepRED) stops as soon as the mean
        squared residual of its last 20 steps falls to the noise variance (the discrepancy
        principle) and returns that estimate. ``"auto"`` (default): estimated from the
        image (wavelet, patch-covariance and weak-texture estimates,
        :func:`napari_dip.noise_levels.gaussian_sigma`) when denoising, ES-WMV for the
        other tasks (Poisson and Rician noise: their own noise levels, see
        ``early_stop``). None: always ES-WMV.
    preset:
        ``"fast"`` (small network, laptop friendly, default) or ``"paper"`` (the DIP paper's
        per-task settings).
    seed:
        Seeds network weights, input and perturbations; CPU runs repeat bit for bit.
    ensemble:
        Number of fits to average, 1 to 64 (``method="dip"``, 2-D planes and tiles; not
        ``mode="volume"``), or ``"auto"`` (default): 2 when DIP denoises (Gaussian or Poisson
        noise) or super-resolves, to planes of at most 100 x 100 pixels (untiled), where
        two fits gained 0.3-0.9 dB over one (barbara's x4 super-resolution: nothing) for
        1.15-1.7 times the time (``benchmarks/results/quality.md``), else 1;
        the number used is in ``result.parameters["ensemble"]``. K > 1 runs K fits with
        seeds ``seed``, ``seed + 1``, ... as one batched network (grouped convolutions;
        member k starts as the single run with seed + k would), returns their mean as
        ``result.image`` and their per-pixel standard deviation as ``result.uncertainty``;
        the noise-level rule stops when the members' mean data term reaches the noise
        level (where each fit would stop alone). Costs about K times the memory.
    device:
        ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
        ``"mps"``. A device this machine lacks raises ValueError listing those it has.
    channel_axis:
        Axis of ``image`` holding colour/channels, or None for grey images.
    noise:
        ``"gaussian"`` (squared error) or ``"poisson"`` (negative log-likelihood for photon
        counts; needs non-negative data).
    preview_every:
        Put the current estimate into every N-th :class:`Step` (None: only the last step).
    axes:
        Stacks, time series and volumes: one letter per axis of ``image`` -- ``T`` (time),
        ``Z`` (depth), ``Y`` and ``X`` (the plane, required) and ``C`` (channels), e.g.
        ``"ZYX"``, ``"TZYX"``, ``"TYXC"``. None: a 2-D image (with ``channel_axis``). Use
        either ``axes`` or ``channel_axis``.
    mode:
        With a Z axis: ``"slices"`` (default) restores each plane with the 2-D network,
        ``"volume"`` restores each volume at once with the 3-D network (denoise, inpaint with
        a 3-D mask, super-resolution along Z by ``factor``: thick slices made thin, 3-D
        deconvolution with a 3-D ``kernel``). T is always run one time point after the
        other.
    tile:
        Large planes: restore them in overlapping tiles of this many pixels, blended with
        smooth weights; ``"auto"`` picks the largest tile that fits the device's memory (no
        tiling if the whole plane fits); None (default): no tiling, and a ValueError before
        the run if the image will not fit.
    overlap:
        Pixels shared by neighbouring tiles (default: a quarter of the tile, at least 16).
    warm_start:
        Stacks and tiles: start each part after the first from the previous part's network
        weights and run a quarter of the iterations (True, the default), start every part
        afresh (False), or give the warm parts' iterations (an integer).
    spacing:
        ``mode="volume"``: the (z, y, x) voxel size; Z is then not downsampled in the 3-D
        network while a voxel is more than twice as long along Z as across.
    cancel:
        A :class:`threading.Event` (or None): set it from another thread to end the run
        before its next iteration (also while DeepRED waits for its denoiser), with
        :class:`~napari_dip.cancel.RunCancelled`.
    **options:
        Method-specific settings (see the method's documentation).
"""


def iterate(image, task: str = "denoise", method: str = "dip", *, cancel=None, **kwargs
            ) -> Generator[Step, None, Result]:
    """Run a restoration step by step.

    Validates every argument at once (raising ValueError before any work), then returns a
    generator that yields a :class:`~napari_dip.records.Step` per iteration and returns the
    :class:`~napari_dip.records.Result` (``result = yield from iterate(...)``, or the
    ``StopIteration.value``). Closing the generator cancels the run cleanly.

    Stacks, volumes and tiled images are restored part after part; their steps say which
    part (``step.plane`` of ``step.planes``, ``step.tile`` of ``step.tiles``) and how far the
    whole run is (``step.run_iteration`` of ``step.run_total``); a step's preview is its
    part's estimate and ``step.region`` where it goes in the result.
    """
    from .drivers import run

    check_cancel(cancel)
    return run(build_plan(image, task, method, **kwargs), cancel)


def validate(image, task: str = "denoise", method: str = "dip", *, cancel=None,
             **kwargs) -> None:
    """Make every check :func:`iterate` makes on the arguments, without starting a run and
    without torch: raises the same ValueError. (The device and its memory are checked when
    the run starts.) Nothing is copied: the image is only read.

    What passes here is refused later only for the machine's sake (the device, its memory)
    or by the run itself (a loss that diverges, a denoiser that fails or hangs)."""
    check_cancel(cancel)
    build_plan(image, task, method, **kwargs)


def restore(image, task: str = "denoise", method: str = "dip", **kwargs) -> Result:
    """Restore ``image`` and return a :class:`~napari_dip.records.Result`.

    ``result.image`` is float32 in the input's value range, same shape and axis order as the
    input (Y and X multiplied by ``factor`` for super-resolution; Z in ``mode="volume"``).
    """
    from .drivers import drain

    return drain(iterate(image, task, method, **kwargs))


iterate.__doc__ += _DOC_ARGS
restore.__doc__ += _DOC_ARGS

__all__ = ["iterate", "restore", "validate", "Result", "RunCancelled", "Step"]
