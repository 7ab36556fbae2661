"""The dock widget's panels: magicgui containers that each own a group of controls and the
rule that shows or hides them (:meth:`Panel.update_visibility`, from the widget's settings and the
image's axes). Which controls a task or method needs is read from the engine's registries.

Each control's own ``visible`` is set, so a control counts as hidden exactly when its rule
hides it; a panel hides itself only while all its controls are hidden (:meth:`Panel.refresh`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from magicgui.application import use_app
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
    Widget,
)

from ._settings import (
    BOUNDARY_CHOICES,
    DENOISER_CHOICES,
    FACTOR_CHOICES,
    KERNEL_CHOICES,
    METHOD_CHOICES,
    NOISE_CHOICES,
    PRESET_CHOICES,
    SIGMA_CHOICES,
    STACK_CHOICES,
    STOP_LEVEL_CHOICES,
    TASK_CHOICES,
    TILE_CHOICES,
    WidgetSettings,
    noise_level_for,
    stack_mode_for,
    tiles_for,
    warm_start_applies,
)
from .tasks import INPUTS, NOISE_MODELS, TASKS

Choices = Callable[..., list]


class Panel(Container):
    """A labelled group of controls without margins of its own; ``exposes`` names the
    attributes that hold them (the dock widget has them under the same names)."""

    exposes: tuple[str, ...] = ()

    def __init__(self):
        super().__init__(labels=True)
        self.margins = (0, 0, 0, 0)

    @property
    def controls(self) -> list[Widget]:
        """The controls that hold settings (disabled while a run is going)."""
        return [getattr(self, name) for name in self.exposes]

    def update_visibility(self, settings: WidgetSettings, axes: str | None = None) -> None:
        """Show the controls that apply to ``settings`` (``axes``: the image's)."""

    def refresh(self, settings: WidgetSettings, axes: str | None = None) -> None:
        """:meth:`update_visibility`, then hide the panel itself while none of its controls
        shows (so it leaves no gap); each control keeps its own visibility."""
        self.update_visibility(settings, axes)
        self.visible = any(not w.native.isHidden() for w in self)


class SourcePanel(Panel):
    """Method, image, task and noise model."""

    exposes = ("method", "image", "task", "noise")

    def __init__(self, method: str, image_choices: Choices):
        super().__init__()
        self.method = ComboBox(label="method", choices=METHOD_CHOICES, value=method)
        self.image = ComboBox(label="image", choices=image_choices, nullable=True,
                              tooltip="the Image layer to restore (never modified); follows "
                                      "the layer you select or add")
        self.task = ComboBox(label="task", choices=TASK_CHOICES, value="denoise")
        self.noise = ComboBox(label="noise model", choices=NOISE_CHOICES, value="gaussian",
                              tooltip="Poisson for photon counts (non-negative data); "
                                      "Rician for magnitude MRI with a dark background "
                                      "(on bright images without one, Gaussian with its "
                                      "BM3D blend did better)")
        self.extend(self.controls)


#: The controls of a PSF: a layer, or the objective's parameters (napari_dip.psf).
PSF_CONTROLS = ("psf_layer", "psf_na", "psf_wavelength", "psf_pixel_size", "psf_z_step",
                "psf_ni")


def _length(label: str, value: float, tooltip: str, maximum: float = 50.0) -> FloatSpinBox:
    """A spin box for a length in micrometres (or an optical constant), 3 decimals."""
    box = FloatSpinBox(label=label, min=0.001, max=maximum, step=0.01, value=value,
                       tooltip=tooltip)
    box.native.setDecimals(3)
    return box


class TaskInputsPanel(Panel):
    """What a task needs besides the image: one control per entry of ``Task.inputs``, and
    the blur kernel's PSF (a layer, or modelled from the objective)."""

    exposes = (*INPUTS, *PSF_CONTROLS)  # "mask", "factor", "kernel", "boundary", "flash"

    def __init__(self, labels_choices: Choices, image_choices: Choices):
        super().__init__()
        self.mask = ComboBox(label="mask", choices=labels_choices,
                             tooltip="Labels layer: labels > 0 mark the pixels to fill")
        self.factor = ComboBox(label="SR factor", choices=FACTOR_CHOICES, value=4)
        self.kernel = ComboBox(label="blur kernel", choices=KERNEL_CHOICES, value="gaussian")
        self.boundary = ComboBox(
            label="boundary", choices=BOUNDARY_CHOICES, value="valid",
            tooltip="valid: the estimate reaches beyond the image's edges by the kernel's "
                    "half-width, so real images do not ring there; circular: the blur "
                    "wraps around (synthetic data blurred that way)")
        self.flash = ComboBox(label="flash image", choices=image_choices,
                              tooltip="the flash shot; 'image' is the no-flash shot")
        self.psf_layer = ComboBox(
            label="PSF layer", choices=image_choices,
            tooltip="an image of a bead, background subtracted and centred, sampled like "
                    "the image: 2-D, or a 3-D Z-stack for '3-D volume'")
        self.psf_na = _length("NA", 1.4, "numerical aperture of the objective", 1.7)
        self.psf_wavelength = _length("wavelength (\u00b5m)", 0.52,
                                      "emission wavelength in \u00b5m (GFP: 0.52)", 5.0)
        self.psf_pixel_size = _length("pixel size (\u00b5m)", 0.1,
                                      "pixel size in the sample (camera pixel / "
                                      "magnification), \u00b5m", 10.0)
        self.psf_z_step = _length("z step (\u00b5m)", 0.2,
                                  "the stack's Z step in \u00b5m (3-D volumes)")
        self.psf_ni = _length("immersion index", 1.515,
                              "refractive index of the immersion medium (oil 1.515, water "
                              "1.333, silicone 1.406)", 2.0)
        self.extend(self.controls)

    def update_visibility(self, settings: WidgetSettings, axes: str | None = None) -> None:
        task = TASKS[settings.task]
        for name in INPUTS:
            getattr(self, name).visible = task.needs(name)
        kernel = settings.kernel if task.needs("kernel") else None
        self.psf_layer.visible = kernel == "layer"
        for name in ("psf_na", "psf_wavelength", "psf_pixel_size", "psf_ni"):
            getattr(self, name).visible = kernel == "model"
        self.psf_z_step.visible = kernel == "model" \
            and stack_mode_for(settings, axes) == "volume"


class StoppingPanel(Panel):
    """Preset, iteration limit and early stopping (at a noise level where one applies)."""

    exposes = ("preset", "iterations", "early_stop", "noise_level", "noise_sigma")

    def __init__(self):
        super().__init__()
        self.preset = ComboBox(label="preset", choices=PRESET_CHOICES, value="fast")
        self.iterations = SpinBox(label="iterations", min=1, max=1_000_000, step=100,
                                  value=1500, tooltip="iteration limit; follows the preset "
                                  "and task until you change it")
        self.early_stop = CheckBox(text="early stopping", value=True)
        self.noise_level = ComboBox(
            label="noise level", choices=STOP_LEVEL_CHOICES, value="auto",
            tooltip="DIP stops once its residual reaches the Gaussian noise level (discrepancy "
                    "principle); without one it stops by the outputs' variance (ES-WMV)")
        self.noise_sigma = FloatSpinBox(
            label="noise \u03c3", min=0.0001, max=1e9, step=0.01, value=0.1,
            tooltip="standard deviation of the noise in the image's own units (8-bit data "
                    "with noise of 25 grey levels: 25)")
        self.noise_sigma.native.setDecimals(4)
        #: True until the user types an iteration limit.
        self.iterations_from_preset = True
        self.iterations.changed.connect(self._on_iterations_edited)
        self.extend(self.controls)

    def _on_iterations_edited(self, *_) -> None:
        self.iterations_from_preset = False

    def show_preset_iterations(self, task: str, factor: int) -> None:
        """Show the preset's iteration limit until the user types their own."""
        if not self.iterations_from_preset:
            return
        from .presets import get_preset

        preset = get_preset(self.preset.value, task, factor=factor)
        with self.iterations.changed.blocked():
            self.iterations.value = preset.iterations

    def update_visibility(self, settings: WidgetSettings, axes: str | None = None) -> None:
        applies = noise_level_for(settings)
        self.noise_level.visible = applies
        self.noise_sigma.visible = applies and settings.noise_level == "fixed"
        # a likelihood that needs the noise's sigma (Rician) cannot run without one
        needed = NOISE_MODELS[settings.noise].likelihood_sigma
        choices = [c for c in STOP_LEVEL_CHOICES if not (needed and c[1] == "none")]
        if list(self.noise_level.choices) != [c[1] for c in choices]:
            value = self.noise_level.value
            with self.noise_level.changed.blocked():
                self.noise_level.choices = ()  # magicgui appends new choices: keep the order
                self.noise_level.choices = choices
                self.noise_level.value = value if value in self.noise_level.choices \
                    else "auto"
        self.noise_level.tooltip = (
            "the Rician likelihood needs the noise's standard deviation: estimated from the "
            "image's background, or known" if needed else
            "DIP stops once its residual reaches the Gaussian noise level (discrepancy "
            "principle); without one it stops by the outputs' variance (ES-WMV)")


class StacksPanel(Panel):
    """Stack mode (layers with more than two dimensions), warm start and tiles."""

    exposes = ("stack_mode", "warm_start", "tiling", "tile_size", "tile_overlap")

    def __init__(self):
        super().__init__()
        self.stack_mode = ComboBox(
            label="stack", choices=STACK_CHOICES, value="slices",
            tooltip="layers with more than two dimensions: restore every plane with the 2-D "
                    "network, the whole volume with the 3-D network, or just the plane on "
                    "screen (a quick preview)")
        self.warm_start = CheckBox(
            text="warm start (each plane or tile from the last)", value=True,
            tooltip="start each plane (or tile) from the previous one's network and stop it "
                    "once it fits as well as the first: several times fewer iterations")
        self.tiling = ComboBox(label="tiles", choices=TILE_CHOICES, value="none",
                               tooltip="restore large images in overlapping tiles, blended "
                                       "without seams")
        self.tile_size = SpinBox(label="tile size", min=32, max=16384, step=32, value=512)
        self.tile_overlap = SpinBox(label="tile overlap", min=0, max=8192, step=8, value=128)
        self.extend(self.controls)

    def update_choices(self, axes: str | None) -> None:
        """Offer "3-D volume" only for layers with a Z axis."""
        choices = [c for c in STACK_CHOICES if c[1] != "volume" or "Z" in (axes or "")]
        if list(self.stack_mode.choices) != [c[1] for c in choices]:  # choices: the values
            value = self.stack_mode.value
            with self.stack_mode.changed.blocked():
                self.stack_mode.choices = ()  # magicgui appends new choices: keep the order
                self.stack_mode.choices = choices
            if value in self.stack_mode.choices:
                self.stack_mode.value = value

    def update_visibility(self, settings: WidgetSettings, axes: str | None = None) -> None:
        mode = stack_mode_for(settings, axes)
        self.stack_mode.visible = axes is not None and len(axes.replace("C", "")) > 2
        tileable = mode != "volume"
        self.tiling.visible = tileable
        self.tile_size.visible = self.tile_overlap.visible = \
            tileable and settings.tiling == "fixed"
        self.warm_start.visible = warm_start_applies(settings, axes)


class DevicePanel(Panel):
    """Where the run goes, its seed, how many fits are averaged, and whether the network's
    estimate is blended with the classical method's."""

    exposes = ("device", "seed", "ensemble", "blend")

    def __init__(self, devices: Sequence[str]):
        super().__init__()
        self.device = ComboBox(label="device", choices=list(devices), value="auto")
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0)
        self.ensemble = SpinBox(
            label="ensemble (0: auto)", min=0, max=64, value=0,
            tooltip="fit K networks at once (seeds seed, seed+1, ...) and average them; K > 1 "
                    "also gives an uncertainty layer (their per-pixel standard deviation). "
                    "0 (auto, the default): 2 where DIP denoises (Gaussian or Poisson noise) "
                    "or super-resolves to at most 100x100 pixels (1 where it blends with "
                    "BM3D), else 1")
        self.blend = CheckBox(
            text="blend with the classical method", value=True,
            tooltip="single images and a stack's planes: blend the network's estimate "
                    "with BM3D (Gaussian noise; the weight a validation fit chooses), "
                    "Anscombe + BM3D (photon "
                    "counts; likewise), Richardson-Lucy (photon-count deconvolution) or the "
                    "self-tuned Wiener filter (circular deblurring; both averaged equally); "
                    "off: the network's estimate alone")
        self.extend(self.controls)


