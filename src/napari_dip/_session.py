"""One run of the dock widget, from Run to its end: what it restores, where its layers go,
the live preview, and its state. No Qt and no napari imports: the viewer is used only through
``viewer.add_image`` and ``viewer.layers`` (with ``remove`` and ``selection``).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from ._layers import METADATA_KEY, NAME_SEPARATOR, Geometry, build_metadata, result_name
from ._runner import PreviewThrottle, RunOutcome, format_duration
from ._settings import WidgetSettings, stack_every_for


class RunState(Enum):
    """IDLE: planned, or ended; RUNNING: its worker is going; STOPPING: asked to stop (the
    run ends in its worker thread at its next iteration)."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"


@dataclass(frozen=True)
class CanvasSource:
    """What a preview canvas starts from: the input, the super-resolution factor, whether
    the factor applies along Z (volume) or in-plane, and whether the last axis is RGB."""

    image: np.ndarray
    factor: int
    volume: bool
    rgb: bool

    def blank(self) -> np.ndarray:
        """The input as float32, or zeros the result's shape when the factor changes it."""
        if self.factor == 1:
            return np.array(self.image, dtype=np.float32)
        shape = list(np.shape(self.image))
        spatial = len(shape) - (1 if self.rgb else 0)
        for ax in ((spatial - 3,) if self.volume else (spatial - 2, spatial - 1)):
            shape[ax] *= self.factor
        return np.zeros(shape, dtype=np.float32)


def look_of(layer) -> dict[str, Any]:
    """Display settings new layers copy from the input."""
    look: dict[str, Any] = {"rgb": bool(layer.rgb)}
    if not layer.rgb:
        look["colormap"] = layer.colormap.name
    look["contrast_limits"] = list(layer.contrast_limits)
    look["gamma"] = float(layer.gamma)
    return look


