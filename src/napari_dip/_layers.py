"""Layer bookkeeping for the napari widget: names, geometry and metadata of the layers a
run adds. Pure Python and numpy (no Qt, no napari, no torch), so it is easy to test.

Geometry is handled as plain sequences: ``scale`` and ``translate`` have one entry per
*spatial* layer axis (napari leaves the RGB axis out of them), and the last two entries are
Y and X.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .methods import METHODS
from .tasks import TASKS

#: Key under which results keep their record in ``layer.metadata``.
METADATA_KEY = "napari_dip"
#: Key under which sample layers carry the settings they were made for.
SAMPLE_KEY = "napari_dip_sample"

#: Short names of methods and tasks for layer names, from the registries.
METHOD_LABELS = {name: method.label for name, method in METHODS.items()}
TASK_LABELS = {name: task.label for name, task in TASKS.items()}


#: What joins the parts of a layer name: "hubble · DIP denoise · iterations".
NAME_SEPARATOR = " \u00b7 "


def method_label(method: str, task: str, factor: int | None = None) -> str:
    """``"DIP denoise"``, ``"DeepRED super-resolution x4"``, ..."""
    label = f"{METHOD_LABELS.get(method, method)} {TASK_LABELS.get(task, task)}"
    if task == "super_resolution" and factor:
        label += f" x{factor}"
    return label


def result_name(input_name: str, method: str, task: str, factor: int | None = None) -> str:
    """A short layer name that fits napari's layer list: ``"cells · DIP denoise"``,
    ``"cells · DeepRED super-resolution x4"``; the full description of the run is
    in the layer's metadata (:func:`describe_run`)."""
    return f"{input_name}{NAME_SEPARATOR}{method_label(method, task, factor)}"


def describe_run(record: Mapping[str, Any]) -> str:
    """One sentence on what a result layer holds, for ``metadata["napari_dip"]
    ["description"]``: ``"hubble restored with DIP denoise (Poisson noise model, fast
    preset), 1500 iterations, kept iteration 1477, 49 s on cpu"``."""
    params = record.get("parameters", {})
    method, task = record.get("method"), record.get("task")
    what = method_label(method, task, params.get("factor"))
    details = []
    noise = params.get("noise")
    if noise:
        details.append(f"{noise} noise model")
    if params.get("preset"):
        details.append(f"{params['preset']} preset")
    if params.get("ensemble", 1) and params.get("ensemble", 1) > 1:
        details.append(f"ensemble of {params['ensemble']}")
    text = f"{record.get('source_layer')} restored with {what}"
    if details:
        text += f" ({', '.join(details)})"
    text += f", {record.get('iterations_run')} iterations"
    if record.get("stopped_at") != record.get("iterations_run"):
        text += f", kept iteration {record.get('stopped_at')}"
    if record.get("elapsed_s") is not None:
        text += f", {float(record['elapsed_s']):.0f} s"
    if record.get("device"):
        text += f" on {record['device']}"
    return text


