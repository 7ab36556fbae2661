"""The one validation path: every argument of :func:`napari_dip.restore` (``iterate``,
``validate``) is checked here, for a single image and for stacks, volumes and tiles alike,
as a ValueError that names the problem and the fix, before any work starts. Pure numpy.

:func:`build_plan` returns the :class:`~napari_dip.plan.Plan` of the run (a single image is a
plan of one part); :func:`build_request` the :class:`~napari_dip.plan.Request` of a single
image. The caller's arrays are only read: the plan keeps views, copies are made per part
when it runs. What a task needs and allows is read from :mod:`napari_dip.tasks`, what a
method takes from :mod:`napari_dip.methods`.
"""

from __future__ import annotations

import inspect
import numbers
from dataclasses import replace

import numpy as np

from .kernels import blur_kernel, kernel_offset
from .methods import METHODS, Method, get_method, noise_level_applies
from .plan import Plan, Request
from .presets import PRESETS, get_preset
from .stacks import (
    MIN_DEPTH,
    Layout,
    axes_from_channel_axis,
    check_spacing,
    check_tile,
    check_warm_start,
    parse_axes,
    runs_in_parts,
)
from .tasks import (
    BOUNDARIES,
    NOISE_MODELS,
    TASKS,
    Task,
    choice,
    get_noise_model,
    get_task,
    tasks_needing,
)
from .thinning import gaussian_blend_planned

#: Smallest image side, in pixels, that a run accepts.
MIN_SIZE = 16
#: Super-resolution factors in-plane (the task registry's).
SR_FACTORS = TASKS["super_resolution"].factors


#: Largest seed: torch takes seeds up to 2**64 - 1, numpy's SeedSequence any size; the
#: run's records keep it as a signed 64-bit integer.
MAX_SEED = 2**63 - 1
#: Most fits an ensemble averages (``ensemble=``).
MAX_ENSEMBLE = 64
#: ``ensemble="auto"`` (the default) averages this many fits where DIP restores planes of
#: at most AUTO_ENSEMBLE_MAX_PIXELS pixels (the estimate's: a super-resolved plane counts
#: at its output size) for a (task, noise model) of AUTO_ENSEMBLE_CASES, and one fit
#: otherwise. On the 96 px crops of ``benchmarks/quality.py`` two fits gained, over one:
#: Gaussian denoising 0.29-0.32 dB (camera, astronaut, barbara) for 1.3-1.7 times the wall
#: time (47-59 s on a 2-core CPU), small networks leaving threads idle; super-resolution x4
#: +0.27, +0.27 and -0.01 dB for 1.15-1.5 times; Poisson denoising (the cell at peak 30,
#: Hubble crops of 64 and 96 px, ``benchmarks/results/poisson-stopping.md``) +0.35 to +0.89
#: dB; photon-count deconvolution (``benchmarks/deconvolution.py``'s three 2-D scenes, 44-64
#: px) +0.50, +0.56 and +1.04 dB for about twice the time. Deblurring with Gaussian noise
#: gained 0.04-0.14 dB for 1.5 times the time: one fit. A 128 px plane takes 40-55 s with
#: one fit, so two would pass a minute. Tasks and noise models not measured with ensembles
#: (inpainting, Rician noise) fit once. Gaussian denoising that blends with BM3D
#: (:mod:`napari_dip.thinning`) fits once: its validation fit takes the second fit's time.
AUTO_ENSEMBLE = 2
AUTO_ENSEMBLE_MAX_PIXELS = 100 * 100
AUTO_ENSEMBLE_CASES = frozenset({("denoise", "gaussian"), ("denoise", "poisson"),
                                 ("super_resolution", "gaussian"), ("deblur", "poisson")})
#: Fewest distinct float32 values the result must be able to take across the image's range
#: (the result is float32): below this, the data must be offset or scaled first.
MIN_LEVELS = 256
_FLOAT32 = np.finfo(np.float32)


