"""Helpers shared by the napari widget tests (imported only by modules that skip without
napari and Qt)."""

from __future__ import annotations

import pytest

from napari_dip import _widget
from napari_dip._layers import METADATA_KEY

PLUGIN = "napari-dip"
#: How long a test waits for a widget run to end (runs take seconds; CI machines are slow).
TIMEOUT_MS = 120_000


@pytest.fixture
def errors(monkeypatch):
    """Messages the widget shows as error notifications."""
    shown: list[str] = []
    monkeypatch.setattr(_widget, "show_error", lambda message: shown.append(str(message)))
    monkeypatch.setattr(_widget, "show_info", lambda message: None)
    return shown


def open_widget(viewer, name="Deep Image Prior", iterations=12):
    """The plugin's dock widget, set to run on the CPU, ``iterations`` steps, no early stop."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    widget.device.value = "cpu"
    widget.iterations.value = iterations
    widget.early_stop.value = False
    return widget


def shown(control):
    """Not hidden by the widget (the test viewer itself is never shown)."""
    return not control.native.isHidden()


def run_to_end(qtbot, widget):
    """Start a run and wait until it has ended; returns its worker."""
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert not worker.is_running
    return worker


def run_for_layer(qtbot, widget, name, errors):
    """Run to the end with no error shown; returns the result layer called ``name`` and
    its napari-dip record (``layer.metadata[METADATA_KEY]``)."""
    run_to_end(qtbot, widget)
    assert errors == []
    layer = widget._viewer.layers[name]
    return layer, layer.metadata[METADATA_KEY]
