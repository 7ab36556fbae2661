"""The napari dock widget: pick layers and settings, run DIP or DeepRED in a thread worker,
watch it converge, get layers back.

The widget composes panels of controls (:mod:`napari_dip._panels`), reads them into a
Qt-free :class:`~napari_dip._settings.WidgetSettings`, maps that to :func:`napari_dip.iterate`
arguments (:func:`napari_dip._settings.restore_arguments`) and keeps the run in progress in a
:class:`~napari_dip._session.RunSession`. The worker runs :func:`napari_dip._runner.run_steps`
(a plain generator); names, geometry and metadata come from :mod:`napari_dip._layers`. torch is
imported when the widget opens (for the device list), never when napari starts.
"""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container
from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import QFrame, QScrollArea

from ._compare import CompareToggle, CompareView
from ._layers import METADATA_KEY, parameters_json
from ._messages import Context, for_widget
from ._panels import (
    DeepREDPanel,
    DevicePanel,
    OutputPanel,
    RunPanel,
    SourcePanel,
    StacksPanel,
    StoppingPanel,
    TaskInputsPanel,
    align_labels,
)
from ._pickers import LayerPickers
from ._runner import (
    RunOutcome,
    describe_error,
    format_progress,
    guarded,
    gui_threads,
    progress_value,
    psnr,
    run_steps,
)
from ._session import RunSession, RunState
from ._settings import (  # noqa: F401 - the choices stay importable from here
    DENOISER_CHOICES,
    METHOD_CHOICES,
    NOISE_CHOICES,
    SIGMA_CHOICES,
    STACK_CHOICES,
    STOP_LEVEL_CHOICES,
    TASK_CHOICES,
    TILE_CHOICES,
    WidgetSettings,
    layer_data,
    restore_arguments,
)

if TYPE_CHECKING:
    import napari

#: Settings fields that are not the value of a control of the same name.
_NOT_CONTROLS = ("iterations_from_preset",)
#: The controls whose value changes which others are shown.
_VISIBILITY_CONTROLS = ("task", "method", "keep_stack", "sigma_mode", "noise", "noise_level",
                        "early_stop", "stack_mode", "tiling", "kernel")


def _kernel(arrays) -> dict[str, Any]:
    """A PSF array (from a layer, or modelled) as ``kernel=``; a named kernel is among the
    keyword arguments instead."""
    return {"kernel": arrays["kernel"]} if "kernel" in arrays else {}


class _ParametersOut:
    """The run's parameters out, for the widget: as JSON text, on the clipboard, in a file.
    Reads the selected napari-dip result layer's record, or the widget's last run's."""

    _viewer: napari.viewer.Viewer
    last_record: dict[str, Any] | None
    native: Any

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


class _ControlsScroll(QScrollArea):
    """The controls in a vertical scroll area, so that the widget fits a short screen (a
    1280x800 laptop) while the run panel and the plot below it stay in view. It asks for
    the height of all its controls (Qt's scroll area asks for at most 24 lines) and gives
    way when the dock is shorter. napari docks a magicgui container's inner widget, so the
    container's own ``scrollable`` would be lost."""

    def __init__(self, content):
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(content)

    def sizeHint(self):  # noqa: N802 - Qt's name
        hint = self.widget().sizeHint()
        return hint.grownBy(self.contentsMargins()) if hasattr(hint, "grownBy") else hint