# -- single arguments -----------------------------------------------------------------------
def plain(value):
    """A numpy scalar (``np.int64(3)``, ``np.True_``) as the Python value it holds; anything
    else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def as_numpy(array, what: str):
    """A torch tensor as a numpy view (detached from autograd, moved to the CPU); anything
    else unchanged. torch is not imported: a tensor is recognised by its type."""
    kind = type(array)
    if kind.__module__.split(".")[0] == "torch" and hasattr(array, "detach"):
        try:
            return array.detach().cpu().numpy()
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"{what} is a torch tensor numpy cannot read ({exc}); pass "
                             f"{what}.detach().cpu().float().numpy()") from None
    return array


def check_array(array, what: str) -> np.ndarray:
    """``array`` as a numeric numpy array (not copied), refusing what no run can use."""
    array = as_numpy(array, what)
    if isinstance(array, (str, bytes)):
        raise ValueError(f"{what} must be a numeric array, got a string ({array[:40]!r})")
    try:
        a = np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be a numeric array; numpy cannot read it ({exc})") \
            from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"{what} must be a numeric array, got dtype {a.dtype}")
    if np.iscomplexobj(a):
        raise ValueError(f"{what} is complex; pass its magnitude (np.abs) or real part instead")
    if a.size == 0:
        raise ValueError(f"{what} is empty (shape {a.shape}); pass an image of at least "
                         f"{MIN_SIZE}x{MIN_SIZE} pixels")
    return a


def _unused(name: str, task: Task) -> ValueError:
    users = " or ".join(f"task={t!r}" for t in tasks_needing(name))
    return ValueError(f"{name} is only used by {users}, not task={task.name!r}; drop it")


def check_factor(task: Task, factor, allowed=None) -> int:
    """The super-resolution factor (1 for tasks without one), checked."""
    if not task.needs("factor"):
        if factor not in (None, 1):
            raise _unused("factor", task)
        return 1
    allowed = allowed or task.factors
    names = ", ".join(map(str, allowed[:-1])) + f" or {allowed[-1]}"
    if factor is None:
        raise ValueError(f"task={task.name!r} needs factor={names}")
    if isinstance(factor, bool) or not isinstance(factor, numbers.Integral) \
            or int(factor) not in allowed:
        raise ValueError(f"super-resolution factor must be {names}, got {factor!r}")
    return int(factor)


def check_kernel(task: Task, kernel, spatial: tuple[int, ...], volume: bool = False):
    """(kernel array or None, kernel name or None), checked against a part's spatial shape
    ((H, W), or (D, H, W) with ``volume``): 2-D, or 3-D (Z, Y, X) for ``mode="volume"``;
    finite, non-negative, normalised here to sum 1; no larger than the image; centred (its
    centre of mass at most :func:`max_kernel_offset` pixels from its centre)."""
    if not task.needs("kernel"):
        if kernel is not None:
            raise _unused("kernel", task)
        return None, None
    if kernel is None:
        kernel = "gaussian"
    if not isinstance(kernel, str):
        kernel = check_array(kernel, "kernel")
        if kernel.ndim == 3 and not volume:
            raise ValueError(
                f"kernel is 3-D (shape {kernel.shape}), a PSF for 3-D deconvolution: restore "
                "the Z-stack with axes='ZYX', mode='volume' (command line: --axes ZYX --mode "
                "volume), or give a 2-D kernel (one plane of the PSF) to deblur plane by "
                "plane")
    k = blur_kernel(kernel, ndims=(2, 3) if volume else (2,))
    names = ("Z", "Y", "X")[-k.ndim:]
    image = spatial[-k.ndim:]
    if any(n > m for n, m in zip(k.shape, image, strict=True)):
        size, room = "x".join(map(str, k.shape)), "x".join(map(str, image))
        raise ValueError(
            f"blur kernel is {size} but the image is only {room} "
            f"({', '.join(names)}); use a smaller kernel or a larger image")
    offsets = kernel_offset(k)
    for name, n, off in zip(names, k.shape, offsets, strict=True):
        if abs(off) > max_kernel_offset(n):
            raise ValueError(
                f"kernel is off-centre: its centre of mass lies {off:+.1f} px from its "
                f"centre along {name} (size {n}), so the result would be shifted by as "
                f"much; crop the PSF around its peak (e.g. np.roll it to the centre) so "
                f"that it lies within {max_kernel_offset(n):.1f} px of the centre, and "
                "subtract the background of a measured bead first")
    return k, kernel if isinstance(kernel, str) else "custom"


def max_kernel_offset(size: int) -> float:
    """Farthest a kernel's centre of mass may lie from its centre along an axis of ``size``
    pixels: 1 px, or a tenth of the size (aberrated PSFs are asymmetric)."""
    return max(1.0, 0.1 * size)


def check_boundary(task: Task, boundary, tile) -> str | None:
    """The blur's boundary (``"valid"``, the default, or ``"circular"``); None for tasks
    without one. A circular blur wraps around the borders of each tile: not tiled."""
    if not task.needs("boundary"):
        if boundary is not None:
            raise _unused("boundary", task)
        return None
    if boundary is None:
        return "valid"
    choice("boundary", boundary, dict.fromkeys(BOUNDARIES))
    if boundary == "circular" and tile is not None:
        raise ValueError(
            f"task={task.name!r} cannot be tiled with boundary='circular': its blur wraps "
            "around the borders of what it restores, which would leave seams between "
            "tiles; use boundary='valid' (the default) or restore the whole image "
            "(tile=None)")
    return boundary


def kernel_overlap(kernel: np.ndarray | None, boundary: str | None, tile, overlap) -> int:
    """The least overlap of a tiled run's tiles: the kernel's in-plane size (a tile's
    border pixels depend on pixels outside it), else 0. Refuses a smaller overlap, or tiles
    too small to overlap by that much."""
    if kernel is None or boundary != "valid" or tile is None:
        return 0
    least = int(max(kernel.shape[-2:]))
    size = "x".join(map(str, kernel.shape))
    if overlap is not None and overlap < least:
        raise ValueError(
            f"overlap={overlap} is smaller than the blur kernel ({size} px): the tiles of a "
            f"deblurring run must overlap by at least the kernel's size, since a tile's "
            f"border pixels depend on pixels outside it; use overlap>={least}")
    if isinstance(tile, int) and tile // 2 < least:
        raise ValueError(
            f"tile={tile} is too small for the blur kernel ({size} px): tiles must overlap "
            f"by the kernel's size, at most half a tile; use tile>={2 * least}")
    return least


def check_numbers(iterations, preview_every, early_stop, seed):
    """(iterations, preview_every, patience, seed), checked."""
    if iterations is not None:
        if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) \
                or iterations < 1:
            raise ValueError(f"iterations must be a positive integer or None (preset default), "
                             f"got {iterations!r}")
        iterations = int(iterations)
    if preview_every is not None:
        if isinstance(preview_every, bool) or not isinstance(preview_every, numbers.Integral) \
                or preview_every < 1:
            raise ValueError(f"preview_every must be a positive integer or None, "
                             f"got {preview_every!r}")
        preview_every = int(preview_every)
    patience = None
    early_stop = plain(early_stop)
    if not isinstance(early_stop, bool):
        if not isinstance(early_stop, numbers.Integral) or early_stop < 1:
            raise ValueError(f"early_stop must be True, False or a patience in iterations "
                             f"(a positive integer), got {early_stop!r}")
        patience = int(early_stop)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) \
            or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be a non-negative integer up to 2**63 - 1, got {seed!r}")
    return iterations, preview_every, patience, int(seed)


def auto_ensemble(method: Method, task: str, noise: str, volume: bool, part_shape,
                  tile, factor: int = 1) -> int:
    """What ``ensemble="auto"`` averages: AUTO_ENSEMBLE fits where DIP restores untiled 2-D
    planes whose estimate has at most AUTO_ENSEMBLE_MAX_PIXELS pixels (``part_shape``, the
    input plane, times ``factor`` along each axis) for a task and noise model of
    AUTO_ENSEMBLE_CASES (where it was measured), else one."""
    pixels = part_shape[-2] * part_shape[-1] * factor * factor
    small = tile is None and pixels <= AUTO_ENSEMBLE_MAX_PIXELS
    measured = method.ensemble and (task, noise) in AUTO_ENSEMBLE_CASES
    return AUTO_ENSEMBLE if measured and small and not volume else 1


def check_ensemble(ensemble, method: Method, volume: bool) -> int | str:
    """``ensemble`` (the number of fits averaged) checked: ``"auto"`` (returned as is) or
    an integer from 1 to MAX_ENSEMBLE, above 1 only for methods that run ensembles and for
    2-D parts."""
    if isinstance(ensemble, str) and ensemble.strip().lower() == "auto":
        return "auto"
    if isinstance(ensemble, bool) or not isinstance(ensemble, numbers.Integral) \
            or not 1 <= ensemble <= MAX_ENSEMBLE:
        raise ValueError(
            f"ensemble must be 'auto' or the number of fits to average, a whole number "
            f"from 1 to {MAX_ENSEMBLE} (e.g. ensemble=4: four fits, with their per-pixel standard "
            f"deviation as result.uncertainty; 1 is a single fit; 'auto', the default, "
            f"is {AUTO_ENSEMBLE} fits for DIP denoising of planes up to "
            f"{AUTO_ENSEMBLE_MAX_PIXELS} pixels (1 where it blends with BM3D), super-"
            f"resolution and photon-count deconvolution, and 1 otherwise), got {ensemble!r}")
    ensemble = int(ensemble)
    if ensemble > 1 and not method.ensemble:
        runs = " or ".join(f"method={m.name!r}" for m in METHODS.values() if m.ensemble)
        raise ValueError(
            f"ensemble={ensemble} runs with {runs} only: method={method.name!r} keeps "
            f"per-run state (DeepRED's ADMM variables and denoiser calls); use "
            f"{runs} with ensemble={ensemble}, or method={method.name!r} with ensemble=1")
    if ensemble > 1 and volume:
        raise ValueError(
            f"ensemble={ensemble} restores 2-D planes; mode='volume' runs one 3-D network: "
            f"use mode='slices' (each plane restored by an ensemble of {ensemble}) or "
            "ensemble=1 for the volume")
    return ensemble


def check_noise_sigma(noise_sigma, *, task: str, method: str, noise: str, early_stop,
                      value_range: float | None = None) -> float | str | None:
    """``noise_sigma`` checked against the other settings: "auto", None or a float > 0.

    For noise models whose likelihood needs it (Rician) it is that likelihood's sigma, not
    a level to stop at: a number or "auto" (estimated from the background), never None."""
    if get_noise_model(noise).likelihood_sigma and noise_sigma is None:
        raise ValueError(f"noise={noise!r} needs the noise's standard deviation: give "
                         "noise_sigma (in the image's units) or noise_sigma='auto' to "
                         "estimate it from the image's dark background")
    if noise_sigma is None or (isinstance(noise_sigma, str) and noise_sigma == "auto"):
        return noise_sigma
    if isinstance(noise_sigma, (bool, str)) or not isinstance(noise_sigma, numbers.Real) \
            or not np.isfinite(noise_sigma) or noise_sigma <= 0:
        raise ValueError(
            f"noise_sigma must be the noise's standard deviation in the image's units (a "
            f"positive number), 'auto' or None, got {noise_sigma!r}")
    sigma = float(noise_sigma)
    # a likelihood's own sigma (Rician) applies to every run; a level to stop at does not
    if not get_noise_model(noise).likelihood_sigma \
            and not noise_level_applies(task, method, noise, early_stop):
        raise ValueError(f"noise_sigma={sigma:g}: "
                         f"{_why_no_noise_level(task, method, noise, early_stop)}")
    if value_range is not None and sigma >= value_range:
        raise ValueError(
            f"noise_sigma={sigma:g} is not smaller than the image's whole value range "
            f"({value_range:g}); give the standard deviation in the image's units (8-bit "
            "data with noise of 25 grey levels: 25; the same data scaled to [0, 1]: 25/255)")
    return sigma


def _why_no_noise_level(task: str, method: str, noise: str, early_stop) -> str:
    """Why :func:`~napari_dip.methods.noise_level_applies` is False, as advice."""
    if not NOISE_MODELS[noise].has_sigma:
        return (f"noise={noise!r} has no standard deviation to give; drop noise_sigma "
                "(the run stops by ES-WMV)")
    if not METHODS[method].stops_at_noise_level:
        return (f"method={method!r} stops by ES-WMV, which needs no noise level; drop "
                "noise_sigma, or use method='dip'")
    if not TASKS[task].squared_residual:
        return f"task={task!r} has no noise model to compare with; drop noise_sigma"
    if early_stop is False:
        return ("early_stop=False runs every iteration, so noise_sigma (which decides when "
                "to stop) would be unused; drop one of them")
    return (f"early_stop={early_stop!r} sets ES-WMV's patience, but with noise_sigma the "
            "run stops when its residual reaches the noise level; drop one of them")


def _check_values(arr: np.ndarray, what: str = "image", nan_holes: bool = False) -> None:
    """Finite values, not all the same, and a range the float32 result can hold
    (``nan_holes``: NaN marks holes to fill and is left out; infinities are still refused).

    No copy of the image is made: NaN and infinities show in its minimum and maximum."""
    if nan_holes:
        if np.isnan(arr).all():
            raise ValueError("every pixel of the image is NaN; there is nothing to fill from")
        low, high = np.nanmin(arr), np.nanmax(arr)
        if np.isinf(low) or np.isinf(high):
            bad = int(np.count_nonzero(np.isinf(arr)))
            raise ValueError(f"{what} has {bad} infinite value(s); mask='nan' fills NaN "
                             "pixels only: set the infinite ones to NaN too to fill them")
    else:
        low, high = arr.min(), arr.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))  # only now: counting needs a mask
        raise ValueError(
            f"{what} has {bad} NaN or infinite value(s); replace them first "
            "(e.g. np.nan_to_num), or fill them: task='inpaint' with mask='nan'")
    if low == high:
        if what == "image":
            raise ValueError(f"image is constant (every pixel is {float(low):g}); there is "
                             "nothing to restore")
        raise ValueError(f"{what} is constant; it cannot guide the restoration")
    _check_range(low, high, what)


def _check_range(low, high, what: str) -> None:
    """Refuse values the float32 result cannot hold: beyond float32's range, or a spread too
    small against the values' magnitude (or in absolute terms) to tell apart in float32."""
    magnitude = max(abs(float(low)), abs(float(high)))
    if magnitude > float(_FLOAT32.max):
        raise ValueError(
            f"{what} has values up to {magnitude:.3g}, beyond float32's {_FLOAT32.max:.3g} "
            "(results are float32); scale it down first (e.g. image / image.max()) and the "
            "result back up")
    # exact for integers (int64 around 2**62 loses its spread in float64)
    spread = int(high) - int(low) if isinstance(low, np.integer) else float(high) - float(low)
    step = max(magnitude * float(_FLOAT32.eps), float(_FLOAT32.smallest_subnormal))
    if spread < MIN_LEVELS * step:
        raise ValueError(
            f"{what} values span only {float(spread):.3g} around {float(high):.3g}: a float32 "
            f"result cannot tell them apart (it needs a spread of at least "
            f"{MIN_LEVELS * step:.3g} there); subtract an offset first (image - image.min())"
            + (" and scale it (e.g. image / (image.max() - image.min()))"
               if magnitude < 1e-30 else ""))


