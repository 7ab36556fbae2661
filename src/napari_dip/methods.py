"""The registry of methods: each solver is declared once, here (torch-free).

A :class:`Method` names its solver class (imported when a run starts), its label, the tasks
it runs, its options with their checks and defaults, and whether it stops at the noise level.
Validation (:mod:`napari_dip.request`), the solvers, the widget and the command line read it.

To add a method: write its solver (a :class:`~napari_dip.solvers.dip.DIPSolver` subclass in
``solvers/``), add its entry to :data:`METHODS`; a widget panel and CLI options only where it
has options of its own.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import Any

import numpy as np

from .tasks import TASKS, Task, choice, get_noise_model


@dataclass(frozen=True)
class Option:
    """A method option: ``check(value, task)`` returns the value to use (None resolved to
    the task's default) or raises ValueError naming the option."""

    name: str
    default: Any
    check: Callable[[Any, Task], Any]
    doc: str = ""


@dataclass(frozen=True)
class Method:
    """A restoration method.

    ``all_tasks``: it runs every task; otherwise only the tasks whose ``method_defaults``
    name it. ``stops_at_noise_level``: ``noise_sigma`` applies (the discrepancy principle);
    a method without it stops by ES-WMV. ``keeps_minimum_variance``:
    ES-WMV returns the estimate at the variance minimum rather than at the stop.
    ``volume``: it runs ``mode="volume"``. ``ensemble``: it runs ``ensemble`` > 1 (several
    fits in one batched network, averaged)."""

    name: str
    label: str
    description: str
    solver: str  # "module:Class", imported when a run starts
    options: tuple[Option, ...] = ()
    all_tasks: bool = False
    stops_at_noise_level: bool = True
    keeps_minimum_variance: bool = True
    volume: bool = False
    ensemble: bool = False

    def runs(self, task: Task) -> bool:
        return self.all_tasks or self.name in task.method_defaults

    @property
    def tasks(self) -> list[str]:
        return [t.name for t in TASKS.values() if self.runs(t)]

    def check_task(self, task: Task) -> None:
        if not self.runs(task):
            raise ValueError(
                f"method={self.name!r} does not support task={task.name!r}; it runs "
                f"{', '.join(self.tasks)} (use method='dip' for {task.name})")

    def check_options(self, options: Mapping[str, Any], task: Task,
                      keywords: tuple[str, ...] = ()) -> dict[str, Any]:
        """Every option of this method, checked and resolved for ``task``; unknown names
        raise ValueError with the closest valid name among the options and ``keywords``
        (the other arguments the caller takes, for typos such as ``iteration=``)."""
        names = [o.name for o in self.options]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ValueError(unknown_keyword_message(unknown, names, f"method={self.name!r}",
                                                     keywords))
        return {o.name: o.check(options.get(o.name, o.default), task) for o in self.options}

    def solver_class(self):
        module, name = self.solver.split(":")
        return getattr(import_module(module), name)


def unknown_keyword_message(unknown, valid, where: str, keywords=()) -> str:
    """"unknown option(s) for WHERE: x (did you mean y?); this method takes: ..." """
    parts = []
    for name in unknown:
        owners = [m.name for m in METHODS.values() if name in {o.name for o in m.options}]
        close = difflib.get_close_matches(name, [*valid, *keywords], n=1)
        if owners:
            parts.append(f"{name} (an option of method={owners[0]!r})")
        else:
            parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    takes = f"this method takes: {', '.join(sorted(valid))}" if valid \
        else f"{where} takes no options"
    return f"unknown option(s) for {where}: {', '.join(parts)}; {takes}"


# -- DeepRED's options (Mataev, Elad, Milanfar 2019) ------------------------------------------
def _number(name: str, value, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(float(value)) or float(value) < 0 \
            or (positive and float(value) == 0):
        need = "a positive number" if positive else "a number >= 0"
        raise ValueError(f"{name} must be {need}, got {value!r}")
    return float(value)


def _denoiser(value, task):
    from .denoisers import check_denoiser

    return check_denoiser(value)


def _denoiser_sigma(value, task):
    from .denoisers import check_sigma

    return task.method_defaults["deepred"].sigma if value is None else check_sigma(value)


def _lam(value, task):
    return task.method_defaults["deepred"].lam if value is None \
        else _number("lam", value, positive=False)


def _mu(value, task):
    return task.method_defaults["deepred"].mu if value is None \
        else _number("mu", value, positive=True)


def _blend(value, task):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"blend must be True (blend with the classical method's estimate "
                         f"where napari_dip.thinning has one) or False (the network's "
                         f"estimate alone), got {value!r}")
    return bool(value)


def _denoiser_timeout(value, task):
    return _number("denoiser_timeout", value, positive=True)


def _denoise_every(value, task):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"denoise_every must be a positive integer, got {value!r}")
    return int(value)


#: Both methods' ``blend`` option (napari_dip.thinning picks the classical method).
BLEND = Option("blend", True, _blend, "blend with the classical method's estimate where one "
               "applies (napari_dip.thinning); False: the network's estimate alone")

METHODS: dict[str, Method] = {
    "dip": Method("dip", "DIP", "Deep Image Prior", "napari_dip.solvers.dip:DIPSolver",
                  all_tasks=True, volume=True, ensemble=True, options=(BLEND,)),
    "deepred": Method(
        "deepred", "DeepRED", "DeepRED (DIP + denoiser)",
        "napari_dip.solvers.deepred:DeepREDSolver",
        options=(
            Option("denoiser", "nlm", _denoiser, "'nlm', 'bm3d' or 'tv'"),
            Option("denoiser_sigma", None, _denoiser_sigma,
                   "normalised units, 'auto', or None for the task's default"),
            Option("lam", None, _lam, "RED weight >= 0; None: the task's default"),
            Option("mu", None, _mu, "ADMM penalty > 0; None: the task's default"),
            Option("denoise_every", 10, _denoise_every, "refresh D(x) every N steps"),
            Option("denoiser_timeout", 300.0, _denoiser_timeout,
                   "seconds one D(x) call may take before the run fails"),
            BLEND,
        ),
        # RED's outputs settle slowly, so the variance minimum comes early, before the
        # estimate is good: ES-WMV here only ends the run. The noise level stops it where
        # there is one: on the denoising crops of benchmarks/results/early-stopping-deepred.md
        # it keeps an estimate at most 0.58 dB below the run's best, ES-WMV 2.68 dB.
        keeps_minimum_variance=False),
}


def get_method(name) -> Method:
    return choice("method", name, METHODS)


def noise_level_applies(task: str, method: str, noise: str, early_stop) -> bool:
    """Whether a run can stop at a Gaussian noise level (the discrepancy principle): a
    method that stops there, Gaussian noise, a task whose data term is a squared residual,
    early stopping on without an ES-WMV patience."""
    return (METHODS[method].stops_at_noise_level and get_noise_model(noise).has_sigma
            and TASKS[task].squared_residual and early_stop is True)


__all__ = ["METHODS", "Method", "Option", "get_method", "noise_level_applies",
           "unknown_keyword_message"]