class DeepREDPanel(Panel):
    """DeepRED's denoiser and its noise level (shown for DeepRED only)."""

    exposes = ("denoiser", "sigma_mode", "denoiser_sigma")

    def __init__(self):
        super().__init__()
        self.denoiser = ComboBox(label="denoiser", choices=DENOISER_CHOICES, value="nlm")
        self.sigma_mode = ComboBox(label="denoiser \u03c3", choices=SIGMA_CHOICES,
                                   value="default",
                                   tooltip="noise level the denoiser is tuned to")
        self.denoiser_sigma = FloatSpinBox(
            label="\u03c3 value", min=0.001, max=1.0, step=0.005, value=0.02,
            tooltip="in [0, 1] units: a fraction of the image's intensity range")
        self.denoiser_sigma.native.setDecimals(3)
        self.extend(self.controls)

    def update_visibility(self, settings: WidgetSettings, axes: str | None = None) -> None:
        deepred = settings.method == "deepred"
        self.denoiser.visible = deepred
        self.sigma_mode.visible = deepred
        self.denoiser_sigma.visible = deepred and settings.sigma_mode == "fixed"


class OutputPanel(Panel):
    """The live preview, the iteration stack (single images only), and the reference the
    convergence plot measures PSNR against."""

    exposes = ("preview_every", "keep_stack", "stack_every", "reference")

    def __init__(self, reference_choices: Choices):
        super().__init__()
        self.reference = ComboBox(
            label="reference", choices=reference_choices, nullable=True, value=None,
            tooltip="a clean image of the same scene (a sample's ground truth): the plot "
                    "shows the estimate's PSNR against it; never used by the restoration")
        self.preview_every = SpinBox(label="preview every", min=1, max=100_000, value=25,
                                     tooltip="show the current estimate every N iterations")
        self.keep_stack = CheckBox(text="keep iteration stack", value=False)
        self.stack_every = SpinBox(label="stack every", min=1, max=100_000, value=50,
                                   tooltip="keep the estimate every K iterations")
        self.extend(self.controls)

    def update_visibility(self, settings: WidgetSettings, axes: str | None = None) -> None:
        mode = stack_mode_for(settings, axes)
        single = not tiles_for(settings, mode) and mode in (None, "plane")
        self.keep_stack.visible = single  # the iteration stack is for single images
        self.stack_every.visible = single and bool(settings.keep_stack)