@dataclass
class RunSession:
    """A run: its arguments, the names and geometry of the layers it adds, its preview
    layer and canvas, the selection to give back, and its :class:`RunState`."""

    kwargs: dict[str, Any]  # the JSON-able arguments of napari_dip.restore
    inputs: dict[str, Any]  # layer names by argument name (and "plane")
    name: str  # of the result layer
    geometry: Geometry  # of the result layer
    look: dict[str, Any]  # display settings copied from the input
    canvas_from: CanvasSource
    plane: list[int] | None = None  # the plane restored alone ("only the current plane")
    stack_every: int | None = None  # keep the estimate every N iterations
    selected: list[Any] = field(default_factory=list)  # the selection before the run
    active: Any = None  # the active layer before the run
    throttle: PreviewThrottle = field(default_factory=lambda: PreviewThrottle(0.1))
    state: RunState = RunState.IDLE
    gen: Generator | None = None  # what the worker runs (napari_dip._runner.run_steps)
    preview: Any = None  # the preview layer, once shown
    previews_over: bool = False  # the run ended: no preview layer any more
    canvas: np.ndarray | None = None  # a stack's or tiled image's preview so far
    last_step: Any = None  # the engine's last Step
    cancel: threading.Event = field(default_factory=threading.Event)  # set: stop the run
    stopped: bool = False  # the run ended cancelled (RunOutcome.cancelled)
    reference: np.ndarray | None = None  # what the plot's PSNR is measured against
    reference_name: str | None = None  # its layer
    activity: Any = None  # napari's progress (napari.utils.progress) in the activity dock
    added: list[Any] = field(default_factory=list)  # the layers the run added (result first)

    @classmethod
    def plan(cls, settings: WidgetSettings, kwargs: dict[str, Any],
             arrays: dict[str, np.ndarray], inputs: dict[str, Any], source, *,
             selected: Sequence[Any] = (), active: Any = None) -> RunSession:
        """The session for ``restore_arguments``' output; ``source`` is the image layer."""
        factor = kwargs.get("factor", 1)
        name = result_name(inputs["image"], kwargs["method"], kwargs["task"], factor)
        geometry = Geometry.of(source)
        plane = inputs.get("plane")
        if plane is not None:  # the result keeps every axis; the leading ones have length 1
            name += f"{NAME_SEPARATOR}plane " + ", ".join(map(str, plane))
            geometry = geometry.at_plane(plane)
        volume = kwargs.get("mode") == "volume"
        geometry = geometry.upsampled(factor, axes=(-3,) if volume else (-2, -1))
        return cls(kwargs=kwargs, inputs=inputs, name=name, geometry=geometry,
                   look=look_of(source),
                   canvas_from=CanvasSource(arrays["image"], factor, volume, bool(source.rgb)),
                   plane=plane, stack_every=stack_every_for(settings, kwargs),
                   selected=list(selected), active=active)

    @property
    def preview_name(self) -> str:
        return f"{self.name}{NAME_SEPARATOR}preview"

    # -- state ----------------------------------------------------------------------------
    def start(self, gen: Generator) -> None:
        if self.state is not RunState.IDLE or self.gen is not None:
            raise RuntimeError(f"this run was started already (it is {self.state.value})")
        self.gen = gen
        self.state = RunState.RUNNING

    def request_stop(self) -> None:
        """Ask the run to stop; returns at once (the engine sees the flag within an
        iteration, or within 20 ms while it waits for a denoiser)."""
        self.cancel.set()
        if self.state is RunState.RUNNING:
            self.state = RunState.STOPPING

    def finish(self) -> None:
        """The worker is done with the generator: close it (a no-op when the run ended in
        the worker thread, as it does when stopped)."""
        if self.gen is not None:
            self.gen.close()
        self.state = RunState.IDLE

    # -- napari's activity dock ------------------------------------------------------------
    def update_activity(self, value: int, maximum: int, step) -> None:
        """Move the activity dock's progress to ``value`` of ``maximum`` steps."""
        bar = self.activity
        if bar is None:
            return
        if bar.total != maximum:
            bar.total = maximum
        if value != bar.n:
            bar.update(value - bar.n)
        where = f" \u00b7 plane {step.plane} / {step.planes}" if step.planes > 1 else ""
        description = f"napari-dip: {self.name}{where}"
        if bar.desc != description:
            bar.set_description(description)

    def close_activity(self) -> None:
        if self.activity is not None:
            self.activity.close()
            self.activity = None

    # -- preview --------------------------------------------------------------------------
    def full_preview(self, preview: np.ndarray, region) -> np.ndarray:
        """A preview the shape of the result: a stack's plane or a tile goes into a canvas
        that starts as the input (zeros when super-resolution changes the shape)."""
        if region is None:
            return self.as_layer(preview)
        if self.canvas is None:
            self.canvas = self.canvas_from.blank()
        self.canvas[region] = preview
        return self.canvas

    def as_layer(self, data: np.ndarray) -> np.ndarray:
        """A single plane's result with the input's leading axes back, each of length 1."""
        return data if self.plane is None else data[(np.newaxis,) * len(self.plane)]

    def show_preview(self, viewer, data: np.ndarray) -> None:
        """Show ``data`` in the preview layer (added the first time). Once the preview was
        removed for good (:meth:`remove_preview`), nothing: a late update, or one whose
        layer was added while napari handled the run's end (its progress bar processes Qt
        events), must not leave a preview behind."""
        if self.previews_over:
            return
        layer = self.preview
        if layer is not None and layer in viewer.layers:
            layer.data = data
            return
        layer = viewer.add_image(data, name=self.preview_name, **self.look,
                                 **self.geometry.layer_kwargs())
        if self.previews_over:  # the run ended while the layer was being added
            if layer in viewer.layers:
                viewer.layers.remove(layer)
            return
        self.preview = layer

    def remove_preview(self, layers) -> None:
        """Take the preview layer out and give the selection back (the preview took it);
        no preview is shown after this."""
        self.previews_over = True
        if self.preview is None:
            return
        layer, self.preview = self.preview, None
        if layer in layers:
            layers.remove(layer)
        kept = [lay for lay in self.selected if lay in layers]
        if kept:
            layers.selection.update(kept)
            if self.active is not None and self.active in layers:
                layers.selection.active = self.active

    # -- result ---------------------------------------------------------------------------
    def add_result(self, viewer, outcome: RunOutcome) -> dict[str, Any]:
        """Add the result layer (and the iteration stack, if kept); returns its record."""
        result = outcome.result
        record = build_metadata(result, restore_kwargs=self.kwargs, inputs=self.inputs,
                                source_name=self.inputs["image"],
                                stack_every=self.stack_every)
        look = dict(self.look)
        look.pop("contrast_limits", None)  # the result gets its own range
        if outcome.stack:
            every = self.stack_every
            stack_geometry = self.geometry.with_leading_axis(step=every, start=every)
            viewer.add_image(
                np.stack(outcome.stack), name=f"{self.name}{NAME_SEPARATOR}iterations", **look,
                metadata={METADATA_KEY: {**record, "history": {},
                                         "stack_iterations": outcome.stack_iterations}},
                **stack_geometry.layer_kwargs())
        if self.reference_name:
            record["reference_layer"] = self.reference_name
        uncertainty = getattr(result, "uncertainty", None)
        if uncertainty is not None:
            record["uncertainty_layer"] = f"{self.name}{NAME_SEPARATOR}uncertainty"
        layer = viewer.add_image(self.as_layer(result.image), name=self.name,
                                 metadata={METADATA_KEY: record},
                                 **look, **self.geometry.layer_kwargs())
        self.added = [layer]
        if uncertainty is not None:
            holds = "the ensemble's per-pixel standard deviation, in the input's units"
            if look["rgb"]:  # one map: the mean over the colour channels
                uncertainty = np.mean(uncertainty, axis=-1)
                holds += ", averaged over the colour channels"
            self.added.append(viewer.add_image(
                self.as_layer(uncertainty), name=record["uncertainty_layer"],
                colormap="viridis", visible=False,
                metadata={METADATA_KEY: {**record, "history": {}, "holds": holds,
                                         "result_layer": self.name}},
                **self.geometry.layer_kwargs()))
            viewer.layers.selection.active = layer  # the result, not the hidden map
        return record

    def done_text(self, result) -> str:
        """The status line for a finished run: how long, how it stopped, what was added."""
        return (f"Done in {format_duration(result.elapsed)}: {how_it_stopped(result)}. "
                f"Added \u201c{self.name}\u201d.")

    def stopped_text(self) -> str:
        """The status line for a run stopped before its end."""
        step = self.last_step
        where = f" at iteration {step.iteration}" if step is not None else ""
        if step is not None and getattr(step, "planes", 1) > 1:
            where += f" of plane {step.plane} / {step.planes}"
        return f"Stopped{where}; nothing was added."


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def how_it_stopped(result) -> str:
    """Why a run ended, in words: "reached the limit (1500 iterations)", "stopped at the
    noise level at 498", "stopped by ES-WMV at 1212, kept 912" (inpainting: "by the
    held-out pixels"); for stacks and tiles, how many parts stopped early. A blend with
    the classical method (:mod:`napari_dip.thinning`) is added: "..., blended with
    Anscombe + BM3D (network 0.35)"."""
    from .thinning import LABELS

    text = _stopped_words(result)
    params = getattr(result, "parameters", None) or {}
    weight = params.get("classical_blend_weight")
    if weight is not None:
        label = LABELS.get(params.get("classical"), params.get("classical"))
        text += f", blended with {label} (network {weight:.2f})"
    return text


