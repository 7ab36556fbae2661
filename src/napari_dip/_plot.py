"""The dock widget's live convergence plot: how a run converges, and where it stops.

:class:`ConvergencePlot` is a :class:`magicgui.widgets.Container` that holds no magicgui
widgets of its own; its Qt layout (``plot.native.layout()``) holds the pyqtgraph rows and a
one-line caption, so ``container.append(plot)`` (or ``extend``) embeds it in the dock
widget like any other control, and ``plot.visible`` shows or hides it. Rows, top to bottom,
sharing one x axis (iterations; for stacks and tiles the whole run's count, with a thin
vertical line where each plane or tile starts):

* **data term**: the loss of every recorded step, log y axis, with the **noise level**
  the run stops at (``Step.threshold``, in the loss's units) as a dashed horizontal line;
* **variance**: ES-WMV's windowed-moving variance (``Step.extras["variance"]``), log y
  axis, shown once the run has a finite variance;
* **PSNR (dB)**: the previews' PSNR against a reference image, shown once one is added.

The kept iteration is marked on every row: dashed while running (ES-WMV's candidate,
``Step.kept``), solid with the text "kept 912" once the run has ended (:meth:`finish`).

Drawing is throttled so the plot costs a small fraction of a run: points go into growing
numpy buffers (amortised doubling), and the curves are redrawn at most every
``min_interval`` seconds and only while the drawing time so far (:attr:`spent`, which
includes Qt's painting of the rows) stays under ``budget`` of the wall time since
:meth:`reset`. :meth:`flush` and :meth:`finish` always draw. Needs Qt and pyqtgraph, not
torch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pyqtgraph as pg
from magicgui.widgets import Container
from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtGui import QFont, QFontMetrics
from qtpy.QtWidgets import QLabel, QSizePolicy

from ._runner import PreviewThrottle

#: Curve colours: mid-tone, saturated enough to read on napari's dark and light themes.
LOSS_COLOR = "#4ea1ff"
THRESHOLD_COLOR = "#f28e2b"
VARIANCE_COLOR = "#59b84a"
PSNR_COLOR = "#e0609f"
KEPT_COLOR = "#c9a227"
PART_COLOR = (150, 150, 150, 140)
#: Axis and text colour (grey: readable on a dark and on a light background).
FOREGROUND = (150, 150, 150)

#: Row heights in pixels (without the x axis, which only the lowest shown row has).
ROW_HEIGHT = {"loss": 112, "variance": 60, "psnr": 60}
#: The x axis' height (ticks and the "iteration" label) in pixels.
X_AXIS_HEIGHT = 34
#: Width of every row's y axis in pixels, so that the rows' plot areas line up.
Y_AXIS_WIDTH = 54
#: Parts (planes, tiles) beyond this count get their start line without a label.
MAX_PART_LABELS = 12

TOOLTIPS = {
    "loss": "data term: the loss of every step (log scale, the loss's units)\n"
            "orange dashed: the noise level the run stops at\n"
            "gold: the kept iteration (dashed while running: ES-WMV's candidate)\n"
            "grey: where a plane or tile starts",
    "variance": "ES-WMV: variance of the recent estimates (log scale); the run keeps the "
                "estimate at its minimum",
    "psnr": "PSNR of the preview against the reference image, in dB (higher is better)",
}


class _Buffer:
    """Growing (x, y) float64 buffers: appending n points costs O(n) amortised."""

    def __init__(self, capacity: int = 256):
        self.x = np.empty(capacity)
        self.y = np.empty(capacity)
        self.n = 0

    def append(self, x, y) -> None:
        x = np.asarray(x, dtype=np.float64).ravel()
        y = np.asarray(y, dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise ValueError(f"{x.size} iterations but {y.size} values")
        end = self.n + x.size
        if end > self.x.size:
            capacity = max(end, 2 * self.x.size)
            for name in ("x", "y"):
                grown = np.empty(capacity)
                grown[:self.n] = getattr(self, name)[:self.n]
                setattr(self, name, grown)
        self.x[self.n:end] = x
        self.y[self.n:end] = y
        self.n = end

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[:self.n], self.y[:self.n]

    def drawable(self, log: bool) -> tuple[np.ndarray, np.ndarray]:
        """The points a plot can draw: finite, and positive on a log axis."""
        x, y = self.view()
        keep = np.isfinite(y) & np.isfinite(x)
        if log:
            keep &= y > 0
        return x[keep], y[keep]


class _LogAxis(pg.AxisItem):
    """A log axis with few, short labels: the decades ("1e-5", "0.01") when two or more
    fit, else 1, 2 and 5 times the decades; unlabelled minor ticks in between."""

    def __init__(self, orientation):
        super().__init__(orientation)
        self.setStyle(maxTextLevel=0)

    def tickValues(self, minVal, maxVal, size):  # noqa: N802 - pyqtgraph's name
        if not self.logMode:
            return super().tickValues(minVal, maxVal, size)
        lo, hi = sorted((float(minVal), float(maxVal)))
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo > 60:
            return []
        fit = max(2, int(size // 16))  # labels that fit along the axis
        decades = np.arange(math.floor(lo), math.ceil(hi) + 1)
        major = [float(d) for d in decades if lo <= d <= hi]
        minor = [float(d + math.log10(m)) for d in decades for m in range(2, 10)
                 if lo <= d + math.log10(m) <= hi]
        if len(major) >= 2:
            step = math.ceil(len(major) / fit)
            return [(float(step), major[::step]), (0.0, minor if step == 1 else [])]
        labelled = [float(d + math.log10(m)) for d in decades for m in (1, 2, 5)
                    if lo <= d + math.log10(m) <= hi]
        if len(labelled) > fit:
            labelled = [v for v in labelled if abs(v - round(v)) < 1e-9 or
                        abs(v - math.floor(v) - math.log10(5)) < 1e-9]
        return [(0.3, labelled), (0.0, [v for v in minor if v not in labelled])]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        if not self.logMode:
            return super().tickStrings(values, scale, spacing)
        return [_short(10.0 ** v) for v in values]


def _short(value: float) -> str:
    """A tick label: "0.02", "500", "1e-5", "2e+4"."""
    if 1e-3 <= value < 1e4:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


class _Row(pg.PlotWidget):
    """One plot row; its painting time counts towards the owner's :attr:`spent`."""

    def __init__(self, owner: ConvergencePlot, log: bool = False):
        axes = {"left": _LogAxis("left")} if log else None
        super().__init__(background=None, axisItems=axes)
        self._owner = owner

    def paintEvent(self, event):  # noqa: N802 - Qt's name
        start = self._owner._clock()
        super().paintEvent(event)
        self._owner.spent += self._owner._clock() - start