# -- the layout of the image ------------------------------------------------------------------
def _single_layout(raw: np.ndarray, channel_axis, mode) -> Layout:
    """The layout of an image given without ``axes``: (Y, X), or 3-D with ``channel_axis``."""
    if mode is not None:
        raise ValueError(f"mode={mode!r} needs axes= naming the image's axes, e.g. "
                         "axes='ZYX' for a Z-stack or axes='TYX' for a time series")
    if channel_axis is not None and (isinstance(channel_axis, bool)
                                     or not isinstance(channel_axis, numbers.Integral)):
        raise ValueError(f"channel_axis must be an integer axis index or None, got "
                         f"{channel_axis!r}")
    if channel_axis is None and raw.ndim != 2:
        hint = (" For colour or multichannel images pass channel_axis (e.g. channel_axis=-1 "
                "for RGB)." if raw.ndim == 3 else "")
        raise ValueError(
            f"image has {raw.ndim} dimensions (shape {raw.shape}); this task takes a 2-D "
            f"(Y, X) image.{hint} For stacks, time series and volumes name the axes, "
            "e.g. axes='ZYX' or axes='TYX'.")
    if channel_axis is not None:
        if raw.ndim != 3:
            raise ValueError(
                f"with channel_axis={channel_axis}, image must have 3 dimensions (Y, X and "
                f"channels), got shape {raw.shape}; for stacks name the axes instead, e.g. "
                "axes='ZYXC'")
        if not -3 <= channel_axis <= 2:
            raise ValueError(f"channel_axis={channel_axis} is out of range for a 3-D image")
    return parse_axes(axes_from_channel_axis(raw.ndim, channel_axis), raw.shape, None)


