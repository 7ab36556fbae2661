"""What the widget's thread worker runs: a plain generator around :func:`napari_dip.iterate`
that thins the step stream for a GUI and keeps an optional stack of estimates.

No Qt and no napari here, so a script can drive it too::

    gen = run_steps(noisy, task="denoise", preview_every=50, stack_every=100)
    while True:
        try:
            update = next(gen)           # RunUpdate: progress, sometimes a preview
        except StopIteration as stop:
            outcome = stop.value         # RunOutcome: the Result and the stack
            break
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np

from .cancel import RunCancelled
from .threads import torch_threads


@dataclass
class RunUpdate:
    """One report for the GUI: the engine's latest step, a preview to show (or None), and
    every step since the previous report for a convergence plot: ``iterations`` (the whole
    run's count for stacks and tiles), ``losses``, ``variances`` (ES-WMV's, NaN where it has
    none) and ``part_starts`` ((iteration, "plane 2") where a new part began). ``psnr`` is the
    preview's PSNR in dB against the reference image, when one was given."""

    step: object  # napari_dip.records.Step
    preview: np.ndarray | None = None
    iterations: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    variances: list[float] = field(default_factory=list)
    part_starts: list[tuple[int, str]] = field(default_factory=list)
    psnr: float | None = None


@dataclass
class RunOutcome:
    """How a run ended: the engine's Result (None on failure or cancellation), the kept
    estimates (``stack[i]`` is the estimate after ``stack_iterations[i]`` steps), the error,
    or ``cancelled``."""

    result: object | None = None
    stack: list[np.ndarray] = field(default_factory=list)
    stack_iterations: list[int] = field(default_factory=list)
    error: BaseException | None = None
    cancelled: bool = False

    @property
    def failed(self) -> bool:
        return self.error is not None


def engine_preview_every(preview_every: int | None, stack_every: int | None) -> int | None:
    """How often the engine must hand out an estimate to serve both the live preview and
    the iteration stack."""
    every = [n for n in (preview_every, stack_every) if n]
    if not every:
        return None
    return math.gcd(*every) if len(every) > 1 else every[0]


def gui_threads() -> int:
    """Torch CPU threads for a run started from napari: one core less than the machine has
    (at least 1). With every core busy, anything else running (napari drawing a preview,
    another program) stalls torch's threads: on a 2-core machine a step took 87 ms with 2
    threads and one busy process alongside, 28 ms with 1 thread (22.8 ms with 2 threads on
    an idle machine; benchmarks/results/levers.md)."""
    return max(1, (os.cpu_count() or 1) - 1)


def run_steps(image, *, preview_every: int | None = 25, stack_every: int | None = None,
              min_interval: float = 0.1, clock: Callable[[], float] = time.perf_counter,
              threads: int | None = None, cancel=None, reference: np.ndarray | None = None,
              **restore_kwargs) -> Generator[RunUpdate, None, RunOutcome]:
    """Run :func:`napari_dip.iterate` and yield :class:`RunUpdate` s, returning a
    :class:`RunOutcome`.

    A step is yielded when it carries a preview (every ``preview_every`` iterations), when
    ``min_interval`` seconds have passed since the last yield, and for the first step, so a
    GUI gets a steady trickle of progress without one signal per iteration. With
    ``stack_every``, the estimate every ``stack_every`` iterations is kept for the stack.
    With ``reference`` (an array the result's shape, e.g. a sample's ground truth), each
    preview's PSNR against it is computed here, in the worker's thread. Errors propagate;
    closing the generator, or setting ``cancel`` (a threading.Event: the run then ends in
    its own thread with RunCancelled), cancels the run. With ``threads``, torch uses that
    many CPU threads while runs are going and its previous count once the last one has
    ended (:func:`napari_dip.threads.torch_threads`).
    """
    from .api import iterate

    with torch_threads(threads):
        return (yield from _thinned(
            iterate(image, preview_every=engine_preview_every(preview_every, stack_every),
                    cancel=cancel, **restore_kwargs),
            preview_every, stack_every, min_interval, clock, reference))