class _ShowFilter(QObject):
    """Draws the plot when it is shown (it skips drawing while hidden)."""

    def __init__(self, owner: ConvergencePlot):
        super().__init__()
        self._owner = owner

    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Show and self._owner._dirty:
            self._owner.flush()
        return False


def fitting_labels(starts: Sequence[tuple[float, str]], last: float, width: float,
                   advance) -> list[tuple[float, str | None]]:
    """The part starts (iteration, label) with the labels that fit a plot ``width`` pixels
    wide spanning iterations up to ``last``: a label ``advance(label)`` pixels wide is left
    off where it would run into the next start's line or past the right edge (then only
    its line shows), and all are left off beyond :data:`MAX_PART_LABELS` parts."""
    if len(starts) > MAX_PART_LABELS:
        return [(x, None) for x, _ in starts]
    per_pixel = last / max(width, 1.0)
    ends = [x for x, _ in starts[1:]] + [last]
    return [(x, label if advance(label) + 6 <= (end - x) / per_pixel else None)
            for (x, label), end in zip(starts, ends, strict=False)]


class ConvergencePlot(Container):
    """The live convergence plot (see the module's docstring); a magicgui Container.

    Parameters
    ----------
    min_interval:
        Seconds between two throttled redraws, at least.
    budget:
        Fraction of the wall time since :meth:`reset` that drawing may take; a redraw is
        skipped while :attr:`spent` exceeds it.
    clock:
        Seconds, monotonic (a fake one in tests).

    Attributes
    ----------
    threshold:
        The noise-level line's value in the loss's units, None while none is shown.
    kept_line:
        The kept iteration marked by :meth:`finish`, None before (or without one).
    kept_candidate:
        ES-WMV's kept iteration while running (the dashed line), on the plot's x axis.
    spent:
        Seconds spent drawing since :meth:`reset` (data updates and Qt painting).
    draws:
        Redraws since :meth:`reset`.
    text:
        The caption :meth:`finish` was given, or None.
    """

    def __init__(self, min_interval: float = 0.25, budget: float = 0.02,
                 clock: Callable[[], float] = time.perf_counter, **kwargs):
        kwargs.setdefault("labels", False)
        super().__init__(**kwargs)
        self.min_interval = float(min_interval)
        self.budget = float(budget)
        self._clock = clock
        layout = self.native.layout()
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        small = QFont()
        small.setPointSizeF(max(6.5, small.pointSizeF() * 0.8))
        self._font = small

        self._rows: dict[str, _Row] = {}
        for name, label in (("loss", "data term"), ("variance", "variance"),
                            ("psnr", "PSNR (dB)")):
            row = _Row(self, log=name != "psnr")
            row.setToolTip(TOOLTIPS[name])
            row.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
            row.setMinimumWidth(120)
            item = row.getPlotItem()
            item.setMenuEnabled(False)
            item.hideButtons()
            item.setClipToView(True)
            item.setDownsampling(auto=True, mode="peak")
            item.setLogMode(x=False, y=name != "psnr")
            item.layout.setContentsMargins(0, 4, 6, 0)
            for side in ("left", "bottom"):
                axis = item.getAxis(side)
                axis.setPen(pg.mkPen(FOREGROUND))
                axis.setTextPen(pg.mkPen(FOREGROUND))
                axis.setStyle(tickFont=small, tickTextOffset=3, autoExpandTextSpace=False)
                axis.enableAutoSIPrefix(False)
                axis.label.setFont(small)
            item.setLabel("left", label, color=pg.mkColor(FOREGROUND))
            item.getAxis("left").setWidth(Y_AXIS_WIDTH)
            item.setLabel("bottom", "iteration", color=pg.mkColor(FOREGROUND))
            item.showGrid(x=False, y=True, alpha=0.15)
            if self._rows:
                row.setXLink(self._rows["loss"])
            self._rows[name] = row
            layout.addWidget(row)

        loss_item = self._rows["loss"].getPlotItem()
        self._loss = loss_item.plot(pen=pg.mkPen(LOSS_COLOR, width=1.5), name="data term")
        self._threshold = loss_item.plot(
            pen=pg.mkPen(THRESHOLD_COLOR, width=1.2, style=Qt.PenStyle.DashLine),
            name="noise level")
        self._threshold_text = pg.TextItem("noise level", color=THRESHOLD_COLOR,
                                           anchor=(0, 1))
        self._threshold_text.setFont(small)
        loss_item.addItem(self._threshold_text, ignoreBounds=True)
        self._variance = self._rows["variance"].getPlotItem().plot(
            pen=pg.mkPen(VARIANCE_COLOR, width=1.5), name="variance")
        self._psnr = self._rows["psnr"].getPlotItem().plot(
            pen=pg.mkPen(PSNR_COLOR, width=1.5), symbol="o", symbolSize=3,
            symbolPen=None, symbolBrush=PSNR_COLOR, name="PSNR")

        self._caption = QLabel()
        self._caption.setFont(small)
        self._caption.setWordWrap(True)
        self._caption.setContentsMargins(Y_AXIS_WIDTH, 0, 4, 2)
        self._caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout.addWidget(self._caption)

        self._show_filter = _ShowFilter(self)
        self.native.installEventFilter(self._show_filter)
        self._marks: list[tuple[_Row, pg.InfiniteLine]] = []  # part starts, kept lines
        self.reset()

    # -- the widget's API ------------------------------------------------------------------
    def reset(self) -> None:
        """Clear everything for a new run (and restart the throttle's clock)."""
        self._buffers = {"loss": _Buffer(), "variance": _Buffer(), "psnr": _Buffer()}
        self.threshold: float | None = None
        self.kept_line: float | None = None
        self.kept_candidate: float | None = None
        self.text: str | None = None
        self.part_starts: list[tuple[float, str]] = []
        self._part_offset = 0.0  # run iterations before the part in progress
        self._has_variance = False
        self._throttle = PreviewThrottle(self.budget, self._clock)  # the time budget
        self._last_draw = -math.inf
        self.draws = 0
        self._drawn_marks: tuple = ()
        self._dirty = True
        self.flush()

    def add_points(self, iterations: Sequence[float], losses: Sequence[float],
                   variances: Sequence[float] | None = None, *, threshold: float | None = None,
                   kept: float | None = None,
                   part_starts: Iterable[tuple[float, str]] = ()) -> None:
        """Record a batch of steps, and redraw unless the throttle says wait.

        ``iterations`` (the plot's x: the whole run's iteration for stacks and tiles),
        ``losses`` (the data term, in the loss's units) and ``variances`` (ES-WMV's, NaN
        where it has none; or None) are sequences of equal length. ``threshold``: the
        latest noise level the run stops at (None: none). ``kept``: ES-WMV's latest kept
        iteration, counted within the part in progress as ``Step.kept`` is (None: none).
        ``part_starts``: (iteration, label) where a new plane or tile began.
        """
        for x, label in part_starts:
            self.part_starts.append((float(x), str(label)))
            self._part_offset = float(x) - 1
        self._buffers["loss"].append(iterations, losses)
        if variances is not None:
            variances = np.asarray(variances, dtype=np.float64)
            self._buffers["variance"].append(iterations, variances)
            if not self._has_variance and np.any(np.isfinite(variances) & (variances > 0)):
                self._has_variance = True
        self.threshold = None if threshold is None else float(threshold)
        self.kept_candidate = None if kept is None else self._part_offset + float(kept)
        self._dirty = True
        self._maybe_draw()

    def add_psnr(self, iteration: float, psnr_db: float) -> None:
        """Record the PSNR (dB) of the estimate at ``iteration`` against the reference."""
        self._buffers["psnr"].append([iteration], [psnr_db])
        self._dirty = True
        self._maybe_draw()

    def finish(self, kept: float | None, text: str | None = None) -> None:
        """The run ended: mark the ``kept`` iteration (None: no mark) on every row, show
        ``text`` (e.g. "stopped at the noise level at 498") below the plot, and draw."""
        self.kept_line = None if kept is None else float(kept)
        self.kept_candidate = None
        self.text = text
        self._dirty = True
        self.flush()

    def flush(self) -> None:
        """Redraw now, whatever the throttle says."""
        self._draw()

    def series(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """What was recorded, every point (not thinned, non-positive and NaN values
        included): ``"loss"``, ``"variance"`` and ``"psnr"``, each (x, y) arrays."""
        return {name: tuple(a.copy() for a in buffer.view())
                for name, buffer in self._buffers.items()}

    @property
    def spent(self) -> float:
        """Seconds spent drawing since :meth:`reset` (data updates and Qt painting)."""
        return self._throttle.used

    @spent.setter
    def spent(self, seconds: float) -> None:
        self._throttle.used = float(seconds)

    @property
    def last_iteration(self) -> int:
        """The last recorded step's iteration (0 before any)."""
        buffer = self._buffers["loss"]
        return int(buffer.x[buffer.n - 1]) if buffer.n else 0

    @property
    def rows(self) -> dict[str, bool]:
        """Which rows are shown (``"loss"`` always; ``"variance"``, ``"psnr"``)."""
        return {name: not row.isHidden() for name, row in self._rows.items()}

    # -- drawing ---------------------------------------------------------------------------
    def _maybe_draw(self) -> None:
        now = self._clock()
        if now - self._last_draw < self.min_interval:
            return
        if self.native.isHidden():  # drawn when shown again (_ShowFilter)
            return
        if not self._throttle.allow():
            return
        self._draw()

    def _draw(self) -> None:
        start = self._clock()
        self._redraw()
        now = self._clock()
        self._throttle.spent(now - start)
        self._last_draw = now
        self.draws += 1
        self._dirty = False

    def _redraw(self) -> None:
        """Hand the recorded points to the curves and lay the rows out."""
        buffers = self._buffers
        x, y = buffers["loss"].drawable(log=True)
        self._loss.setData(x, y, skipFiniteCheck=True)
        if self.threshold is not None and self.threshold > 0 and buffers["loss"].n:
            lo, hi = float(np.nanmin(buffers["loss"].x[:buffers["loss"].n])), self.last_iteration
            self._threshold.setData([lo, max(hi, lo + 1)], [self.threshold] * 2,
                                    skipFiniteCheck=True)
            self._threshold_text.setPos(lo, math.log10(self.threshold))
            self._threshold_text.setVisible(True)
        else:
            self._threshold.setData([], [])
            self._threshold_text.setVisible(False)
        shown = {"loss": True, "variance": self._has_variance, "psnr": False}
        if self._has_variance:
            self._variance.setData(*buffers["variance"].drawable(log=True), skipFiniteCheck=True)
        else:
            self._variance.setData([], [])
        px, py = buffers["psnr"].drawable(log=False)
        shown["psnr"] = bool(px.size)
        self._psnr.setData(px, py, skipFiniteCheck=True)
        self._draw_marks()
        self._layout_rows(shown)
        self._caption.setText(self.text or "")
        self._caption.setVisible(bool(self.text))

    def _draw_marks(self) -> None:
        """The vertical lines: part starts, and the kept iteration (only when changed)."""
        parts = self._part_labels()
        marks = (tuple(parts), self.kept_candidate, self.kept_line)
        if marks == self._drawn_marks:
            return
        self._drawn_marks = marks
        for row, line in self._marks:  # through the PlotItem, which lists its items too
            row.getPlotItem().removeItem(line)
        self._marks = []
        for x, label in parts:
            for name, row in self._rows.items():
                text = label if name == "loss" else None
                self._add_mark(row, x, pg.mkPen(PART_COLOR, width=1), text, 0.95)
        kept = self.kept_line if self.kept_line is not None else self.kept_candidate
        if kept is not None:
            style = Qt.PenStyle.SolidLine if self.kept_line is not None else Qt.PenStyle.DashLine
            pen = pg.mkPen(KEPT_COLOR, width=1.5, style=style)
            for name, row in self._rows.items():
                text = None
                if name == "loss":
                    text = f"kept {kept:.0f}" if self.kept_line is not None \
                        else f"candidate {kept:.0f}"
                self._add_mark(row, kept, pen, text, 0.5,
                               left=kept > 0.6 * max(self.last_iteration, 1))

    def _part_labels(self) -> list[tuple[float, str | None]]:
        width = self._rows["loss"].getPlotItem().getViewBox().width()
        return fitting_labels(self.part_starts, max(self.last_iteration, 1), width,
                              QFontMetrics(self._font).horizontalAdvance)

    def _add_mark(self, row, x, pen, text, position, left: bool = False) -> None:
        """A vertical line at ``x``, its label to the right (``left``: to the left, for a
        line near the plot's right edge, where a label on its right would be cut)."""
        side = (1, 0.5) if left else (0, 0.5)
        opts = {"position": position, "color": pen.color(), "anchors": [side, side],
                "rotateAxis": None}
        line = pg.InfiniteLine(pos=x, angle=90, pen=pen, label=text, labelOpts=opts)
        if getattr(line, "label", None) is not None:
            line.label.setFont(self._font)
        row.getPlotItem().addItem(line, ignoreBounds=True)
        self._marks.append((row, line))

    def _layout_rows(self, shown: dict[str, bool]) -> None:
        """Show the rows that have data; only the lowest shown row has the x axis."""
        names = [name for name in self._rows if shown[name]]
        for name, row in self._rows.items():
            visible = name in names
            if visible == row.isHidden():
                row.setVisible(visible)
            bottom = name == names[-1]
            item = row.getPlotItem()
            if item.getAxis("bottom").isVisible() != bottom:
                item.showAxis("bottom", bottom)
            height = ROW_HEIGHT[name] + (X_AXIS_HEIGHT if bottom else 0)
            if row.height() != height or row.minimumHeight() != height:
                row.setFixedHeight(height)