def _layout(raw, axes, mode, channel_axis) -> Layout:
    if axes is None:
        return _single_layout(raw, channel_axis, mode)
    if channel_axis is not None:
        raise ValueError("give either axes= (with a 'C' for the channel axis) or "
                         "channel_axis=, not both")
    return parse_axes(axes, raw.shape, mode)


def _check_mode(layout: Layout, task: Task, method: Method, tile, shape) -> None:
    """What the task and method allow of the layout's mode and of tiling."""
    if layout.volume:
        depth = shape[layout.spatial[0]]
        if depth < MIN_DEPTH:
            raise ValueError(f"mode='volume' needs at least {MIN_DEPTH} slices along Z, the "
                             f"image has {depth}; use mode='slices'")
        if "volume" not in task.modes:
            volume_tasks = [t.name for t in TASKS.values() if "volume" in t.modes]
            raise ValueError(f"mode='volume' runs {', '.join(volume_tasks)}, not "
                             f"task={task.name!r}; use mode='slices' to {task.name} plane "
                             "by plane")
        if not method.volume:
            volume_methods = " or ".join(f"method={m.name!r}" for m in METHODS.values()
                                         if m.volume)
            raise ValueError(f"mode='volume' runs {volume_methods} only; use mode='slices' "
                             f"for method={method.name!r}")
        if tile is not None:
            raise ValueError("tile= splits large 2-D planes; mode='volume' restores the whole "
                             "volume at once (use mode='slices' to tile each plane)")
    if tile is not None and "tiles" not in task.modes:
        raise ValueError(f"task={task.name!r} cannot be tiled: {task.untiled_reason}; "
                         "restore the whole image (tile=None)")