def psnr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of ``estimate`` against ``reference``, peak: the reference's value range
    (inf for a perfect match, NaN for a constant reference)."""
    reference = np.asarray(reference, dtype=np.float64)
    peak = float(np.ptp(reference)) if reference.size else 0.0
    mse = float(np.mean((np.asarray(estimate, dtype=np.float64) - reference) ** 2))
    if not peak > 0:
        return math.nan
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


def _reference_psnr(reference, preview, region) -> float | None:
    """The preview's PSNR against the matching part of the reference, or None when the
    shapes do not match."""
    if reference is None or preview is None:
        return None
    target = reference if region is None else reference[region]
    if np.shape(target) != np.shape(preview):
        return None
    return psnr(preview, target)


def _thinned(steps, preview_every, stack_every, min_interval, clock, reference=None):
    """run_steps' loop over the engine's steps (see there)."""
    outcome = RunOutcome()
    last_yield = -math.inf
    pending = RunUpdate(None)  # the steps since the last report
    part = None
    try:
        while True:
            try:
                step = next(steps)
            except StopIteration as stop:
                outcome.result = stop.value
                if pending.iterations:  # the steps since the last report, for the plot
                    yield pending
                return outcome
            if stack_every and step.preview is not None and step.region is None \
                    and step.iteration % stack_every == 0:  # single images only
                outcome.stack.append(step.preview)
                outcome.stack_iterations.append(step.iteration)
            x = step.run_iteration if step.run_iteration is not None else step.iteration
            if (step.plane, step.tile) != part:
                if part is not None:
                    label = f"plane {step.plane}" if step.tile == 1 and step.planes > 1 \
                        else f"tile {step.tile}"
                    pending.part_starts.append((x, label))
                part = (step.plane, step.tile)
            pending.step = step
            pending.iterations.append(x)
            pending.losses.append(float(step.loss))
            pending.variances.append(float(step.extras.get("variance", math.nan)))
            preview = None
            if preview_every and step.preview is not None and step.iteration % preview_every == 0:
                preview = step.preview
            now = clock()
            if preview is not None or step.iteration == 1 or now - last_yield >= min_interval:
                last_yield = now
                pending.preview = preview
                pending.psnr = _reference_psnr(reference, preview, step.region)
                yield pending
                pending = RunUpdate(None)
    finally:
        steps.close()


def guarded(gen: Generator) -> Generator:
    """Pass ``gen`` through, turning an exception into ``RunOutcome(error=...)`` (and a
    cancellation into ``RunOutcome(cancelled=True)``) so that a thread worker reports it as
    a value instead of a traceback. ``gen`` is closed here, in the thread that runs it."""
    try:
        return (yield from gen)
    except RunCancelled:
        return RunOutcome(cancelled=True)
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the user
        return RunOutcome(error=exc)
    finally:
        gen.close()


def describe_error(exc: BaseException) -> str:
    """A one-line message for a failed run: the engine's own words for the errors it
    raises on purpose, plus advice for running out of memory."""
    text = str(exc).strip() or type(exc).__name__
    name = type(exc).__name__
    if "OutOfMemory" in name or "out of memory" in text.lower():
        return (f"out of memory: {text.splitlines()[0]} -- try the 'fast' preset, a smaller "
                "image or device 'cpu'")
    if isinstance(exc, (ValueError, FloatingPointError)):
        return text
    return f"{name}: {text}"


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def time_left(step, stops_early: bool = False) -> str:
    """``"~0:35 left"`` when the stopping rule expects its stop (``step.expected_stop``),
    ``"at most 1:05 left"`` while a run that may stop early cannot tell yet (the time to the
    iteration limit), ``"1:05 left"`` for a run to its limit."""
    left = format_duration(step.seconds_left)
    if getattr(step, "expected_stop", None) is not None:
        return f"~{left} left"
    return f"at most {left} left" if stops_early else f"{left} left"


def format_progress(step, stops_early: bool = False) -> str:
    """``"iteration 120 / 1500 · ~1:05 left"``; stacks and tiles put ``"plane 2 / 8 ·
    tile 3 / 9 · "`` in front (the time left is the whole run's). ``stops_early``: the
    run has a stopping rule (see :func:`time_left`)."""
    where = ""
    if getattr(step, "planes", 1) > 1:
        where += f"plane {step.plane} / {step.planes} \u00b7 "
    if getattr(step, "tiles", 1) > 1:
        where += f"tile {step.tile} / {step.tiles} \u00b7 "
    if getattr(step, "stage", None) == "validation":  # the blend's (napari_dip.thinning)
        where += "validation fit \u00b7 "
    return (f"{where}iteration {step.iteration} / {step.total} \u00b7 "
            f"{time_left(step, stops_early)}")


def progress_value(step) -> tuple[int, int]:
    """(value, maximum) for a progress bar: the whole run's steps for stacks and tiles."""
    if getattr(step, "run_total", None):
        total = max(int(step.run_total), 1)
        return min(int(step.run_iteration), total), total
    total = max(int(step.total), 1)
    return min(int(step.iteration), total), total


class PreviewThrottle:
    """Keeps the time spent showing previews under ``budget`` of the run's wall time.

    Call :meth:`allow` before showing a preview and :meth:`spent` with the seconds it took.
    """

    def __init__(self, budget: float = 0.1, clock: Callable[[], float] = time.perf_counter):
        self.budget = budget
        self.clock = clock
        self.start = clock()
        self.used = 0.0
        self.shown = 0
        self.skipped = 0

    def allow(self) -> bool:
        ok = self.used <= self.budget * (self.clock() - self.start)
        if not ok:
            self.skipped += 1
        return ok

    def spent(self, seconds: float) -> None:
        self.used += seconds
        self.shown += 1
