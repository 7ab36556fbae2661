"""Drivers for runs made of parts: the planes of a stack (``mode="slices"``), the time points
of a series of volumes (``mode="volume"``) and the tiles of a large plane (``tile=``).

Every part goes through the same pipeline as a single image (request -> problem -> solver
loop -> steps); the driver re-labels the steps (plane k of n, tile j of m, iterations over
the whole run), carries the network weights and the optimiser's state from one part to
the next (warm start), and
stitches the parts' results: planes go to their place, tiles are blended with smooth
weights (:func:`napari_dip.stacks.blend_window`) so no seam is left at their borders.

Imports torch (through the solvers) when a run starts.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from collections.abc import Generator
from dataclasses import replace
from typing import Any

import numpy as np

from .memory import USABLE_FRACTION, available_bytes, estimate_bytes, gib, largest_tile
from .problem import padded_length, padded_size
from .records import Result, Step
from .request import Request
from .stacks import MIN_TILE, WARM_FRACTION, Plan, blend_window, set_tiles


# -- memory -------------------------------------------------------------------------------
def part_bytes(template: Request, spatial: tuple[int, ...], channels: int,
               guide_channels: int = 0) -> int:
    """Estimated bytes to restore one part of input size ``spatial`` ((H, W) or (D, H, W))
    with ``channels`` channels under ``template``'s settings."""
    from .architecture import z_strides
    from .presets import get_preset

    factor = template.z_factor if len(spatial) == 3 else template.factor
    preset = get_preset(template.preset, template.task, factor=factor)
    config = preset.network
    f = template.factor
    shape = [padded_size(n, f, config) * f for n in spatial[-2:]]
    strides = None
    if len(spatial) == 3:
        fz = template.z_factor
        spacing = None
        if template.spacing is not None:
            spacing = (template.spacing[0] / fz, min(template.spacing[1:]))
        strides = z_strides(config, spatial[0] * fz, spacing)
        multiple = 2 ** sum(1 for s in strides if s == 2)
        shape.insert(0, padded_length(spatial[0], fz, multiple, multiple) * fz)
    if preset.input_kind == "image":
        in_channels = guide_channels or channels
    elif preset.input_kind == "meshgrid":
        in_channels = len(spatial)
    else:
        in_channels = preset.input_channels
    measured = channels * math.prod(spatial) * (3 if template.task == "inpaint" else 2)
    return estimate_bytes(config, in_channels, channels, tuple(shape), strides, measured)


def check_memory(need: int, device, what: str, advice: str) -> None:
    """ValueError if ``need`` bytes will not fit the memory ``device`` has free now."""
    free = available_bytes(device)
    if free is not None and need > USABLE_FRACTION * free:
        raise ValueError(f"restoring {what} needs about {gib(need)} but {device} has "
                         f"{gib(free)} free; {advice}")


def request_bytes(request: Request) -> int:
    """Estimated bytes of a single-part run."""
    guide = 0 if request.flash is None else request.flash.shape[0]
    return part_bytes(request, tuple(request.spatial_shape), request.image.shape[0], guide)


def check_request_memory(request: Request, device) -> None:
    """The memory check of a single image: suggests tiling when it does not fit."""
    spatial = "x".join(map(str, request.spatial_shape))
    check_memory(request_bytes(request), device, f"a {spatial} image with the "
                 f"{request.preset!r} preset",
                 "split it into tiles with tile='auto' (the largest that fits) or e.g. "
                 "tile=512, or use a device with more memory")


def plan_tiles(plan: Plan, device) -> Plan:
    """Decide the tiles (``tile='auto'``: none if the whole plane fits, else the largest
    that does) and check that a part fits the device's memory (ValueError if not)."""
    t = plan.template
    channels = plan.image.shape[len(plan.layout.iterated)]
    guide = 0 if plan.flash is None else plan.flash.shape[len(plan.layout.iterated)]
    spatial = tuple(plan.image.shape[len(plan.layout.iterated) + 1:])

    def need(shape):
        return part_bytes(t, shape, channels, guide)

    if plan.layout.volume:
        set_tiles(plan, None)
        check_memory(need(spatial), device,
                     f"a {'x'.join(map(str, spatial))} volume with the {t.preset!r} preset",
                     "restore it plane by plane (mode='slices'), crop it, or use a device "
                     "with more memory")
        return plan
    h, w = spatial
    if plan.tile == "auto":
        free = available_bytes(device)
        budget = None if free is None else USABLE_FRACTION * free
        if budget is None or need((h, w)) <= budget:
            set_tiles(plan, None)
        else:
            from .presets import get_preset

            config = get_preset(t.preset, t.task, factor=t.factor).network
            side = largest_tile(lambda s: need((s, s)), budget, config.size_multiple,
                                MIN_TILE, max(h, w))
            if side is None:
                raise ValueError(
                    f"not even a {MIN_TILE}x{MIN_TILE} tile fits the {gib(free)} free on "
                    f"{device} with the {t.preset!r} preset; free some memory or use the "
                    "'fast' preset")
            set_tiles(plan, side)
    else:
        set_tiles(plan, plan.tile)
    if plan.boxes is None:
        check_memory(need((h, w)), device,
                     f"a {h}x{w} plane with the {t.preset!r} preset",
                     "split it into tiles with tile='auto' (the largest that fits) or e.g. "
                     "tile=512, or use a device with more memory")
    else:
        side = plan.tile
        check_memory(need((min(side, h), min(side, w))), device,
                     f"{side}x{side} tiles with the {t.preset!r} preset",
                     "use smaller tiles (tile='auto' picks the largest that fits)")
    return plan


