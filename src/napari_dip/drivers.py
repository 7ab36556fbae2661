"""Running a validated :class:`~napari_dip.plan.Plan`: a single image, or the parts of a run
(the planes of a stack with ``mode="slices"``, the time points of a series of volumes, the
tiles of a large plane) one after the other.

Every part goes through the same pipeline as a single image
(:func:`napari_dip.pipeline.build_solver`); the part runner re-labels its steps (plane k of
n, tile j of m, iterations over the whole run) and carries the network weights and the
optimiser's state from one part to the next (warm start, through ``solver.state()`` and
``solver.load_state()``); :class:`~napari_dip.stitching.Stitcher` puts the results together.

Imports torch (through the solvers) when a run starts.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import replace
from typing import Any

import numpy as np

from . import thinning
from .cancel import raise_if_cancelled
from .devices import resolve_device
from .pipeline import build_solver
from .plan import Plan
from .problem import to_outputs
from .records import Result, Step, map_steps
from .sizing import plan_tiles
from .stacks import WARM_FRACTION
from .stitching import Stitcher
from .tasks import TASKS, get_noise_model

#: Steps averaged when comparing a part's loss with the first part's (the loss of single
#: steps scatters with the input perturbation).
LOSS_WINDOW = 20


def drain(steps: Generator, each: Callable[[Any], None] | None = None):
    """Run a step generator to its end, calling ``each(step)`` on every step; returns what
    the generator returns (the :class:`~napari_dip.records.Result`). The generator is
    closed however this ends (an exception in ``each`` cancels the run)."""
    try:
        while True:
            try:
                step = next(steps)
            except StopIteration as stop:
                return stop.value
            if each is not None:
                each(step)
    finally:
        steps.close()


def run(plan: Plan, cancel=None) -> Generator[Step, None, Result]:
    """The steps of ``plan``'s run (validated by :func:`napari_dip.request.build_plan`).

    The device is resolved and the memory checked (tiles decided for ``tile="auto"``) now,
    before the first step; the returned generator runs the parts. Setting ``cancel`` (a
    threading.Event) ends it with :class:`~napari_dip.cancel.RunCancelled` before the next
    iteration."""
    device = resolve_device(plan.template.device)
    plan_tiles(plan, device)  # from the plan's shapes: before any copy of the image
    _estimate_likelihood_sigma(plan)
    if plan.single:
        solver = build_solver(plan.single_request(), device, cancel=cancel)
        if thinning.applies(solver):  # blended with the classical method's estimate
            return thinning.blended_run(solver, device, cancel)
        return solver.run()
    return run_parts(plan, device, cancel)


def _estimate_likelihood_sigma(plan: Plan) -> None:
    """A likelihood that needs the noise level (Rician) with ``noise_sigma="auto"``: read it
    once from the whole image (its dark background), so every plane and tile uses the same
    value, and tiles without background need none of their own."""
    t = plan.template
    if get_noise_model(t.noise).likelihood_sigma and t.noise_sigma == "auto":
        from .noise_levels import rician_sigma

        plan.template = replace(t, noise_sigma=rician_sigma(plan.image),
                                noise_sigma_estimated=True)


def fitted_loss(result: Result) -> float:
    """The data loss at the step whose estimate a part kept (mean of LOSS_WINDOW steps)."""
    losses = result.history["loss"][:result.stopped_at]
    return float(np.mean(losses[-LOSS_WINDOW:]))


def run_part(solver, stop_loss: float | None, relabel) -> Generator[Step, None, Result]:
    """Run one part's solver, yielding relabelled steps. With ``stop_loss`` (adaptive warm
    start) the part ends as soon as its mean loss over LOSS_WINDOW steps comes down to
    ``stop_loss``, the fit the first part ended with: a network that starts from its
    neighbour's weights gets there in a fraction of the steps, and going on would fit the
    noise further than the first part did."""
    steps = solver.run()
    recent: deque[float] = deque(maxlen=LOSS_WINDOW)
    try:
        while True:
            try:
                step = next(steps)
            except StopIteration as stop:
                return stop.value
            recent.append(step.loss)
            if stop_loss is not None and len(recent) == LOSS_WINDOW \
                    and float(np.mean(recent)) <= stop_loss:
                image, spread = to_outputs(solver.members(), solver.problem, solver.request)
                step = replace(step, preview=image)
                yield relabel(step)
                run = len(solver.history["loss"])  # on accelerators a few steps may be ahead
                return Result(image=image, iterations=run, stopped_at=run,
                              history=solver.history, parameters=solver.parameters(),
                              elapsed=step.elapsed, uncertainty=spread)
            yield relabel(step)
    finally:
        steps.close()


class _Schedule:
    """The planned total of a run's iterations, corrected as parts end (for progress)."""

    def __init__(self, plan: Plan):
        self.warm_limit = plan.warm_iterations  # the limit of a warm part (None: all cold)
        self.cold = plan.cold_iterations
        # what a warm part is expected to take
        self.expected = self.warm_limit if not plan.adaptive \
            else max(1, round(self.cold * WARM_FRACTION))
        parts = len(plan.planes) * plan.parts_per_plane
        self.planned = self.cold + (parts - 1) * (self.expected if self.warm_limit is not None
                                                  else self.cold)
        self.done = 0  # steps run so far
        self.validation = 0  # steps of the blend's validation fit so far (numbered on)
        self.kept = 0  # sum of the parts' kept iterations

    def part_budget(self, warm: bool) -> int:
        return self.expected if warm and self.warm_limit is not None else self.cold

    def skipped(self, budget: int) -> None:
        self.planned -= budget

    def ended(self, budget: int, result: Result) -> None:
        self.done += result.iterations
        self.kept += result.stopped_at
        self.planned -= budget - result.iterations