def _check_parts_arguments(layout: Layout, tile, warm_start, spacing) -> None:
    """Refuse arguments that the run would ignore."""
    if warm_start is not None and not runs_in_parts(layout.axes, layout.mode,
                                                    tile is not None):
        raise ValueError(f"warm_start={warm_start!r} applies to stacks and tiles (each part "
                         "starts from the previous one); this run is one image: drop it")
    if spacing is not None and not layout.volume:
        raise ValueError(f"spacing={spacing!r} is the voxel size of mode='volume' runs; this "
                         "run restores planes: drop it, or use mode='volume'")


# -- the inputs of a task ---------------------------------------------------------------------
def _engine_order(a: np.ndarray, layout: Layout) -> np.ndarray:
    """A view of ``a`` (the image's shape) in the engine's order: (*iterated, C, *spatial),
    C of length 1 for data without channels."""
    order = layout.iterated + ((layout.channel,) if layout.channel is not None else ()) \
        + layout.spatial
    arr = np.transpose(a, order)
    return arr if layout.channel is not None else np.expand_dims(arr, len(layout.iterated))


def check_mask_values(mask) -> np.ndarray:
    """The mask as a numeric or boolean array (not copied), without NaN or infinities."""
    m = check_array(mask, "mask")
    if m.dtype.kind == "f":
        low, high = m.min(), m.max()
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError("mask has NaN or infinite values; use 0 (or False) for known "
                             "pixels and 1 (or True) for the pixels to fill")
    return m