def _stopped_words(result) -> str:
    parts = [p for p in (getattr(result, "parts", None) or []) if not p.get("skipped")]
    if parts or getattr(result, "parts", None):
        return _parts_stopped(result)
    params = result.parameters
    n, kept = int(result.iterations), int(result.stopped_at)
    limit = params.get("iterations")
    at_limit = limit is None or n >= int(limit)
    rule = params.get("stopping")
    if rule == "discrepancy" and params.get("discrepancy_reached_at") is not None:
        return f"stopped at the noise level at iteration {n}"
    by = {"es-wmv": "ES-WMV", "held-out": "the held-out pixels"}.get(rule)
    if by and not at_limit:
        return f"stopped by {by} at iteration {n}, kept {kept}"
    text = f"reached the limit ({_plural(n, 'iteration')})"
    if rule == "discrepancy":
        text += " before the noise level"
    elif by and kept != n:
        text += f", {by} kept {kept}"
    return text


def _parts_stopped(result) -> str:
    """how_it_stopped for runs in parts: "3 planes, 4 tiles each: 7 of 12 parts stopped
    early, 6000 iterations"."""
    parts = result.parts
    planes = len({tuple(p["index"]) for p in parts})
    tiles = len(parts) // max(planes, 1)
    what = []
    if planes > 1 or tiles == 1:
        what.append(_plural(planes, "plane"))
    if tiles > 1:
        what.append(_plural(tiles, "tile") + (" each" if planes > 1 else ""))
    ran = [p for p in parts if not p.get("skipped")]
    early = sum(1 for p in ran if p.get("limit") and p["iterations"] < p["limit"])
    unit = "tiles" if planes == 1 and tiles > 1 else "parts" if tiles > 1 else "planes"
    text = ", ".join(what)
    if len(ran) < len(parts):
        text += f" ({len(parts) - len(ran)} skipped: constant)"
    if early:
        text += f": {early} of {len(ran)} {unit} stopped early"
    else:
        text += ": every part ran to its limit" if ran else ""
    return f"{text}, {_plural(int(result.iterations), 'iteration')}"


__all__ = ["CanvasSource", "RunSession", "RunState", "how_it_stopped", "look_of"]