def _part_record(plan_number: int, index, tile: int, box, skipped) -> dict[str, Any]:
    return {
        "plane": plan_number, "index": list(index), "tile": tile,
        "box": None if box is None else [[box[0].start, box[0].stop],
                                         [box[1].start, box[1].stop]],
        "iterations": 0, "stopped_at": 0, "elapsed": 0.0, "warm": False, "skipped": skipped,
    }


class _PartRunner:
    """Runs the parts of a plan in turn, carrying the warm-start state between them."""

    def __init__(self, plan: Plan, device, cancel=None):
        self.plan, self.device, self.cancel = plan, device, cancel
        self.schedule = _Schedule(plan)
        self.stitcher = Stitcher(plan)
        self.state = self.signature = None  # the last part's solver state (warm start)
        self.target: float | None = None  # the loss the first part was fitted to
        self.history: dict[str, list[float]] = {}
        self.records: list[dict[str, Any]] = []
        self.parameters: dict[str, Any] | None = None
        #: (the network's share, validation iterations) of the planes' blend with the
        #: classical method, chosen on the first plane that blends (None: not yet)
        self.blend_weight: tuple[float, int] | None = None
        self.start = time.perf_counter()

    def _solver(self, request, budget: int):
        """(solver, warm?, budget): warm-started from the last part where the networks
        match, else cold with the full iteration limit."""
        plan = self.plan
        warm = self.state is not None and plan.warm_iterations is not None
        if warm:
            request = replace(request, iterations=plan.warm_iterations)
        solver = build_solver(request, self.device, cancel=self.cancel)
        if warm and solver.signature() != self.signature:
            # a different network (e.g. another inpainting setting): start cold
            warm = False
            solver.close()
            solver = build_solver(replace(request, iterations=plan.template.iterations),
                                  self.device, cancel=self.cancel)
            self.schedule.planned += solver.iterations - budget
            budget = solver.iterations
        if warm:
            solver.load_state(self.state)
        return solver, warm, budget

    def _relabel(self, p: int, t: int, index, box):
        planes, tiles = len(self.plan.planes), self.plan.parts_per_plane
        schedule, stitcher = self.schedule, self.stitcher

        def relabel(step: Step) -> Step:
            preview = None if step.preview is None else stitcher.to_remaining(step.preview)
            return replace(
                step, preview=preview, plane=p, planes=planes, tile=t, tiles=tiles,
                index=index, run_iteration=schedule.done + schedule.validation + step.iteration,
                run_total=max(schedule.planned + schedule.validation,
                              schedule.done + schedule.validation + step.iteration),
                run_elapsed=time.perf_counter() - self.start,
                region=stitcher.region(index, box) if preview is not None else None)

        return relabel

    def part(self, p: int, t: int, index, box, value_range) -> Generator[Step, None, None]:
        """Restore one part (or skip it) and put its result in place."""
        plan, schedule = self.plan, self.schedule
        budget = schedule.part_budget(self.state is not None)
        request, skipped = plan.part(index, box, value_range)
        record = _part_record(p, index, t, box, skipped)
        self.records.append(record)
        if request is None:
            schedule.skipped(budget)
            self.stitcher.put(index, box, plan.skipped_output(index, box, skipped))
            return
        solver, warm, budget = self._solver(request, budget)
        record["warm"] = warm
        record["limit"] = budget  # so a part that stopped early can be told from one that ran out
        stop_loss = self.target if warm and plan.adaptive else None
        relabel = self._relabel(p, t, index, box)
        # whole planes blend with the classical method as single images do (not tiles)
        blend = thinning.blend_for(solver) if plan.boxes is None else None
        blend_request = None if blend is None else thinning.request_to_blend(solver)
        result = yield from run_part(solver, stop_loss, relabel)
        if self.target is None and plan.adaptive:
            self.target = fitted_loss(result)
        schedule.ended(budget, result)
        self.state, self.signature = solver.state(), solver.signature()
        del solver
        if blend is not None:
            result = yield from self._blended(blend, blend_request, result, relabel)
        record.update(iterations=result.iterations, stopped_at=result.stopped_at,
                      elapsed=round(result.elapsed, 3))
        self._add_history(result, p, t)
        if self.parameters is None:
            self.parameters = dict(result.parameters)
        # (C, *spatial): parts run channels first
        self.stitcher.put(index, box, result.image, result.uncertainty)

    def _blended(self, blend, request, result: Result, relabel
                 ) -> Generator[Step, None, Result]:
        """A plane's result blended with the classical method's estimate of it, at the
        weight the first blended plane's validation fit chose (its steps relabelled after
        that plane's): one validation fit per stack, not per plane."""
        if self.blend_weight is None:  # its steps numbered on from the plane's own
            self.blend_weight = yield from map_steps(
                thinning.weight_for(blend, request, result, self.device, self.cancel), relabel)
            self.schedule.validation += self.blend_weight[1]
        return thinning.blended(blend, request, result, *self.blend_weight, self.cancel)

    def _add_history(self, result: Result, p: int, t: int) -> None:
        n = len(result.history.get("loss", []))
        for key, values in result.history.items():
            self.history.setdefault(key, []).extend(values)
        self.history.setdefault("plane", []).extend([p] * n)
        if self.plan.parts_per_plane > 1:
            self.history.setdefault("tile", []).extend([t] * n)

    def result(self) -> Result:
        plan = self.plan
        t = plan.template
        parameters = self.parameters
        if parameters is None:  # every part was constant or had no holes
            parameters = {"task": t.task, "method": t.method, "preset": t.preset,
                          "iterations": plan.cold_iterations, "early_stop": t.early_stop,
                          "seed": t.seed, "noise": t.noise, "ensemble": t.ensemble}
        parameters.update(plan.settings())
        parameters.update(input_shape=list(plan.input_shape), input_dtype=plan.input_dtype,
                          channel_axis=None, iterations=plan.cold_iterations)
        if TASKS[t.task].needs("factor"):
            parameters["factor"] = t.z_factor if plan.layout.volume else t.factor
            parameters["factor_axes"] = "Z" if plan.layout.volume else "YX"
        return Result(image=self.stitcher.image, iterations=self.schedule.done,
                      stopped_at=self.schedule.kept, history=self.history,
                      parameters=parameters, elapsed=time.perf_counter() - self.start,
                      parts=self.records, uncertainty=self.stitcher.uncertainty)


def run_parts(plan: Plan, device, cancel=None) -> Generator[Step, None, Result]:
    """Restore every part of ``plan`` in turn; yields relabelled :class:`Step` s and returns
    the stitched :class:`Result`. Closing the generator, or setting ``cancel``, cancels the
    run."""
    runner = _PartRunner(plan, device, cancel)
    for p, index in enumerate(plan.planes, 1):
        value_range = plan.plane_range(index) if plan.boxes is not None else None
        runner.stitcher.begin_plane(index)
        for t, box in enumerate(plan.boxes or [None], 1):
            raise_if_cancelled(cancel, f" before part {p}.{t}")
            yield from runner.part(p, t, index, box, value_range)
        runner.stitcher.end_plane(index)
    return runner.result()