def _check_single_mask(mask, raw: np.ndarray, layout: Layout) -> np.ndarray:
    """A single image's mask as (H, W) bool, True = pixel to fill."""
    h, w = (raw.shape[ax] for ax in layout.spatial)
    m = np.asarray(mask)
    if m.ndim == 3 and layout.channel is not None and m.shape == raw.shape:
        m = m.any(axis=layout.channel)
    if m.shape != (h, w):
        raise ValueError(
            f"mask has shape {m.shape} but the image is {h}x{w} pixels (Y, X); "
            "pass a 2-D mask of the same Y, X shape, nonzero at the pixels to fill")
    fill = m != 0
    if not fill.any():
        raise ValueError("mask marks no pixel to fill (it is all zero); mark the holes "
                         "with nonzero values")
    if fill.all():
        raise ValueError("mask marks every pixel to fill, so no known pixel is left; "
                         "nonzero must mean 'fill this pixel' (invert a 'known pixel' mask)")
    return fill


def _check_parts_mask(mask, raw: np.ndarray, layout: Layout, iter_shape,
                      spatial_shape) -> np.ndarray:
    """A stack's mask as a bool view (*iterated, *spatial), broadcast where it covers fewer
    axes; every part must keep a known pixel."""
    m = np.asarray(mask)
    no_c = tuple(n for ax, n in enumerate(raw.shape) if ax != layout.channel)
    plane = tuple(raw.shape[ax] for ax in layout.spatial)
    if layout.channel is not None and m.shape == raw.shape:
        m = m.any(axis=layout.channel)
    if m.shape == no_c:
        kept = [ax for ax in range(raw.ndim) if ax != layout.channel]
        order = [kept.index(ax) for ax in layout.iterated + layout.spatial]
        m = np.transpose(m, order) != 0
    elif m.shape == plane:
        m = np.broadcast_to(m != 0, tuple(iter_shape) + tuple(spatial_shape))
    else:
        raise ValueError(
            f"mask has shape {m.shape} but the image is {raw.shape} (axes "
            f"{layout.axes!r}); pass a mask of shape {no_c} (the image without channels) or "
            f"{plane} (one {'volume' if layout.volume else 'plane'}, used for every "
            f"{'time point' if layout.volume else 'plane'}), nonzero at the pixels to fill")
    if not m.any():
        raise ValueError("mask marks no pixel to fill (it is all zero); mark the holes "
                         "with nonzero values")
    n_iter = len(iter_shape)
    flat_all = m.reshape(int(np.prod(iter_shape, dtype=int)), -1).all(axis=1) if n_iter \
        else np.array([m.all()])
    if flat_all.any():
        where = ""
        if n_iter:
            first = np.unravel_index(int(np.argmax(flat_all)), iter_shape)
            where = f" at position {tuple(int(i) for i in first)}"
        raise ValueError(
            f"mask marks every pixel of a part{where} to fill, so no known pixel is left "
            "there; nonzero must mean 'fill this pixel' (invert a 'known pixel' mask)")
    return m


def _check_flash(flash, raw: np.ndarray, layout: Layout, single: bool) -> np.ndarray:
    """The flash shot in the engine's order, checked against the image."""
    f_raw = check_array(flash, "flash image")
    if single:
        if f_raw.ndim != raw.ndim:
            _single_layout(f_raw, layout.channel, None)  # says what is wrong with it
        h, w = (raw.shape[ax] for ax in layout.spatial)
        fh, fw = (f_raw.shape[ax] for ax in layout.spatial)
        if (fh, fw) != (h, w):
            raise ValueError(f"flash image is {fh}x{fw} but the no-flash image is {h}x{w}; "
                             "both shots must have the same size")
        if min(fh, fw) < MIN_SIZE:
            raise ValueError(f"flash image is {fh}x{fw} pixels; images need at least "
                             f"{MIN_SIZE} pixels on each side")
    elif f_raw.shape != raw.shape:
        raise ValueError(f"flash image has shape {f_raw.shape} but the image has "
                         f"{raw.shape}; both shots must have the same shape")
    fl = _engine_order(f_raw, layout)
    _check_values(fl, "flash image")
    return fl