# -- running ------------------------------------------------------------------------------
def _signature(solver) -> tuple:
    """What must match for one part's weights to load into the next part's network."""
    return (solver.preset.network, tuple(solver.z.shape[:2]), solver.problem.channels,
            solver.problem.z_strides)


#: Steps averaged when comparing a part's loss with the first part's (the loss of single
#: steps scatters with the input perturbation).
LOSS_WINDOW = 20


def fitted_loss(result: Result) -> float:
    """The data loss at the step whose estimate a part kept (mean of LOSS_WINDOW steps)."""
    losses = result.history["loss"][:result.stopped_at]
    return float(np.mean(losses[-LOSS_WINDOW:]))


def _run_part(solver, stop_loss: float | None, relabel) -> Generator[Step, None, Result]:
    """Run one part's solver, yielding relabelled steps. With ``stop_loss`` (adaptive warm
    start) the part ends as soon as its mean loss over LOSS_WINDOW steps comes down to
    ``stop_loss``, the fit the first part ended with: a network that starts from its
    neighbour's weights gets there in a fraction of the steps, and going on would fit the
    noise further than the first part did."""
    from .problem import to_output

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
                image = to_output(solver.estimate(), solver.problem, solver.request)
                step = replace(step, preview=image)
                yield relabel(step)
                run = len(solver.history["loss"])  # on accelerators a few steps may be ahead
                return Result(image=image, iterations=run, stopped_at=run,
                              history=solver.history, parameters=solver.parameters(),
                              elapsed=step.elapsed)
            yield relabel(step)
    finally:
        steps.close()


