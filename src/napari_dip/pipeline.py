"""The composition root: from a validated request to a solver ready to run.

    request -> device -> preset -> problem -> solver

:func:`build_solver` is the one place these pieces are put together; the public API, the
part drivers, tests and benchmarks all call it. Imports torch.
"""

from __future__ import annotations

from .devices import resolve_device
from .methods import get_method
from .plan import Request
from .presets import preset_for
from .problem import build_problem
from .sizing import check_request_memory


def build_solver(request: Request, device=None, *, check_memory: bool = False, cancel=None):
    """The solver of a validated single-part ``request`` on ``device`` (a torch.device;
    None resolves ``request.device``). With ``check_memory``, a ValueError first if the run
    will not fit the device's memory. ``cancel`` (a threading.Event or None) cancels the run
    when set. Run it with ``solver.run()`` (a generator of steps
    that returns the :class:`~napari_dip.records.Result`)."""
    if device is None:
        device = resolve_device(request.device)
    if check_memory:
        check_request_memory(request, device)
    preset = preset_for(request)
    if preset.input_kind == "image" and request.flash is None:
        raise ValueError("this preset feeds an image to the network but none was given")
    problem = build_problem(request, preset.network, device)
    solver_class = get_method(request.method).solver_class()
    solver = solver_class(request, problem, preset, device)
    solver.cancel = cancel
    return solver


__all__ = ["build_solver"]