def _is_nan_mask(mask) -> bool:
    return isinstance(mask, str) and mask == "nan"


def _nan_holes(raw: np.ndarray, layout: Layout) -> np.ndarray:
    """mask='nan': the image's NaN pixels (NaN in any channel) are the holes."""
    holes = np.isnan(raw) if raw.dtype.kind == "f" else np.zeros(raw.shape, bool)
    if layout.channel is not None:
        holes = holes.any(axis=layout.channel)
    if not holes.any():
        raise ValueError("mask='nan' marks the image's NaN pixels as holes, but it has none; "
                         "pass a mask array instead")
    return holes


def _check_inputs(task: Task, raw, layout, arr, mask, flash, single: bool):
    """(fill mask, flash) in the engine's order, each None unless the task takes it."""
    fill = fl = None
    if task.needs("mask"):
        if mask is None:
            raise ValueError(f"task={task.name!r} needs a mask: an array of the image's Y, X "
                             "shape (for stacks: of the image without its channel axis, or "
                             "of one plane), nonzero at the pixels to fill")
        mask = _nan_holes(raw, layout) if _is_nan_mask(mask) else check_mask_values(mask)
        n_iter = len(layout.iterated)
        fill = _check_single_mask(mask, raw, layout) if single else \
            _check_parts_mask(mask, raw, layout, arr.shape[:n_iter], arr.shape[n_iter + 1:])
    elif mask is not None:
        raise _unused("mask", task)
    if task.needs("flash"):
        if flash is None:
            raise ValueError(f"task={task.name!r} needs flash=: the flash shot of the same "
                             "scene (image is the no-flash shot)")
        fl = _check_flash(flash, raw, layout, single)
    elif flash is not None:
        raise _unused("flash", task)
    return fill, fl


def _check_image(arr: np.ndarray, noise: str, single: bool, nan_holes: bool = False) -> float:
    """Size, values and the noise model's needs; returns the value range."""
    h, w = arr.shape[-2:]
    if min(h, w) < MIN_SIZE:
        if single:
            raise ValueError(f"image is {h}x{w} pixels; images need at least {MIN_SIZE} "
                             "pixels on each side")
        raise ValueError(f"image planes are {h}x{w} pixels (Y x X); they need at least "
                         f"{MIN_SIZE} pixels on each side")
    _check_values(arr, nan_holes=nan_holes)
    low, high = (float(np.nanmin(arr)), float(np.nanmax(arr))) if nan_holes \
        else (float(arr.min()), float(arr.max()))
    if get_noise_model(noise).non_negative and low < 0:
        raise ValueError(
            f"noise={noise!r} needs non-negative photon counts, but the image has values "
            f"down to {low:g}; subtract the camera offset first or use noise='gaussian'")
    return high - low


# -- the whole run ----------------------------------------------------------------------------
def _with_ensemble(method: Method, layout, part_shape, tile, template: Request) -> Request:
    """``template`` with ``ensemble="auto"`` resolved: one fit where the run (a single image or
    the planes of a stack) blends with BM3D
    (:func:`~napari_dip.thinning.gaussian_blend_planned`: its validation fit takes the
    second fit's time), else :func:`auto_ensemble`'s count."""
    t = template
    if t.ensemble != "auto":
        return t
    whole_planes = tile is None and not layout.volume  # a single image or a stack's planes
    if gaussian_blend_planned(t.task, t.method, t.noise, whole_planes, t.early_stop,
                              t.patience, t.noise_sigma, t.options):
        return replace(t, ensemble=1)
    return replace(t, ensemble=auto_ensemble(method, t.task, t.noise, layout.volume,
                                             part_shape, tile, max(t.factor, 1)))


