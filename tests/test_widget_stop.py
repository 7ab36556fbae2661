"""Stop in the dock widget (issue 14): the GUI thread never waits on the run, even while
DeepRED's denoiser is busy for seconds; start/stop cycles leave torch's thread count and
the process's memory as they were.

Needs napari, Qt and a display (run under ``xvfb-run -a``)."""

from __future__ import annotations

import resource
import threading
import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from widget_helpers import TIMEOUT_MS, errors, open_widget  # noqa: F401

from napari_dip import denoisers
from napari_dip.cancel import join_leftovers, leftovers
from napari_dip.solvers.deepred import THREAD_PREFIX
from napari_dip.threads import process_threads, runs_in_flight

pytestmark = pytest.mark.gui


def _noisy(size=48, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    clean = 0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy)
    return (clean + rng.normal(0, 0.1, clean.shape)).astype(np.float32)


class GapMeter:
    """A Qt timer ticking every 10 ms on the GUI thread; ``longest`` is the longest gap
    between two ticks, i.e. the longest the GUI thread was busy."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()

    @property
    def longest(self) -> float:
        return float(np.max(np.diff(self.ticks))) if len(self.ticks) > 1 else float("inf")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.fixture
def slow_denoiser(monkeypatch):
    """D(x) sleeps 3 s, like a BM3D call on a large image."""
    started = threading.Event()

    def slow(image, sigma, name):
        started.set()
        time.sleep(3.0)
        return image, 0.01

    monkeypatch.setattr(denoisers, "denoise_with_sigma", slow)
    yield started
    join_leftovers(timeout=30)


def test_stop_during_a_3_second_denoiser_call_keeps_the_gui_responsive(
        make_napari_viewer, qtbot, errors, slow_denoiser):
    viewer = make_napari_viewer()
    viewer.add_image(_noisy(), name="noisy")
    widget = open_widget(viewer, "DeepRED", iterations=100_000)
    worker = widget.run()
    assert worker is not None
    assert slow_denoiser.wait(20)  # D(x0) started at iteration 1 and takes 3 s
    qtbot.wait(600)  # the run has reached iteration 10, where it waits for that D(x)
    with GapMeter() as meter:
        pressed = time.perf_counter()
        widget.run_button.clicked.emit()  # Stop
        returned = time.perf_counter() - pressed
        qtbot.waitUntil(lambda: widget.worker is None, timeout=5000)
        ended = time.perf_counter() - pressed
        qtbot.wait(100)
    assert returned < 0.05, f"Stop took {returned:.3f} s on the GUI thread"
    assert ended < 0.5, f"the run ended {ended:.2f} s after Stop"
    assert meter.longest < 0.5, f"the GUI thread was blocked for {meter.longest:.2f} s"
    assert widget.status.value.startswith("Stopped at iteration ") and \
        widget.status.value.endswith("; nothing was added.") and widget.run_button.text == "Run"
    assert [lay.name for lay in viewer.layers] == ["noisy"] and errors == []
    # the call in flight finishes in the background and the next run waits for it
    assert len(leftovers()) == 1


@pytest.mark.parametrize("display", ["Deep Image Prior", "DeepRED"])
def test_100_start_stop_cycles_leave_threads_and_memory_as_they_were(
        make_napari_viewer, qtbot, errors, display):
    import torch

    viewer = make_napari_viewer()
    viewer.add_image(_noisy(), name="noisy")
    widget = open_widget(viewer, display, iterations=100_000)
    widget.preview_every.value = 1
    if display == "DeepRED":
        widget.denoiser.value = "tv"

    def cycle():
        worker = widget.run()
        assert worker is not None
        qtbot.waitUntil(lambda: widget._session is not None
                        and widget._session.last_step is not None, timeout=TIMEOUT_MS)
        widget.stop()
        qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)

    for _ in range(5):  # warm up: the first runs load torch's and Qt's lazy pieces
        cycle()
    join_leftovers(timeout=30)
    threads_before = (process_threads(), torch.get_num_threads())
    rss_before = _rss_mb()
    for _ in range(100):
        cycle()
    join_leftovers(timeout=30)
    qtbot.wait(50)
    assert runs_in_flight() == 0
    assert (process_threads(), torch.get_num_threads()) == threads_before
    growth = _rss_mb() - rss_before
    assert growth < 50, f"RSS grew by {growth:.1f} MB over 100 cycles"
    assert not [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]
    assert [lay.name for lay in viewer.layers] == ["noisy"] and errors == []


def test_a_dip_and_a_deepred_dock_running_at_once_give_the_thread_count_back(
        make_napari_viewer, qtbot, errors):
    import torch

    torch.set_num_threads(2)  # what the user had (the tests otherwise run on one thread)
    try:
        viewer = make_napari_viewer()
        viewer.add_image(_noisy(), name="noisy")
        before = (process_threads(), torch.get_num_threads())
        docks = [open_widget(viewer, name, iterations=100_000)
                 for name in ("Deep Image Prior", "DeepRED")]
        for order in ((0, 1), (1, 0)):
            for dock in docks:
                assert dock.run() is not None
            qtbot.waitUntil(lambda: all(d._session is not None
                                        and d._session.last_step is not None for d in docks),
                            timeout=TIMEOUT_MS)
            assert runs_in_flight() == 2
            for i in order:
                docks[i].stop()
                qtbot.waitUntil(lambda i=i: docks[i].worker is None, timeout=TIMEOUT_MS)
            assert runs_in_flight() == 0
            assert (process_threads(), torch.get_num_threads()) == before, order
        assert errors == []
    finally:
        torch.set_num_threads(1)