class DIPWidget(Container, LayerPickers, CompareToggle, _ParametersOut):
    """Restore an Image layer with Deep Image Prior or DeepRED.

    Use from a script as ``widget = DIPWidget(viewer); viewer.window.add_dock_widget(widget)``;
    :meth:`run` starts (same as pressing Run), :meth:`stop` cancels, :attr:`worker` is the
    running thread worker (None when idle) and :attr:`last_record` the metadata of the last
    result. :meth:`settings` reads every control; :attr:`state` says whether a run is going.

    The controls are attributes under their settings' names (``image``, ``task``, ``noise``,
    ``mask``, ``iterations``, ... : :class:`~napari_dip._settings.WidgetSettings`), plus
    ``run_button``, ``progress``, ``status``, ``copy_button`` and ``export_button``.
    """

    default_method = "dip"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        self._viewer = napari_viewer
        self.worker = None
        self.last_record: dict[str, Any] | None = None
        self._session: RunSession | None = None  # the run in progress

        from .devices import available_devices  # imports torch: only once the widget opens

        self._build(available_devices())
        self._connect()
        self._close_watcher = _CloseWatcher(self)

        self._compare_view = CompareView(napari_viewer)
        self._result_layers: list[Any] = []  # the last run's layers (result, uncertainty)
        self._before_hints: dict[str, Any] = {}  # values the sample hints replaced
        self._adding = False  # True while the widget adds layers itself
        layers = self._viewer.layers
        layers.events.inserted.connect(self._on_layer_inserted)
        layers.events.removed.connect(self._refresh_choices)
        layers.events.moved.connect(self._refresh_choices)
        layers.selection.events.active.connect(self._on_active_layer)
        self._refresh_choices()
        active = layers.selection.active
        if self._follows(active):
            self.image.value = active.name
        self._apply_sample_hints()
        self._update_stack_choices()
        self._show_preset_iterations()

    # -- layout ---------------------------------------------------------------------------
    def _build(self, devices) -> None:
        """The panels, and their controls as attributes of the widget (``self.image``, ...)."""
        source = SourcePanel(self.default_method, self._image_choices)
        task_inputs = TaskInputsPanel(self._labels_choices, self._image_choices)
        self._stopping = stopping = StoppingPanel()
        self._stacks = stacks = StacksPanel()
        device = DevicePanel(devices)
        deepred = DeepREDPanel()
        output = OutputPanel(self._reference_choices)
        self._run_panel = run = RunPanel()
        self._panels = (source, task_inputs, stopping, stacks, device, deepred, output)

        for panel in (*self._panels, run):  # the controls are the widget's attributes too
            for name in panel.exposes:
                setattr(self, name, getattr(panel, name))
        self._inputs = [control for panel in self._panels for control in panel.controls]
        from ._plot import ConvergencePlot  # pyqtgraph: only once the widget opens

        #: The live convergence plot (data term, noise level, variance, PSNR).
        self.plot = ConvergencePlot()
        self._body = body = Container(labels=False)  # the settings, which scroll
        body.extend(self._panels)
        align_labels([*self._panels, run])
        self._scroll = _ControlsScroll(body.native)
        self.extend([run, self.plot])  # Run, progress, status and plot stay in view
        self.native.layout().insertWidget(0, self._scroll)
        bar = self._scroll.verticalScrollBar().sizeHint().width()
        self.native.setMinimumWidth(max(320, body.native.minimumSizeHint().width() + bar))

    def _connect(self) -> None:
        for name in _VISIBILITY_CONTROLS:
            getattr(self, name).changed.connect(self._update_visibility)
        for control in (self.task, self.preset, self.factor):
            control.changed.connect(self._show_preset_iterations)
        self.image.changed.connect(self._apply_sample_hints)
        self.image.changed.connect(self._update_stack_choices)
        self.run_button.changed.connect(self._on_run_clicked)
        self.show_plot.changed.connect(self._on_show_plot)
        self.compare.changed.connect(self._on_compare)
        self.copy_button.changed.connect(self.copy_parameters)
        self.export_button.changed.connect(lambda: self.export_parameters())

    @property
    def _iterations_from_preset(self) -> bool:
        return self._stopping.iterations_from_preset

    def settings(self) -> WidgetSettings:
        """The value of every control."""
        values = {f.name: getattr(self, f.name).value for f in fields(WidgetSettings)
                  if f.name not in _NOT_CONTROLS}
        return WidgetSettings(**values, iterations_from_preset=self._iterations_from_preset)

    @property
    def state(self) -> RunState:
        """IDLE, RUNNING, or STOPPING (Stop pressed, the run not ended yet)."""
        return RunState.IDLE if self._session is None else self._session.state

    def _update_visibility(self, *_) -> None:
        settings, axes = self.settings(), self._axes()
        for panel in self._panels:
            panel.refresh(settings, axes)

    def _update_stack_choices(self, *_) -> None:
        """Offer "3-D volume" only for layers with a Z axis."""
        self._stacks.update_choices(self._axes())
        self._update_visibility()

    def _show_preset_iterations(self, *_) -> None:
        """Show the preset's iteration limit until the user types their own."""
        self._stopping.show_preset_iterations(self.task.value, self.factor.value)

    # -- arguments ------------------------------------------------------------------------
    def restore_arguments(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
        """What the current settings ask for: (JSON-able keyword arguments of
        :func:`napari_dip.restore`, arrays by argument name, layer names by argument name,
        plus ``"plane"``, the index of the plane restored alone, for "only the current
        plane"). Raises ValueError with a message for the user when a layer is missing.
        See :func:`napari_dip._settings.restore_arguments`."""
        layers = {layer.name: layer for layer in self._viewer.layers}
        return restore_arguments(self.settings(), layers, plane=self.current_plane)

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

        self._leave_compare()
        try:
            kwargs, arrays, inputs = self.restore_arguments()
            validate(arrays["image"], mask=arrays.get("mask"), flash=arrays.get("flash"),
                     **_kernel(arrays), **kwargs)  # every check the engine makes, first
        except ValueError as exc:
            self._report_error(exc)
            return None

        settings = self.settings()
        selection = self._viewer.layers.selection
        session = RunSession.plan(settings, kwargs, arrays, inputs, self._layer(inputs["image"]),
                                  selected=list(selection), active=selection.active)
        self._session = session
        session.reference = self._reference_for(session)
        session.reference_name = self.reference.value if session.reference is not None \
            else None
        gen = run_steps(arrays["image"], mask=arrays.get("mask"), flash=arrays.get("flash"),
                        **_kernel(arrays), preview_every=int(settings.preview_every),
                        stack_every=session.stack_every, threads=gui_threads(),
                        cancel=session.cancel, reference=session.reference, **kwargs)
        session.start(gen)
        worker = thread_worker(guarded, start_thread=False)(gen)
        worker.yielded.connect(self._on_update)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.native.destroyed.connect(lambda *_: session.request_stop())  # widget gone
        self.worker = worker
        self._set_running(True)
        self._run_panel.set_status(f"Running \u201c{session.name}\u201d\u2026")
        self.plot.reset()
        session.activity = napari_progress(total=1, desc=f"napari-dip: {session.name}")
        worker.start()
        return worker

    def _report_error(self, exc: BaseException) -> None:
        """The error in full in the widget, in the controls' words, and as a notification."""
        layer = self._layer(self.image.value)
        shape = None
        if layer is not None:
            shape = layer_data(layer).shape[:-1] if layer.rgb else layer_data(layer).shape
        message = for_widget(describe_error(exc), Context(shape))
        if self._alive():
            self._run_panel.show_error(message)
        show_error(message)

    def stop(self) -> None:
        """Cancel the run at its next step, leaving the viewer as it was; returns at once
        (the run ends in its worker thread; see napari_dip.cancel)."""
        if self.worker is not None:
            if self._session is not None:
                self._session.request_stop()
            self._run_panel.set_stopping()

    def _set_running(self, running: bool) -> None:
        for widget in self._inputs:
            widget.enabled = not running
        self._run_panel.set_running(running)

    def _alive(self) -> bool:
        try:
            self.native.objectName()
        except RuntimeError:  # the Qt widget was deleted
            return False
        return True

    def _on_update(self, update) -> None:
        session = self._session
        if session is None or not self._alive():
            return
        step = update.step
        session.last_step = step
        value, maximum = progress_value(step)
        self.progress.max = maximum
        self.progress.value = value
        self.progress.native.setFormat("%p %")
        stops_early = bool(session.kwargs.get("early_stop", True))
        self._run_panel.set_status(format_progress(step, stops_early))
        self.plot.add_points(update.iterations, update.losses, update.variances,
                             threshold=step.threshold, kept=step.kept,
                             part_starts=update.part_starts)
        if update.psnr is not None:
            self.plot.add_psnr(update.iterations[-1], update.psnr)
        if update.preview is not None:
            preview = session.full_preview(update.preview, step.region)
            if session.throttle.allow():
                start = time.perf_counter()
                session.show_preview(self._viewer, preview)
                session.throttle.spent(time.perf_counter() - start)
        # last: napari's progress bar processes Qt events, so the run's end may be handled
        # inside this call (the session's show_preview is safe against that too)
        session.update_activity(value, maximum, step)

    def _remove_preview(self) -> None:
        if self._session is not None:
            self._session.remove_preview(self._viewer.layers)

    def _on_returned(self, outcome: RunOutcome) -> None:
        self._remove_preview()
        if outcome is None:
            return
        if outcome.cancelled:
            self._session.stopped = True  # _on_finished (after this) ends the session
            return
        if outcome.failed:
            self._run_panel.set_status("Failed; nothing was added.")
            self._report_error(outcome.error)
            return
        self._add_result(outcome)

    def _on_errored(self, exc: BaseException) -> None:  # only if guarded() itself failed
        self._remove_preview()
        self._report_error(exc)

    def _on_finished(self) -> None:
        session = self._session
        if session is not None:
            session.finish()  # the worker thread is done with the generator
            session.remove_preview(self._viewer.layers)
            session.close_activity()
            if session.stopped and self._alive():
                self._run_panel.set_status(session.stopped_text())
                self.progress.native.setFormat("stopped")
                self.plot.finish(None, "stopped")
        self._session = None
        self.worker = None
        if self._alive():
            self._set_running(False)
            self._refresh_choices()

    def _add_result(self, outcome: RunOutcome) -> None:
        session = self._session
        result = outcome.result
        self._adding = True
        try:
            self.last_record = session.add_result(self._viewer, outcome)
        finally:
            self._adding = False
        self._result_layers = list(session.added)
        self._run_panel.set_status(session.done_text(result))
        self.progress.value = self.progress.max
        self.progress.native.setFormat("done")
        if session.reference is not None:
            final = session.as_layer(result.image)
            if session.plane is not None:
                final = final[(0,) * len(session.plane)]
            self.plot.add_psnr(result.iterations if not result.parts else
                               self.plot.last_iteration, psnr(final, session.reference))
        kept = None if result.parts else int(result.stopped_at)
        from ._session import how_it_stopped

        self.plot.finish(kept, how_it_stopped(result))

    # -- plot ---------------------------------------------------------------------------
    def _on_show_plot(self, *_) -> None:
        self.plot.visible = bool(self.show_plot.value)





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


__all__ = ["DIPWidget", "DeepREDWidget"]