def run_plan(plan: Plan) -> Generator[Step, None, Result]:
    """Restore every part of ``plan`` in turn; yields relabelled :class:`Step` s and returns
    the stitched :class:`Result`. Closing the generator cancels the run."""
    from .api import _prepare

    layout = plan.layout
    n_iter = len(layout.iterated)
    out = np.empty(plan.output_shape, dtype=np.float32)
    order = layout.iterated + ((layout.channel,) if layout.channel is not None else ()) \
        + layout.spatial
    out_c = np.transpose(out, order)  # a view: writing to it fills ``out``
    if layout.channel is None:
        out_c = np.expand_dims(out_c, n_iter)
    source = layout.part_axes
    perm = [source.index(ax) for ax in layout.remaining]
    factors = plan.factors

    def to_remaining(part: np.ndarray) -> np.ndarray:
        """(C, *spatial) -> the part's axes in input order (no C axis for grey data)."""
        if layout.channel is None:
            part = part[0]
        return np.ascontiguousarray(np.transpose(part, perm))

    def region(index, box) -> tuple:
        where: list[Any] = [slice(None)] * len(layout.axes)
        for ax, i in zip(layout.iterated, index):
            where[ax] = i
        if box is not None:
            f = factors[-1]
            for ax, s in zip(layout.spatial[-2:], box):
                where[ax] = slice(s.start * f, s.stop * f)
        return tuple(where)

    planes, tiles = len(plan.planes), plan.parts_per_plane
    n_parts = planes * tiles
    warm_iters = plan.warm_iterations  # the limit of a warm part (None: no warm start)
    cold = plan.cold_iterations
    # what a warm part is expected to take, for the planned total (corrected as parts end)
    expected = warm_iters if not plan.adaptive else max(1, round(cold * WARM_FRACTION))
    planned = cold + (n_parts - 1) * (expected if warm_iters is not None else cold)
    target: float | None = None  # the loss the first part was fitted to (adaptive warm start)
    history: dict[str, list[float]] = {}
    records: list[dict[str, Any]] = []
    parameters: dict[str, Any] | None = None
    state = signature = None
    done = 0
    kept = 0
    start = time.perf_counter()
    number = 0
    for p, index in enumerate(plan.planes, 1):
        if plan.boxes is not None:
            value_range = plan.plane_range(index)
            h, w = plan.image.shape[-2:]
            f = factors[-1]
            acc = np.zeros((plan.image.shape[n_iter], h * f, w * f))
            weight = np.zeros((h * f, w * f))
        for t, box in enumerate(plan.boxes or [None], 1):
            number += 1
            part_planned = cold if (state is None or warm_iters is None) else expected
            request, skipped = plan.part(index, box, value_range if box is not None else None)
            record: dict[str, Any] = {
                "plane": p, "index": list(index), "tile": t,
                "box": None if box is None else [[box[0].start, box[0].stop],
                                                 [box[1].start, box[1].stop]],
                "iterations": 0, "stopped_at": 0, "elapsed": 0.0, "warm": False,
                "skipped": skipped,
            }
            if request is None:
                part = plan.skipped_output(index, box, skipped)
                planned -= part_planned
            else:
                warm = state is not None and warm_iters is not None
                if warm:
                    request = replace(request, iterations=warm_iters)
                solver = _prepare(request)
                if warm and _signature(solver) != signature:
                    # a different network (e.g. another inpainting setting): start cold
                    warm = False
                    solver.close()
                    solver = _prepare(replace(request, iterations=plan.template.iterations))
                    planned += solver.iterations - part_planned
                    part_planned = solver.iterations
                if warm:
                    # the weights and Adam's moments: with fresh moments the first steps
                    # jolt every weight by about the learning rate (measured: the PSNR drops
                    # by 2-5 dB before it recovers; benchmarks/results/stacks.md)
                    solver.net.load_state_dict(state[0])
                    solver.optimizer.load_state_dict(state[1])
                record["warm"] = warm

                def relabel(step, p=p, t=t, index=index, box=box):
                    preview = None if step.preview is None else to_remaining(step.preview)
                    return replace(
                        step, preview=preview, plane=p, planes=planes, tile=t, tiles=tiles,
                        index=index, run_iteration=done + step.iteration,
                        run_total=max(planned, done + step.iteration),
                        run_elapsed=time.perf_counter() - start,
                        region=region(index, box) if preview is not None else None)

                stop_loss = target if warm and plan.adaptive else None
                result = yield from _run_part(solver, stop_loss, relabel)
                if target is None and plan.adaptive:
                    target = fitted_loss(result)
                done += result.iterations
                kept += result.stopped_at
                planned -= part_planned - result.iterations
                state = ({k: v.detach().clone() for k, v in solver.net.state_dict().items()},
                         copy.deepcopy(solver.optimizer.state_dict()))
                signature = _signature(solver)
                del solver
                record.update(iterations=result.iterations, stopped_at=result.stopped_at,
                              elapsed=round(result.elapsed, 3))
                n = len(result.history.get("loss", []))
                for key, values in result.history.items():
                    history.setdefault(key, []).extend(values)
                history.setdefault("plane", []).extend([p] * n)
                if tiles > 1:
                    history.setdefault("tile", []).extend([t] * n)
                if parameters is None:
                    parameters = dict(result.parameters)
                part = result.image  # (C, *spatial): parts run with channel_axis=0
            records.append(record)
            if box is None:
                out_c[index] = part
            else:
                f = factors[-1]
                win = blend_window(box, (h, w), plan.overlap, f)
                ys = slice(box[0].start * f, box[0].stop * f)
                xs = slice(box[1].start * f, box[1].stop * f)
                acc[:, ys, xs] += part * win
                weight[ys, xs] += win
        if plan.boxes is not None:
            out_c[index] = acc / weight

    elapsed = time.perf_counter() - start
    if parameters is None:  # every part was constant or had no holes
        t = plan.template
        parameters = {"task": t.task, "method": t.method, "preset": t.preset,
                      "iterations": cold, "early_stop": t.early_stop, "seed": t.seed,
                      "noise": t.noise}
    parameters.update(plan.settings())
    parameters.update(input_shape=list(plan.input_shape), input_dtype=plan.input_dtype,
                      channel_axis=None, iterations=cold)
    if plan.template.task == "super_resolution":
        parameters["factor"] = plan.template.z_factor if layout.volume else plan.template.factor
        parameters["factor_axes"] = "Z" if layout.volume else "YX"
    return Result(image=out, iterations=done, stopped_at=kept, history=history,
                  parameters=parameters, elapsed=elapsed, parts=records)
