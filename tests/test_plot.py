"""The dock widget's convergence plot (_plot.ConvergencePlot, issue 17): every step
recorded, the noise-level line, the kept iteration, rows shown only with data, values a
log axis cannot draw left out of the curve but kept in the record, and a drawing throttle
that keeps the plot's cost within its budget (checked with a fake clock, not timed).

Needs Qt, pyqtgraph and a display (run under ``xvfb-run -a``); not napari or torch."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("pyqtgraph")

from qtpy.QtGui import QFontMetrics  # noqa: E402

from napari_dip._plot import ConvergencePlot  # noqa: E402

pytestmark = pytest.mark.gui


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def plot(qtbot, clock):
    widget = ConvergencePlot(clock=clock)
    qtbot.addWidget(widget.native)
    widget.native.resize(400, 300)  # about the width it has in the dock
    widget.native.show()  # a hidden plot does not draw (see the last test)
    qtbot.waitExposed(widget.native)
    return widget


def _data(curve):
    """The (x, y) a curve was handed, before pyqtgraph's log mode and clipping."""
    x = np.asarray([] if curve.xData is None else curve.xData)
    y = np.asarray([] if curve.yData is None else curve.yData)
    return x, y


def _marks(plot) -> dict[float, str]:
    """Vertical lines on the loss row: position -> label ('' for none)."""
    loss_row = plot._rows["loss"].getPlotItem()
    found = {}
    for item in loss_row.items:
        if type(item).__name__ == "InfiniteLine" and item.angle == 90:
            label = item.label.format if getattr(item, "label", None) is not None else ""
            found[float(item.value())] = label or ""
    return found


def test_every_step_is_recorded_as_given(plot):
    iterations = np.arange(1, 301)
    losses = 0.1 * np.exp(-iterations / 80) + 0.01
    for start in range(0, 300, 25):  # batches as the runner sends them
        plot.add_points(iterations[start:start + 25], losses[start:start + 25])
    x, y = plot.series()["loss"]
    np.testing.assert_array_equal(x, iterations)
    np.testing.assert_array_equal(y, losses)
    assert plot.last_iteration == 300
    with pytest.raises(ValueError, match="3 iterations but 2 values"):
        plot.add_points([301, 302, 303], [0.1, 0.1])


def test_noise_level_line_spans_the_run_at_the_threshold(plot):
    plot.add_points(np.arange(1, 51), np.linspace(0.1, 0.02, 50), threshold=0.015)
    plot.flush()
    assert plot.threshold == 0.015
    x, y = _data(plot._threshold)
    np.testing.assert_allclose(x, [1, 50])
    np.testing.assert_allclose(y, [0.015, 0.015])
    plot.add_points([51], [0.019], threshold=None)  # the rule has none (anymore)
    plot.flush()
    assert plot.threshold is None
    assert _data(plot._threshold)[0].size == 0


def test_kept_iteration_candidate_follows_the_part_then_is_fixed_at_the_end(plot):
    plot.add_points(np.arange(1, 41), np.full(40, 0.05), kept=31)
    assert plot.kept_candidate == 31
    # a second plane starts at run iteration 41; its kept step is counted within it
    plot.add_points(np.arange(41, 61), np.full(20, 0.05), kept=12,
                    part_starts=[(41, "plane 2")])
    assert plot.kept_candidate == 40 + 12
    plot.flush()
    assert _marks(plot) == {41.0: "plane 2", 52.0: "candidate 52"}
    plot.finish(57, "stopped at the noise level")
    assert plot.kept_line == 57 and plot.kept_candidate is None
    assert _marks(plot) == {41.0: "plane 2", 57.0: "kept 57"}
    assert plot.text == "stopped at the noise level"
    assert plot._caption.text() == "stopped at the noise level"
    assert not plot._caption.isHidden()
    # every row carries the kept line, not only the loss row
    for name, row in plot._rows.items():
        positions = [float(i.value()) for i in row.getPlotItem().items
                     if type(i).__name__ == "InfiniteLine"]
        assert 57.0 in positions, name
    plot.reset()
    assert plot.kept_line is None and plot.text is None and _marks(plot) == {}
    assert plot.series()["loss"][0].size == 0 and plot._caption.isHidden()


def test_rows_are_shown_only_once_they_have_data(plot):
    assert plot.rows == {"loss": True, "variance": False, "psnr": False}
    plot.add_points([1, 2], [0.1, 0.09], [np.nan, np.nan])  # ES-WMV's window not full
    plot.flush()
    assert plot.rows == {"loss": True, "variance": False, "psnr": False}
    plot.add_points([3], [0.08], [1e-5])
    plot.flush()
    assert plot.rows == {"loss": True, "variance": True, "psnr": False}
    plot.add_psnr(3, 24.5)
    plot.flush()
    assert plot.rows == {"loss": True, "variance": True, "psnr": True}
    # only the lowest shown row carries the x axis
    axes = {name: row.getPlotItem().getAxis("bottom").isVisible()
            for name, row in plot._rows.items()}
    assert axes == {"loss": False, "variance": False, "psnr": True}
    np.testing.assert_array_equal(plot.series()["psnr"][1], [24.5])


