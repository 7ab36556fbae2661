"""The public entry points: :func:`restore` and its generator twin :func:`iterate`."""

from __future__ import annotations

from collections.abc import Generator


from .records import Result, Step
from .request import Request, build_request

_DOC_ARGS = """
    Parameters
    ----------
    image:
        The degraded image: 2-D (Y, X), or 3-D with ``channel_axis`` naming the channel axis
        (e.g. -1 for RGB). Any real dtype (uint8, uint16, float, negative values allowed);
        at least 16 pixels on each side. Never modified.
    task:
        ``"denoise"``, ``"inpaint"``, ``"super_resolution"``, ``"deblur"`` or
        ``"flash_no_flash"``.
    method:
        ``"dip"`` (Deep Image Prior) or ``"deepred"`` (DIP + Regularization by Denoising).
    mask:
        Inpainting only: (Y, X) array, nonzero at the pixels to fill.
    factor:
        Super-resolution only: 2, 4 or 8.
    kernel:
        Deblurring only: ``"gaussian"`` (25x25, sigma 1.6 px, the default), ``"uniform"``
        (9x9 box) or a 2-D array (normalised to sum 1).
    flash:
        Flash/no-flash only: the flash shot, same shape as ``image`` (the no-flash shot); it is
        also the network's input.
    iterations:
        Iteration limit; None takes the preset's.
    early_stop:
        Stop by ES-WMV (windowed moving variance, window 100) once the variance has not
        reached a new minimum for a quarter of the iteration limit (at least 200, at most
        1000 steps), and return the estimate at the minimum. An integer sets that patience
        in iterations. False runs every iteration and returns the last estimate.
    preset:
        ``"fast"`` (small network, laptop friendly, default) or ``"paper"`` (the DIP paper's
        per-task settings).
    seed:
        Seeds network weights, input and perturbations; CPU runs repeat bit for bit.
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
    **options:
        Method-specific settings (see the method's documentation).
"""


def _prepare(request: Request):
    """Device, preset, problem and solver for a validated request (imports torch)."""
    from .devices import resolve_device
    from .presets import get_preset
    from .problem import build_problem, largest_hole_radius

    device = resolve_device(request.device)
    hole_radius = largest_hole_radius(request.mask) if request.mask is not None else 0.0
    preset = get_preset(request.preset, request.task, factor=request.factor,
                        hole_radius=hole_radius)
    if preset.input_kind == "image" and request.flash is None:
        raise ValueError("this preset feeds an image to the network but none was given")
    problem = build_problem(request, preset.network, device)
    if request.method == "deepred":
        from .solvers.deepred import DeepREDSolver as solver_class
    else:
        from .solvers.dip import DIPSolver as solver_class
    return solver_class(request, problem, preset, device)


def iterate(image, task: str = "denoise", method: str = "dip", **kwargs) -> Generator[Step, None, Result]:
    """Run a restoration step by step.

    Validates every argument at once (raising ValueError before any work), then returns a
    generator that yields a :class:`~napari_dip.records.Step` per iteration and returns the
    :class:`~napari_dip.records.Result` (``result = yield from iterate(...)``, or the
    ``StopIteration.value``). Closing the generator cancels the run cleanly.
    """
    request = build_request(image, task, method, **kwargs)
    solver = _prepare(request)
    return solver.run()


def restore(image, task: str = "denoise", method: str = "dip", **kwargs) -> Result:
    """Restore ``image`` and return a :class:`~napari_dip.records.Result`.

    ``result.image`` is float32 in the input's value range, same shape as the input (Y and X
    multiplied by ``factor`` for super-resolution).
    """
    steps = iterate(image, task, method, **kwargs)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


iterate.__doc__ += _DOC_ARGS
restore.__doc__ += _DOC_ARGS

__all__ = ["iterate", "restore", "Result", "Step"]