@dataclass(frozen=True)
class Geometry:
    """Where a layer's pixels sit in the world: one entry per spatial axis."""

    scale: tuple[float, ...]
    translate: tuple[float, ...]
    units: tuple[str, ...] | None = None
    axis_labels: tuple[str, ...] | None = None

    @classmethod
    def of(cls, layer) -> Geometry:
        """Read the geometry of a napari layer (or anything with the same attributes)."""
        units = getattr(layer, "units", None)
        labels = getattr(layer, "axis_labels", None)
        return cls(
            scale=tuple(float(s) for s in layer.scale),
            translate=tuple(float(t) for t in layer.translate),
            units=None if units is None else tuple(str(u) for u in units),
            axis_labels=None if labels is None else tuple(str(a) for a in labels),
        )

    def upsampled(self, factor: int, axes: Sequence[int] = (-2, -1)) -> Geometry:
        """Geometry of an image with ``factor`` times more pixels along ``axes`` (Y and X;
        Z for thick slices made thin) covering the same field of view: scale s/f and
        translate shifted by -s(f-1)/(2f), so that the centre of each block of f output
        pixels lands on the centre of its input pixel."""
        if factor == 1:
            return self
        scale = list(self.scale)
        translate = list(self.translate)
        for ax in axes:
            s = scale[ax]
            scale[ax] = s / factor
            translate[ax] = translate[ax] - s * (factor - 1) / (2 * factor)
        return Geometry(tuple(scale), tuple(translate), self.units, self.axis_labels)

    def layer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``viewer.add_image`` that put a layer here."""
        kwargs: dict[str, Any] = {"scale": self.scale, "translate": self.translate}
        if self.units is not None:
            kwargs["units"] = self.units
        if self.axis_labels is not None:
            kwargs["axis_labels"] = self.axis_labels
        return kwargs

    def at_plane(self, index: Sequence[int]) -> Geometry:
        """This geometry for a single plane cut at ``index`` on the leading axes (the result
        keeps those axes with length 1): their translate moves to the plane."""
        translate = list(self.translate)
        for ax, i in enumerate(index):
            translate[ax] += self.scale[ax] * i
        return Geometry(self.scale, tuple(translate), self.units, self.axis_labels)

    def with_leading_axis(self, step: float, start: float, unit: str = "pixel",
                          label: str = "iteration") -> Geometry:
        """This geometry with an extra first axis (e.g. the iteration of a stack)."""
        units = None if self.units is None else (unit, *self.units)
        labels = None if self.axis_labels is None else (label, *self.axis_labels)
        return Geometry((float(step), *self.scale), (float(start), *self.translate),
                        units, labels)


def jsonable(value: Any) -> Any:
    """A JSON-serialisable copy of ``value`` (numpy scalars and arrays become Python)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def build_metadata(result, *, restore_kwargs: Mapping[str, Any], inputs: Mapping[str, str],
                   source_name: str, stack_every: int | None = None) -> dict[str, Any]:
    """The record a result layer keeps in ``metadata[METADATA_KEY]``.

    ``result`` is a :class:`napari_dip.records.Result`; ``restore_kwargs`` are the
    JSON-able arguments given to :func:`napari_dip.restore` (arrays left out);
    ``inputs`` names the layers that supplied the arrays (``image``, ``mask``, ``flash``).
    """
    params = dict(result.parameters)
    record = {
        "version": params.get("version"),
        "method": params.get("method", restore_kwargs.get("method")),
        "task": params.get("task", restore_kwargs.get("task")),
        "seed": params.get("seed", restore_kwargs.get("seed")),
        "device": params.get("device"),
        "iterations_run": int(result.iterations),
        "stopped_at": int(result.stopped_at),
        "early_stop": params.get("early_stop", restore_kwargs.get("early_stop")),
        "elapsed_s": round(float(result.elapsed), 3),
        "source_layer": source_name,
        "inputs": dict(inputs),
        "restore_kwargs": jsonable(dict(restore_kwargs)),
        "parameters": jsonable(params),
        "history": jsonable({k: list(v) for k, v in result.history.items()}),
    }
    if stack_every:
        record["stack_every"] = int(stack_every)
    parts = getattr(result, "parts", None)
    if parts:
        record["parts"] = jsonable(list(parts))
    record["description"] = describe_run(record)
    return record


def parameters_json(record: Mapping[str, Any], indent: int = 2) -> str:
    """JSON that repeats a run from Python::

        import json, napari_dip
        saved = json.load(open("run.json"))
        result = napari_dip.restore(image, **saved["restore"])   # add mask=/flash= if listed

    Everything in ``record`` except the loss history is kept.
    """
    inputs = dict(record.get("inputs", {}))
    arrays = [name for name in ("mask", "flash", "kernel") if name in inputs]
    modelled = ", kernel=napari_dip.psf(**saved['inputs']['psf_model'])" \
        if "psf_model" in inputs else ""
    call = "napari_dip.restore(image" + "".join(f", {a}={a}" for a in arrays) + modelled \
        + ", **saved['restore'])"
    doc = {
        "napari_dip_version": record.get("version"),
        "restore": dict(record.get("restore_kwargs", {})),
        "inputs": inputs,
        "python": call,
        "result": {
            "iterations_run": record.get("iterations_run"),
            "stopped_at": record.get("stopped_at"),
            "elapsed_s": record.get("elapsed_s"),
        },
        "parameters": dict(record.get("parameters", {})),
    }
    return json.dumps(jsonable(doc), indent=indent, sort_keys=False)


def sample_hints(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings a sample layer was made for (empty for other layers)."""
    if not metadata:
        return {}
    hints = metadata.get(SAMPLE_KEY)
    return dict(hints) if isinstance(hints, Mapping) else {}


def spatial_shape(shape: Sequence[int], rgb: bool) -> tuple[int, ...]:
    """The non-channel part of a layer's data shape."""
    return tuple(shape[:-1]) if rgb else tuple(shape)


#: Axis labels that mark a layer's axis as time rather than depth.
TIME_LABELS = ("t", "time", "frame", "frames", "timepoint", "timepoints")


def layer_axes(ndim: int, rgb: bool, labels: Sequence[str] | None = None) -> str:
    """The ``axes`` string for a layer with ``ndim`` non-RGB dimensions: the last two are Y
    and X; one more is Z (T when its label says time, e.g. "t" or "time"); two more are T
    and Z. RGB layers get a trailing C. ValueError for more than four dimensions."""
    if ndim < 2:
        raise ValueError(f"an image layer needs at least 2 dimensions, this one has {ndim}")
    if ndim > 4:
        raise ValueError(f"the layer has {ndim} dimensions; napari-dip restores up to 4 "
                         "(time, depth, Y, X); split the others into layers first")
    labels = list(labels or [])[:ndim]
    if ndim == 2:
        axes = "YX"
    elif ndim == 3:
        first = labels[0].strip().lower() if labels else ""
        axes = ("T" if first in TIME_LABELS else "Z") + "YX"
    else:
        axes = "TZYX"
    return axes + ("C" if rgb else "")