class RunPanel(Panel):
    """Run / Stop, a short progress bar, the status line and the error area (both wrap and
    grow, never clipped), the convergence plot's switch, the compare toggle, and the
    parameters of the last run out."""

    exposes = ("run_button", "progress", "status", "error", "show_plot", "compare",
               "copy_button", "export_button")

    def __init__(self):
        super().__init__()
        self.run_button = PushButton(text="Run")
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="", value="")
        self.error = Label(label="", value="")
        self.show_plot = CheckBox(text="convergence plot", value=True,
                                  tooltip="data term, noise level, ES-WMV variance and PSNR "
                                          "against the reference, live")
        self.compare = CheckBox(text="compare side by side", value=False,
                                tooltip="show input, result, reference and uncertainty in "
                                        "napari's grid mode; untick to go back")
        self.copy_button = PushButton(text="Copy parameters")
        self.export_button = PushButton(text="Export JSON\u2026")
        buttons = Container(layout="horizontal", labels=False,
                            widgets=[self.copy_button, self.export_button])
        buttons.margins = (0, 0, 0, 0)
        toggles = Container(layout="horizontal", labels=False,
                            widgets=[self.show_plot, self.compare])
        toggles.margins = (0, 0, 0, 0)
        self.progress.native.setTextVisible(True)
        self.progress.native.setFormat("idle")
        for label in (self.status, self.error):
            _wrapping(label)
        self.error.native.setStyleSheet("color: #ff7a6b;")
        self.error.visible = False
        self.extend([self.run_button, self.progress, self.status, self.error, toggles,
                     buttons])

    @property
    def controls(self) -> list[Widget]:
        return []

    def set_running(self, running: bool) -> None:
        self.copy_button.enabled = self.export_button.enabled = not running
        self.compare.enabled = not running
        self.run_button.text = "Stop" if running else "Run"
        self.run_button.enabled = True
        if running:
            self.progress.max = 1
            self.progress.value = 0
            self.progress.native.setFormat("starting\u2026")
            self.show_error(None)

    def set_stopping(self) -> None:
        self.run_button.text = "Stopping\u2026"
        self.run_button.enabled = False

    def set_status(self, text: str) -> None:
        self.status.value = text
        self.status.native.updateGeometry()

    def show_error(self, text: str | None) -> None:
        """Show ``text`` in full in the error area (None: hide it)."""
        self.error.value = text or ""
        self.error.visible = bool(text)
        self.error.native.updateGeometry()


def _wrapping(label: Label) -> None:
    """A label that wraps at the widget's width and grows in height for its text, so no
    line is cut: a QLabel with word wrap and a height-for-width size policy."""
    from qtpy.QtWidgets import QSizePolicy

    native = label.native
    native.setWordWrap(True)
    policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
    policy.setHeightForWidth(True)
    native.setSizePolicy(policy)
    native.setTextInteractionFlags(native.textInteractionFlags()
                                   | _selectable())


def _selectable():
    from qtpy.QtCore import Qt

    return Qt.TextInteractionFlag.TextSelectableByMouse


def align_labels(panels: Sequence[Panel]) -> None:
    """Give every panel's labels the width of the widest, so the controls line up."""
    measure = use_app().get_obj("get_text_width")
    labelled = [w for panel in panels for w in panel if w._labeled_widget() is not None]
    if not labelled:
        return
    widest = max(measure(w.label) for w in labelled)
    for w in labelled:
        w._labeled_widget().label_width = widest


__all__ = ["PSF_CONTROLS", "DeepREDPanel", "DevicePanel", "OutputPanel", "Panel", "RunPanel",
           "SourcePanel", "StacksPanel", "StoppingPanel", "TaskInputsPanel", "align_labels"]