def test_values_a_log_axis_cannot_draw_are_kept_but_not_drawn(plot):
    losses = np.array([0.1, np.nan, 0.0, -0.5, np.inf, 0.05])
    plot.add_points(np.arange(1, 7), losses, np.array([np.nan, 2e-4, 0.0, 1e-4, -1.0, 5e-5]),
                    threshold=0.0)
    plot.flush()
    x, y = plot.series()["loss"]
    np.testing.assert_array_equal(y, losses)  # the record holds every value
    drawn_x, drawn_y = _data(plot._loss)
    np.testing.assert_array_equal(drawn_x, [1, 6])
    np.testing.assert_allclose(drawn_y, [0.1, 0.05])
    np.testing.assert_array_equal(_data(plot._variance)[0], [2, 4, 6])
    # a threshold of 0 has no place on a log axis
    assert _data(plot._threshold)[0].size == 0


def test_redraws_wait_for_the_interval(plot, clock):
    plot.min_interval = 0.25
    start = plot.draws
    for k in range(100):  # 100 steps 10 ms apart: 1 s of run
        clock.now += 0.01
        plot.add_points([k + 1], [0.1])
    # at most one redraw per 0.25 s; every point is recorded all the same
    assert 3 <= plot.draws - start <= 5
    assert plot.series()["loss"][0].size == 100
    plot.flush()  # flush always draws
    assert plot.draws - start <= 6
    np.testing.assert_array_equal(_data(plot._loss)[0], np.arange(1, 101))


def test_drawing_stays_within_its_budget_of_the_wall_time(plot, clock, monkeypatch):
    """Each redraw costs 50 ms of (fake) time; steps come every 10 ms for 100 s. The
    plot may spend 2% of the wall time: 2 s, plus the one redraw that crosses it."""
    redraw = plot._redraw

    def slow_redraw():
        redraw()
        clock.now += 0.05

    monkeypatch.setattr(plot, "_redraw", slow_redraw)
    plot.reset()
    plot.min_interval = 0.0  # only the budget limits it
    wall_start = clock.now
    for k in range(10_000):
        clock.now += 0.01
        plot.add_points([k + 1], [0.1])
    wall = clock.now - wall_start
    assert plot.spent <= 0.02 * wall + 0.05 + 1e-9
    assert plot.spent >= 0.015 * wall  # and it does use its budget: the plot stays live
    assert plot.draws >= 30


def test_a_hidden_plot_does_not_draw_and_catches_up_when_shown(plot, qtbot, clock):
    plot.native.show()
    qtbot.waitExposed(plot.native)
    plot.native.hide()
    before = plot.draws
    for k in range(20):
        clock.now += 1.0
        plot.add_points([k + 1], [0.1])
    assert plot.draws == before  # nothing drawn while hidden
    plot.native.show()
    qtbot.waitUntil(lambda: plot.draws == before + 1, timeout=2000)
    np.testing.assert_array_equal(_data(plot._loss)[0], np.arange(1, 21))


def test_a_kept_label_near_the_right_edge_sits_left_of_its_line(plot):
    plot.add_points(np.arange(1, 301), np.full(300, 0.05))
    for kept, side in ((40, (0, 0.5)), (298, (1, 0.5))):
        plot.finish(kept)
        line = next(i for i in plot._rows["loss"].getPlotItem().items
                    if type(i).__name__ == "InfiniteLine" and float(i.value()) == kept)
        assert tuple(line.label.anchors[0]) == side, kept


def test_part_labels_that_would_collide_are_left_off(plot):
    """Planes that stop early start close together: a label goes only where it fits before
    the next plane's line (or the plot's end); every start keeps its line."""
    plot.add_points(np.arange(1, 1801), np.full(1800, 0.05),
                    part_starts=[(1200, "plane 2"), (1590, "plane 3"), (1600, "plane 4")])
    plot.flush()
    marks = _marks(plot)
    assert sorted(marks) == [1200.0, 1590.0, 1600.0]
    assert marks[1200.0] == "plane 2"  # 390 steps of room
    assert marks[1590.0] == ""  # 10 steps before plane 4's line: no room for its label
    width = plot._rows["loss"].getPlotItem().getViewBox().width()
    label_px = QFontMetrics(plot._font).horizontalAdvance("plane 4")
    fits = (1800 - 1600) * width / 1800 >= label_px + 6
    assert marks[1600.0] == ("plane 4" if fits else "")
