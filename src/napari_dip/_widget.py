"""The napari dock widget: pick layers and settings, run DIP or DeepRED in a thread worker,
watch it converge, get layers back.

This module only maps layers to :func:`napari_dip.iterate` arguments and steps to layers.
The worker runs :func:`napari_dip._runner.run_steps` (a plain generator); names, geometry and
metadata come from :mod:`napari_dip._layers`. torch is imported when the widget opens (for
the device list), never when napari starts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QObject

from ._layers import (
    METADATA_KEY,
    TASK_LABELS,
    Geometry,
    build_metadata,
    layer_axes,
    parameters_json,
    result_name,
    sample_hints,
)
from ._runner import PreviewThrottle, RunOutcome, describe_error, format_progress, guarded, \
    gui_threads, progress_value, run_steps
from .request import SIGMA_TASKS

if TYPE_CHECKING:
    import napari

TASK_CHOICES = [
    ("denoise", "denoise"),
    ("inpaint (fill masked pixels)", "inpaint"),
    ("super-resolution", "super_resolution"),
    ("deblur", "deblur"),
    ("flash / no-flash", "flash_no_flash"),
]
METHOD_CHOICES = [("Deep Image Prior", "dip"), ("DeepRED (DIP + denoiser)", "deepred")]
DENOISER_CHOICES = [("non-local means", "nlm"), ("BM3D", "bm3d"), ("total variation", "tv")]
SIGMA_CHOICES = [("task default", "default"), ("estimate (auto)", "auto"),
                 ("fixed value", "fixed")]
STOP_LEVEL_CHOICES = [("estimate (denoising)", "auto"), ("known value", "fixed"),
                      ("unknown (ES-WMV)", "none")]
NOISE_CHOICES = [("Gaussian", "gaussian"), ("Poisson (photon counts)", "poisson")]
STACK_CHOICES = [("2-D per plane", "slices"), ("3-D volume", "volume"),
                 ("only the current plane", "plane")]
TILE_CHOICES = [("none", "none"), ("automatic (fits memory)", "auto"), ("fixed size", "fixed")]
_NONE = "(none)"


class DIPWidget(Container):
    """Restore an Image layer with Deep Image Prior or DeepRED.

    Use from a script as ``widget = DIPWidget(viewer); viewer.window.add_dock_widget(widget)``;
    :meth:`run` starts (same as pressing Run), :meth:`stop` cancels, :attr:`worker` is the
    running thread worker (None when idle) and :attr:`last_record` the metadata of the last
    result.
    """

    default_method = "dip"

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self.worker = None
        self.last_record: dict[str, Any] | None = None
        self._run: dict[str, Any] | None = None  # state of the run in progress

        from .devices import available_devices  # imports torch: only once the widget opens

        self.method = ComboBox(label="method", choices=METHOD_CHOICES, value=self.default_method)
        self.image = ComboBox(label="image", choices=self._image_choices,
                              tooltip="the Image layer to restore (never modified)")
        self.stack_mode = ComboBox(
            label="stack", choices=STACK_CHOICES, value="slices",
            tooltip="layers with more than two dimensions: restore every plane with the 2-D "
                    "network, the whole volume with the 3-D network, or just the plane on "
                    "screen (a quick preview)")
        self.task = ComboBox(label="task", choices=TASK_CHOICES, value="denoise")
        self.noise = ComboBox(label="noise model", choices=NOISE_CHOICES, value="gaussian",
                              tooltip="Poisson for photon counts (non-negative data)")
        self.mask = ComboBox(label="mask", choices=self._labels_choices,
                             tooltip="Labels layer: labels > 0 mark the pixels to fill")
        self.factor = ComboBox(label="SR factor", choices=[("x2", 2), ("x4", 4), ("x8", 8)],
                               value=4)
        self.kernel = ComboBox(label="blur kernel",
                               choices=[("Gaussian (25x25, sigma 1.6 px)", "gaussian"),
                                        ("uniform (9x9 box)", "uniform")], value="gaussian")
        self.flash = ComboBox(label="flash image", choices=self._image_choices,
                              tooltip="the flash shot; 'image' is the no-flash shot")
        self.preset = ComboBox(label="preset",
                               choices=[("fast (laptop friendly)", "fast"),
                                        ("paper (DIP paper settings)", "paper")], value="fast")
        self.iterations = SpinBox(label="iterations", min=1, max=1_000_000, step=100,
                                  value=1500, tooltip="iteration limit; follows the preset "
                                  "and task until you change it")
        self._iterations_from_preset = True
        self.early_stop = CheckBox(text="early stopping", value=True)
        self.noise_level = ComboBox(
            label="noise level", choices=STOP_LEVEL_CHOICES, value="auto",
            tooltip="DIP stops once its residual reaches the Gaussian noise level (discrepancy "
                    "principle); without one it stops by the outputs' variance (ES-WMV)")
        self.noise_sigma = FloatSpinBox(
            label="noise \u03c3", min=0.0001, max=1e9, step=0.01, value=0.1,
            tooltip="standard deviation of the noise in the image's own units (8-bit data "
                    "with noise of 25 grey levels: 25)")
        self.warm_start = CheckBox(
            text="warm start (each plane or tile from the last)", value=True,
            tooltip="start each plane (or tile) from the previous one's network and stop it "
                    "once it fits as well as the first: several times fewer iterations")
        self.tiling = ComboBox(label="tiles", choices=TILE_CHOICES, value="none",
                               tooltip="restore large images in overlapping tiles, blended "
                                       "without seams")
        self.tile_size = SpinBox(label="tile size", min=32, max=16384, step=32, value=512)
        self.tile_overlap = SpinBox(label="tile overlap", min=0, max=8192, step=8, value=128)
        self.device = ComboBox(label="device", choices=available_devices(), value="auto")
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0)
        self.denoiser = ComboBox(label="denoiser", choices=DENOISER_CHOICES, value="nlm")
        self.sigma_mode = ComboBox(label="denoiser \u03c3", choices=SIGMA_CHOICES,
                                   value="default",
                                   tooltip="noise level the denoiser is tuned to")
        self.denoiser_sigma = FloatSpinBox(
            label="\u03c3 value", min=0.001, max=1.0, step=0.005, value=0.02,
            tooltip="in [0, 1] units: a fraction of the image's intensity range")
        self.preview_every = SpinBox(label="preview every", min=1, max=100_000, value=25,
                                     tooltip="show the current estimate every N iterations")
        self.keep_stack = CheckBox(text="keep iteration stack", value=False)
        self.stack_every = SpinBox(label="stack every", min=1, max=100_000, value=50,
                                   tooltip="keep the estimate every K iterations")
        self.run_button = PushButton(text="Run")
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="", value="")
        self.copy_button = PushButton(text="Copy parameters")
        self.export_button = PushButton(text="Export JSON\u2026")
        buttons = Container(layout="horizontal", labels=False,
                            widgets=[self.copy_button, self.export_button])
        buttons.margins = (0, 0, 0, 0)

        self._inputs = [self.method, self.image, self.stack_mode, self.task, self.noise,
                        self.mask, self.factor, self.kernel, self.flash, self.preset,
                        self.iterations, self.early_stop, self.noise_level,
                        self.noise_sigma, self.warm_start, self.tiling,
                        self.tile_size, self.tile_overlap,
                        self.device, self.seed, self.denoiser, self.sigma_mode,
                        self.denoiser_sigma,
                        self.preview_every, self.keep_stack, self.stack_every]
        self.extend([*self._inputs, self.run_button, self.progress, self.status, buttons])

        self._polish()
        self.task.changed.connect(self._update_visibility)
        for control in (self.task, self.preset, self.factor):
            control.changed.connect(self._show_preset_iterations)
        self.iterations.changed.connect(self._on_iterations_edited)
        self.method.changed.connect(self._update_visibility)
        self.keep_stack.changed.connect(self._update_visibility)
        self.sigma_mode.changed.connect(self._update_visibility)
        for control in (self.noise, self.noise_level, self.early_stop):
            control.changed.connect(self._update_visibility)
        self.stack_mode.changed.connect(self._update_visibility)
        self.tiling.changed.connect(self._update_visibility)
        self.image.changed.connect(self._apply_sample_hints)
        self.image.changed.connect(self._update_stack_choices)
        self.run_button.changed.connect(self._on_run_clicked)
        self.copy_button.changed.connect(self.copy_parameters)
        self.export_button.changed.connect(lambda: self.export_parameters())

        self._close_watcher = _CloseWatcher(self)

        layers = self._viewer.layers
        layers.events.inserted.connect(self._on_layer_inserted)
        layers.events.removed.connect(self._refresh_choices)
        layers.events.moved.connect(self._refresh_choices)
        self._refresh_choices()
        active = layers.selection.active
        if isinstance(active, Image) and active.name in self.image.choices:
            self.image.value = active.name
        self._apply_sample_hints()
        self._update_stack_choices()
        self._show_preset_iterations()

    # -- layout ---------------------------------------------------------------------------
    def _polish(self) -> None:
        self.denoiser_sigma.native.setDecimals(3)
        self.noise_sigma.native.setDecimals(4)
        self.progress.native.setTextVisible(True)
        self.progress.native.setFormat("idle")
        self.status.native.setWordWrap(True)
        self.native.setMinimumWidth(320)

    def _update_visibility(self, *_) -> None:
        task = self.task.value
        self.mask.visible = task == "inpaint"
        self.factor.visible = task == "super_resolution"
        self.kernel.visible = task == "deblur"
        self.flash.visible = task == "flash_no_flash"
        deepred = self.method.value == "deepred"
        self.denoiser.visible = deepred
        self.sigma_mode.visible = deepred
        self.denoiser_sigma.visible = deepred and self.sigma_mode.value == "fixed"
        applies = self._noise_level_applies()
        self.noise_level.visible = applies
        self.noise_sigma.visible = applies and self.noise_level.value == "fixed"
        axes = self._axes()
        stack = axes is not None and len(axes.replace("C", "")) > 2
        mode = self.stack_mode.value if stack else None
        self.stack_mode.visible = stack
        tileable = mode != "volume"
        self.tiling.visible = tileable
        tiled = tileable and self.tiling.value != "none"
        self.tile_size.visible = self.tile_overlap.visible = \
            tileable and self.tiling.value == "fixed"
        self.warm_start.visible = mode == "slices" or tiled or (mode == "volume"
                                                                 and "T" in axes)
        single = not tiled and mode in (None, "plane")
        self.keep_stack.visible = single  # the iteration stack is for single images
        self.stack_every.visible = single and bool(self.keep_stack.value)

    def _noise_level_applies(self) -> bool:
        """Whether the run can stop at a noise level: DIP, Gaussian noise, a task with a
        squared-error data term, early stopping on."""
        return (self.method.value == "dip" and self.noise.value == "gaussian"
                and self.task.value in SIGMA_TASKS and bool(self.early_stop.value))

    def _axes(self) -> str | None:
        """The axes of the chosen image layer (None if there is none, or it has too many)."""
        layer = self._layer(self.image.value)
        if layer is None:
            return None
        try:
            return layer_axes(_spatial_ndim(layer), bool(layer.rgb),
                              getattr(layer, "axis_labels", None))
        except ValueError:
            return None

    def _update_stack_choices(self, *_) -> None:
        """Offer "3-D volume" only for layers with a Z axis."""
        axes = self._axes() or ""
        choices = [c for c in STACK_CHOICES if c[1] != "volume" or "Z" in axes]
        if list(self.stack_mode.choices) != [c[1] for c in choices]:  # choices: the values
            value = self.stack_mode.value
            with self.stack_mode.changed.blocked():
                self.stack_mode.choices = ()  # magicgui appends new choices: keep the order
                self.stack_mode.choices = choices
            if value in self.stack_mode.choices:
                self.stack_mode.value = value
        self._update_visibility()

    def _show_preset_iterations(self, *_) -> None:
        """Show the preset's iteration limit until the user types their own."""
        if not self._iterations_from_preset:
            return
        from .presets import get_preset

        preset = get_preset(self.preset.value, self.task.value, factor=self.factor.value)
        with self.iterations.changed.blocked():
            self.iterations.value = preset.iterations

    def _on_iterations_edited(self, *_) -> None:
        self._iterations_from_preset = False

    # -- layer pickers --------------------------------------------------------------------
    def _names(self, kind) -> list[str]:
        # Topmost first, so a freshly opened image is the default choice.
        return [layer.name for layer in reversed(list(self._viewer.layers))
                if isinstance(layer, kind)]

    def _image_choices(self, _widget=None) -> list:
        running = self._run or {}
        own = {running.get("preview_name")}
        return [name for name in self._names(Image) if name not in own]

    def _labels_choices(self, _widget=None) -> list:
        return self._names(Labels)

    def _refresh_choices(self, *_) -> None:
        for combo in (self.image, self.mask, self.flash):
            combo.reset_choices()

    def _on_layer_inserted(self, event) -> None:
        self._refresh_choices()
        layer = event.value
        if self._run is None and isinstance(layer, Image) \
                and sample_hints(layer.metadata).get("role") == "degraded":
            self.image.value = layer.name
            self._apply_sample_hints()

    def _apply_sample_hints(self, *_) -> None:
        """Sample layers carry the settings they were made for: apply them."""
        layer = self._layer(self.image.value)
        hints = sample_hints(getattr(layer, "metadata", None))
        if not hints or hints.get("role") != "degraded":
            return
        if hints.get("task") in TASK_LABELS:
            self.task.value = hints["task"]
        self.noise.value = hints.get("noise", "gaussian")
        mask = hints.get("mask_layer")
        if mask and mask in self.mask.choices:
            self.mask.value = mask

    def _layer(self, name):
        if name is None:
            return None
        try:
            return self._viewer.layers[name]
        except (KeyError, ValueError):
            return None

    # -- arguments ------------------------------------------------------------------------
    def restore_arguments(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
        """What the current settings ask for: (JSON-able keyword arguments of
        :func:`napari_dip.restore`, arrays by argument name, layer names by argument name,
        plus ``"plane"``, the index of the plane restored alone, for "only the current
        plane"). Raises ValueError with a message for the user when a layer is missing."""
        task, method = self.task.value, self.method.value
        layer = self._layer(self.image.value)
        if layer is None:
            raise ValueError("choose an Image layer to restore (open one, or File > Open "
                             "Sample > napari-dip)")
        image = _layer_data(layer)
        kwargs: dict[str, Any] = {
            "task": task, "method": method, "preset": self.preset.value,
            # None lets the engine take the preset's (which may depend on the mask's holes)
            "iterations": None if self._iterations_from_preset else int(self.iterations.value),
            "early_stop": bool(self.early_stop.value), "seed": int(self.seed.value),
            "device": self.device.value, "noise": self.noise.value,
            "channel_axis": -1 if layer.rgb else None,
        }
        arrays = {"image": image}
        inputs = {"image": layer.name}
        if task == "inpaint":
            mask_layer = self._layer(self.mask.value)
            if mask_layer is None:
                raise ValueError("inpainting needs a mask: add a Labels layer and paint the "
                                 "pixels to fill (labels > 0), then choose it as 'mask'")
            arrays["mask"] = _layer_data(mask_layer) > 0
            inputs["mask"] = mask_layer.name
        elif task == "super_resolution":
            kwargs["factor"] = int(self.factor.value)
        elif task == "deblur":
            kwargs["kernel"] = self.kernel.value
        elif task == "flash_no_flash":
            flash_layer = self._layer(self.flash.value)
            if flash_layer is None:
                raise ValueError("flash/no-flash needs the flash shot as a second Image layer")
            arrays["flash"] = _layer_data(flash_layer)
            inputs["flash"] = flash_layer.name
        if self._noise_level_applies():
            level = self.noise_level.value
            kwargs["noise_sigma"] = {"auto": "auto", "none": None}.get(
                level, float(self.noise_sigma.value))
        if method == "deepred":
            kwargs["denoiser"] = self.denoiser.value
            if self.sigma_mode.value == "auto":
                kwargs["denoiser_sigma"] = "auto"
            elif self.sigma_mode.value == "fixed":
                kwargs["denoiser_sigma"] = float(self.denoiser_sigma.value)

        # stacks, volumes, tiles
        axes = layer_axes(_spatial_ndim(layer), bool(layer.rgb),
                          getattr(layer, "axis_labels", None))
        leading = len(axes.replace("C", "")) - 2
        mode = self.stack_mode.value if leading else None
        if mode == "plane":
            index = self.current_plane(layer)
            for name, array in arrays.items():
                if name == "image" or np.ndim(array) >= leading + 2:
                    arrays[name] = np.asarray(array[index])
            inputs["plane"] = list(index)
        elif mode is not None:
            kwargs.pop("channel_axis")
            kwargs.update(axes=axes, mode=mode)
            if mode == "volume":
                kwargs["spacing"] = [float(v) for v in layer.scale[-3:]]
        if mode != "volume" and self.tiling.value != "none":
            if self.tiling.value == "auto":
                kwargs["tile"] = "auto"
            else:
                kwargs["tile"] = int(self.tile_size.value)
                kwargs["overlap"] = min(int(self.tile_overlap.value),
                                        int(self.tile_size.value) // 2)
        if "axes" in kwargs or "tile" in kwargs:  # more than one part
            kwargs["warm_start"] = bool(self.warm_start.value)
        return kwargs, arrays, inputs

    def current_plane(self, layer) -> tuple[int, ...]:
        """Index, on the layer's leading (non-Y, non-X) axes, of the plane on screen."""
        leading = _spatial_ndim(layer) - 2
        position = layer.world_to_data(self._viewer.dims.point)
        shape = _layer_data(layer).shape
        return tuple(int(np.clip(np.round(position[ax]), 0, shape[ax] - 1))
                     for ax in range(leading))

    # -- running --------------------------------------------------------------------------
    def _on_run_clicked(self, *_) -> None:
        if self.worker is None:
            self.run()
        else:
            self.stop()

    def run(self):
        """Start a run with the current settings; returns the worker (None if the settings
        were rejected, with an error notification)."""
        if self.worker is not None:
            return self.worker
        from .api import validate

        try:
            kwargs, arrays, inputs = self.restore_arguments()
            validate(arrays["image"], mask=arrays.get("mask"), flash=arrays.get("flash"),
                     **kwargs)  # every check the engine makes, before any work
        except ValueError as exc:
            show_error(describe_error(exc))
            return None

        source = self._layer(inputs["image"])
        factor = kwargs.get("factor", 1)
        name = result_name(source.name, kwargs["method"], kwargs["task"], factor)
        geometry = Geometry.of(source)
        plane = inputs.get("plane")
        if plane is not None:  # the result keeps every axis; the leading ones have length 1
            name += " plane " + ", ".join(map(str, plane))
            geometry = geometry.at_plane(plane)
        volume = kwargs.get("mode") == "volume"
        geometry = geometry.upsampled(factor, axes=(-3,) if volume else (-2, -1))
        single = "axes" not in kwargs and "tile" not in kwargs
        stack_every = int(self.stack_every.value) if self.keep_stack.value and single else None
        self._run = {
            "kwargs": kwargs, "inputs": inputs, "name": name,
            "preview_name": f"{name} (preview)", "preview": None,
            "geometry": geometry, "plane": plane, "canvas": None,
            "canvas_from": (arrays["image"], factor, volume, bool(source.rgb)),
            "look": _look_of(source), "stack_every": stack_every,
            "throttle": PreviewThrottle(0.1), "last_step": None,
            "selected": list(self._viewer.layers.selection),
            "active": self._viewer.layers.selection.active,
        }
        gen = run_steps(arrays["image"], mask=arrays.get("mask"), flash=arrays.get("flash"),
                        preview_every=int(self.preview_every.value), stack_every=stack_every,
                        threads=gui_threads(), **kwargs)
        self._run["gen"] = gen
        worker = thread_worker(guarded, start_thread=False)(gen)
        worker.yielded.connect(self._on_update)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.native.destroyed.connect(worker.quit)  # the widget went away: stop
        self.worker = worker
        self._set_running(True)
        self.status.value = f"running {name}\u2026"
        worker.start()
        return worker

    def stop(self) -> None:
        """Cancel the run at its next step; the viewer is left as it was."""
        if self.worker is not None:
            self.worker.quit()
            self.run_button.text = "Stopping\u2026"
            self.run_button.enabled = False

    def _set_running(self, running: bool) -> None:
        for widget in self._inputs:
            widget.enabled = not running
        self.copy_button.enabled = self.export_button.enabled = not running
        self.run_button.text = "Stop" if running else "Run"
        self.run_button.enabled = True
        if running:
            self.progress.max = 1
            self.progress.value = 0
            self.progress.native.setFormat("starting\u2026")

    def _alive(self) -> bool:
        try:
            self.native.objectName()
        except RuntimeError:  # the Qt widget was deleted
            return False
        return True

    def _on_update(self, update) -> None:
        run = self._run
        if run is None or not self._alive():
            return
        step = update.step
        run["last_step"] = step
        value, maximum = progress_value(step)
        self.progress.max = maximum
        self.progress.value = value
        self.progress.native.setFormat(format_progress(step).replace("%", "%%"))
        if update.preview is not None:
            preview = self._full_preview(update.preview, step.region)
            if run["throttle"].allow():
                start = time.perf_counter()
                self._show_preview(preview)
                run["throttle"].spent(time.perf_counter() - start)

    def _full_preview(self, preview: np.ndarray, region) -> np.ndarray:
        """A preview the shape of the result: a stack's plane or a tile goes into a canvas
        that starts as the input (zeros when super-resolution changes the shape)."""
        run = self._run
        if region is None:
            return self._as_layer(preview)
        if run["canvas"] is None:
            image, factor, volume, rgb = run["canvas_from"]
            if factor == 1:
                run["canvas"] = np.array(image, dtype=np.float32)
            else:
                shape = list(np.shape(image))
                spatial = len(shape) - (1 if rgb else 0)
                for ax in ((spatial - 3,) if volume else (spatial - 2, spatial - 1)):
                    shape[ax] *= factor
                run["canvas"] = np.zeros(shape, dtype=np.float32)
        run["canvas"][region] = preview
        return run["canvas"]

    def _as_layer(self, data: np.ndarray) -> np.ndarray:
        """A single plane's result with the input's leading axes back, each of length 1."""
        plane = self._run["plane"]
        return data if plane is None else data[(np.newaxis,) * len(plane)]

    def _show_preview(self, data: np.ndarray) -> None:
        run = self._run
        layer = run["preview"]
        if layer is not None and layer in self._viewer.layers:
            layer.data = data
            return
        run["preview"] = self._viewer.add_image(
            data, name=run["preview_name"], **run["look"],
            **run["geometry"].layer_kwargs())

    def _remove_preview(self) -> None:
        """Take the preview layer out and give the selection back (the preview took it)."""
        run = self._run
        if run is None or run["preview"] is None:
            return
        layer, run["preview"] = run["preview"], None
        layers = self._viewer.layers
        if layer in layers:
            layers.remove(layer)
        kept = [lay for lay in run["selected"] if lay in layers]
        if kept:
            layers.selection.update(kept)
            if run["active"] is not None and run["active"] in layers:
                layers.selection.active = run["active"]

    def _on_returned(self, outcome: RunOutcome) -> None:
        self._remove_preview()
        if outcome is None:
            return
        if outcome.failed:
            message = describe_error(outcome.error)
            self.status.value = f"failed: {message}"
            show_error(message)
            return
        self._add_result(outcome)

    def _on_errored(self, exc: BaseException) -> None:  # only if guarded() itself failed
        self._remove_preview()
        show_error(describe_error(exc))

    def _on_finished(self) -> None:
        run, worker = self._run, self.worker
        if run is not None:
            run["gen"].close()  # the worker thread is done with it; releases the engine
            self._remove_preview()
            if worker is not None and worker.abort_requested and self._alive():
                step = run["last_step"]
                where = f" at iteration {step.iteration}" if step is not None else ""
                self.status.value = f"stopped{where}; nothing was added"
                self.progress.native.setFormat("stopped")
        self._run = None
        self.worker = None
        if self._alive():
            self._set_running(False)
            self._refresh_choices()

    def _add_result(self, outcome: RunOutcome) -> None:
        run = self._run
        result = outcome.result
        record = build_metadata(result, restore_kwargs=run["kwargs"], inputs=run["inputs"],
                                source_name=run["inputs"]["image"],
                                stack_every=run["stack_every"])
        geometry = run["geometry"]
        look = dict(run["look"])
        look.pop("contrast_limits", None)  # the result gets its own range
        if outcome.stack:
            every = run["stack_every"]
            stack_geometry = geometry.with_leading_axis(step=every, start=every)
            self._viewer.add_image(
                np.stack(outcome.stack), name=f"{run['name']} iterations", **look,
                metadata={METADATA_KEY: {**record, "history": {},
                                         "stack_iterations": outcome.stack_iterations}},
                **stack_geometry.layer_kwargs())
        self._viewer.add_image(self._as_layer(result.image), name=run["name"],
                               metadata={METADATA_KEY: record},
                               **look, **geometry.layer_kwargs())
        self.last_record = record
        parts = getattr(result, "parts", None) or []
        if parts:
            planes = len({tuple(p["index"]) for p in parts})
            tiles = len(parts) // max(planes, 1)
            what = f"{planes} plane{'s' if planes > 1 else ''}" if planes > 1 or tiles == 1 \
                else ""
            if tiles > 1:
                what += (", " if what else "") + f"{tiles} tiles" + (" each" if planes > 1
                                                                     else "")
            stopped = f" ({what})"
        else:
            stopped = (f", kept iteration {result.stopped_at} (early stop)"
                       if result.stopped_at != result.iterations else "")
        self.status.value = (f"done: {result.iterations} iterations{stopped}, "
                             f"{result.elapsed:.0f} s \u2192 {run['name']}")
        self.progress.value = self.progress.max
        self.progress.native.setFormat(f"done \u00b7 {result.iterations} iterations")

    # -- parameters out -------------------------------------------------------------------
    def _record_for_export(self) -> dict[str, Any] | None:
        active = self._viewer.layers.selection.active
        record = getattr(active, "metadata", {}).get(METADATA_KEY) if active is not None \
            else None
        return record or self.last_record

    def parameters_text(self) -> str | None:
        """JSON of the selected result layer's run (or the last run), or None."""
        record = self._record_for_export()
        return None if record is None else parameters_json(record)

    def copy_parameters(self, *_) -> str | None:
        """Put the run's parameters on the clipboard as JSON (and return them)."""
        text = self.parameters_text()
        if text is None:
            show_info("run a restoration first, or select a napari-dip result layer")
            return None
        from qtpy.QtWidgets import QApplication

        QApplication.clipboard().setText(text)
        show_info("napari-dip parameters copied to the clipboard")
        return text

    def export_parameters(self, path: str | Path | None = None) -> Path | None:
        """Write the run's parameters to a JSON file (asks where when ``path`` is None)."""
        text = self.parameters_text()
        if text is None:
            show_info("run a restoration first, or select a napari-dip result layer")
            return None
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(self.native, "Export napari-dip parameters",
                                                  "napari-dip-run.json", "JSON (*.json)")
            if not path:
                return None
        path = Path(path)
        path.write_text(text + "\n", encoding="utf-8")
        return path


class _CloseWatcher(QObject):
    """Stops the run when the widget leaves the window (its dock closed)."""

    def __init__(self, widget: DIPWidget):
        super().__init__(widget.native)
        self._stop = widget.stop
        widget.native.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ParentChange and obj.parent() is None:
            self._stop()
        return False


class DeepREDWidget(DIPWidget):
    """The same widget, opened with DeepRED selected."""

    default_method = "deepred"


def _layer_data(layer) -> np.ndarray:
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return np.asarray(data)


def _spatial_ndim(layer) -> int:
    """Dimensions of an image layer without its RGB axis."""
    return int(layer.ndim)


def _look_of(layer) -> dict[str, Any]:
    """Display settings new layers copy from the input."""
    look: dict[str, Any] = {"rgb": bool(layer.rgb)}
    if not layer.rgb:
        look["colormap"] = layer.colormap.name
    look["contrast_limits"] = list(layer.contrast_limits)
    look["gamma"] = float(layer.gamma)
    return look


__all__ = ["DIPWidget", "DeepREDWidget"]
