"""Whether a run fits the device's memory, and the tiles that make it fit.

The estimate (:func:`napari_dip.memory.estimate_bytes`) is taken on the same padded shape
the problem pads to (:func:`napari_dip.architecture.padded_layout`) and the same network
input the solver builds (:meth:`napari_dip.presets.Preset.network_input_channels`).
Torch is imported only to ask the device how much memory it has free.
"""

from __future__ import annotations

import math

from . import memory
from .architecture import padded_layout, size_factors
from .memory import USABLE_FRACTION, gib, largest_tile
from .plan import Plan, Request, set_tiles
from .presets import LARGE_HOLE_RADIUS, get_preset
from .stacks import MIN_TILE
from .tasks import TASKS


def _presets(template: Request, factor: int):
    """The presets a part of ``template`` may run with: for inpainting both hole settings
    (which one applies depends on each part's mask), else the one."""
    radii = (0.0, LARGE_HOLE_RADIUS + 1.0) if TASKS[template.task].needs("mask") else (0.0,)
    return [get_preset(template.preset, template.task, factor=factor, hole_radius=r)
            for r in radii]


def part_bytes(template: Request, spatial: tuple[int, ...], channels: int,
               guide_channels: int = 0) -> int:
    """Estimated bytes to restore one part of input size ``spatial`` ((H, W) or (D, H, W))
    with ``channels`` channels under ``template``'s settings (the larger of the presets it
    may use; an ensemble's members all counted)."""
    f, fz = template.factor, template.z_factor
    factors = size_factors(len(spatial), f, fz)
    measured = channels * math.prod(spatial) * (3 if TASKS[template.task].needs("mask") else 2)
    need = 0
    for preset in _presets(template, fz if len(spatial) == 3 else f):
        padded, strides = padded_layout(spatial, f, fz, template.spacing, preset.network,
                                        template.margin(len(spatial)))
        shape = tuple(n * k for n, k in zip(padded, factors, strict=True))
        in_channels = preset.network_input_channels(channels, guide_channels, len(spatial))
        need = max(need, memory.estimate_bytes(preset.network, in_channels, channels, shape,
                                               strides, measured, template.ensemble))
    return need


def check_memory(need: int, device, what: str, advice: str) -> None:
    """ValueError if ``need`` bytes will not fit the memory ``device`` has free now."""
    free = available_bytes(device)
    if free is not None and need > USABLE_FRACTION * free:
        raise ValueError(f"restoring {what} needs about {gib(need)} but {device} has "
                         f"{gib(free)} free; {advice}")


def available_bytes(device) -> int | None:
    """Free memory of ``device`` (see :func:`napari_dip.memory.available_bytes`)."""
    return memory.available_bytes(device)


def request_bytes(request: Request) -> int:
    """Estimated bytes of a single-part run."""
    guide = 0 if request.flash is None else request.flash.shape[0]
    return part_bytes(request, tuple(request.spatial_shape), request.image.shape[0], guide)


TILE_ADVICE = ("split it into tiles with tile='auto' (the largest that fits) or e.g. "
               "tile=512, or use a device with more memory")


def _with(template: Request) -> str:
    """How a memory message names the run's settings: the preset (and the ensemble)."""
    k = template.ensemble
    return f"the {template.preset!r} preset" + (f" and an ensemble of {k}" if k > 1 else "")


def _advice(template: Request, advice: str) -> str:
    """An oversized ensemble can also be made smaller."""
    if template.ensemble == 1:
        return advice
    return f"{advice}, or average fewer fits (a smaller ensemble=)"


def check_request_memory(request: Request, device) -> None:
    """The memory check of a single image: suggests tiling when it does not fit."""
    spatial = "x".join(map(str, request.spatial_shape))
    check_memory(request_bytes(request), device,
                 f"a {spatial} image with {_with(request)}", _advice(request, TILE_ADVICE))


def _auto_tile(plan: Plan, need, device) -> int | None:
    """tile='auto': None if the whole plane fits, else the largest tile side that does."""
    h, w = plan.image.shape[-2:]
    free = available_bytes(device)
    budget = None if free is None else USABLE_FRACTION * free
    if budget is None or need((h, w)) <= budget:
        return None
    t = plan.template
    multiple = max(p.network.size_multiple for p in _presets(t, t.factor))
    side = largest_tile(lambda s: need((s, s)), budget, multiple, MIN_TILE, max(h, w))
    if side is None:
        raise ValueError(
            f"not even a {MIN_TILE}x{MIN_TILE} tile fits the {gib(free)} free on "
            f"{device} with {_with(t)}; free some memory or use the 'fast' preset"
            + (" or a smaller ensemble=" if t.ensemble > 1 else ""))
    return side


def plan_tiles(plan: Plan, device) -> Plan:
    """Decide the tiles (``tile='auto'``: none if the whole plane fits, else the largest
    that does) and check that a part fits the device's memory (ValueError if not)."""
    t = plan.template
    n_iter = len(plan.layout.iterated)
    channels = plan.image.shape[n_iter]
    guide = 0 if plan.flash is None else plan.flash.shape[n_iter]
    spatial = tuple(plan.image.shape[n_iter + 1:])

    def need(shape):
        return part_bytes(t, shape, channels, guide)

    if plan.layout.volume:
        set_tiles(plan, None)
        check_memory(need(spatial), device,
                     f"a {'x'.join(map(str, spatial))} volume with {_with(t)}",
                     "restore it plane by plane (mode='slices'), crop it, or use a device "
                     "with more memory")
        return plan
    h, w = spatial
    set_tiles(plan, _auto_tile(plan, need, device) if plan.tile == "auto" else plan.tile)
    if plan.boxes is None:
        what = "image" if plan.single else "plane"
        check_memory(need((h, w)), device, f"a {h}x{w} {what} with {_with(t)}",
                     _advice(t, TILE_ADVICE))
    else:
        side = plan.tile
        check_memory(need((min(side, h), min(side, w))), device,
                     f"{side}x{side} tiles with {_with(t)}",
                     _advice(t, "use smaller tiles (tile='auto' picks the largest that "
                                "fits)"))
    return plan