def build_plan(image, task: str = "denoise", method: str = "dip", *, axes: str | None = None,
               mode: str | None = None, tile=None, overlap: int | None = None,
               warm_start=None, spacing=None, channel_axis: int | None = None, mask=None,
               factor: int | None = None, kernel=None, boundary=None, flash=None,
               iterations: int | None = None, early_stop=True, preset: str = "fast",
               seed: int = 0, device: str = "auto", noise: str = "gaussian",
               noise_sigma="auto", preview_every: int | None = None, ensemble="auto",
               **options) -> Plan:
    """Validate a run (see :func:`napari_dip.restore` for the arguments); raises ValueError.

    Everything a run would refuse is refused here, torch-free and before any copy of the
    image: the task, method, preset and noise model, the image and its axes, the task's
    inputs, the run's numbers and the method's options (unknown names included)."""
    (channel_axis, tile, overlap, warm_start, factor, iterations, early_stop, seed,
     noise_sigma, preview_every) = map(plain, (
        channel_axis, tile, overlap, warm_start, factor, iterations, early_stop, seed,
        noise_sigma, preview_every))
    options = {name: plain(value) for name, value in options.items()}
    the_task, the_method = get_task(task), get_method(method)
    choice("preset", preset, dict.fromkeys(PRESETS))
    get_noise_model(noise)
    the_method.check_task(the_task)
    raw = check_array(image, "image")
    layout = _layout(raw, axes, mode, channel_axis)
    tile, overlap = check_tile(tile, overlap)
    one_image = axes is None and tile is None  # a 2-D image: its own messages
    _check_parts_arguments(layout, tile, warm_start, spacing)
    warm = check_warm_start(warm_start)
    spacing = check_spacing(spacing)
    _check_mode(layout, the_task, the_method, tile, raw.shape)
    ensemble = check_ensemble(plain(ensemble), the_method, layout.volume)

    arr = _engine_order(raw, layout)  # a view: nothing copied
    nan_holes = _is_nan_mask(mask)
    if isinstance(mask, str) and not nan_holes:
        raise ValueError(f"mask must be an array (nonzero = pixel to fill) or 'nan' (the "
                         f"image's NaN pixels), got {mask!r}")
    if nan_holes and not the_task.needs("mask"):
        raise _unused("mask", the_task)
    value_range = _check_image(arr, noise, one_image, nan_holes)
    fill, fl = _check_inputs(the_task, raw, layout, arr, mask, flash, one_image)
    factor = check_factor(the_task, factor,
                          the_task.volume_factors if layout.volume else None)
    part_shape = arr.shape[len(layout.iterated) + 1:]  # (H, W) or (D, H, W)
    kernel_array, kernel_name = check_kernel(the_task, kernel, part_shape, layout.volume)
    boundary = check_boundary(the_task, boundary, tile)
    min_overlap = kernel_overlap(kernel_array, boundary, tile, overlap)
    iterations, preview_every, patience, seed = check_numbers(iterations, preview_every,
                                                              early_stop, seed)
    noise_sigma = check_noise_sigma(noise_sigma, task=task, method=method, noise=noise,
                                    early_stop=early_stop, value_range=value_range)
    options = the_method.check_options(options, the_task, KEYWORDS)

    volume = layout.volume
    template = _with_ensemble(the_method, layout, part_shape, tile, Request(
        image=np.empty((0,)), task=task, method=method, mask=None,
        factor=1 if volume else factor, kernel=kernel_array, kernel_name=kernel_name,
        flash=None, iterations=iterations, early_stop=bool(early_stop), patience=patience,
        preset=preset, seed=seed, device=device, channel_axis=0, noise=noise,
        preview_every=preview_every, input_shape=(), input_dtype=str(raw.dtype),
        options=options, z_factor=factor if volume else 1,
        spacing=spacing if volume else None, noise_sigma=noise_sigma, boundary=boundary,
        ensemble=ensemble))
    cold = iterations or get_preset(preset, task, factor=factor).iterations
    warm_iterations = None if warm is False else cold if warm is True else int(warm)
    out_shape = list(raw.shape)
    for ax, f in zip(layout.spatial, (factor, 1, 1) if volume else (factor, factor),
                     strict=True):
        out_shape[ax] *= f
    planes = [tuple(int(i) for i in idx) for idx in np.ndindex(*arr.shape[:len(layout.iterated)])]
    return Plan(layout=layout, image=arr, mask=fill, flash=fl, template=template,
                nan_holes=nan_holes,
                planes=planes, boxes=None, tile=tile, overlap=overlap, warm_start=warm,
                cold_iterations=cold, warm_iterations=warm_iterations, adaptive=warm is True,
                output_shape=tuple(out_shape), input_shape=tuple(raw.shape),
                input_dtype=str(raw.dtype),
                channel_axis=layout.channel if channel_axis is None else channel_axis,
                min_overlap=min_overlap)


#: The arguments of :func:`build_plan` besides the method's options (for "did you mean").
KEYWORDS = tuple(name for name, p in inspect.signature(build_plan).parameters.items()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY)


def build_request(image, task: str = "denoise", method: str = "dip", **kwargs) -> Request:
    """Validate a single 2-D image's run and return its :class:`~napari_dip.plan.Request`
    (float64 copies, channels first); see :func:`napari_dip.restore` for the arguments."""
    plan = build_plan(image, task, method, **kwargs)
    if not plan.single:
        raise ValueError("these arguments describe a run of several parts (a stack, volume "
                         "or tiles); use napari_dip.iterate or restore")
    return plan.single_request()


__all__ = ["MIN_SIZE", "Plan", "Request", "build_plan", "build_request", "check_array"]
