"""The engine's error messages in the dock widget's words.

The engine names its arguments the way Python calls them (``noise='poisson'``,
``task='inpaint'``, ``np.nan_to_num``); a napari user sees controls and layers instead. This
module keeps the engine's diagnosis, puts the controls' names in place of the keywords, and
replaces the engine's Python advice with what to do in the widget ("Choose a mask layer of the
same size as the image (96×96)."). No Qt, no napari.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .methods import METHODS
from .tasks import NOISE_MODELS, TASKS


@dataclass(frozen=True)
class Context:
    """What the advice may refer to: the image layer's Y, X size (None: unknown)."""

    image_shape: Sequence[int] | None = None

    @property
    def size(self) -> str:
        if not self.image_shape:
            return "the image"
        return "\u00d7".join(str(n) for n in self.image_shape[-2:])


def _noise(m: re.Match) -> str:
    model = NOISE_MODELS.get(m.group(1))
    return f"the {model.label if model else m.group(1)} noise model"


def _task(m: re.Match) -> str:
    task = TASKS.get(m.group(1))
    return f"the \u201c{task.description if task else m.group(1)}\u201d task"


def _method(m: re.Match) -> str:
    method = METHODS.get(m.group(1))
    return method.label if method else m.group(1)


#: Keyword spellings and what the widget calls them, applied in this order.
TERMS: list[tuple[str, str | Callable[[re.Match], str]]] = [
    (r"\s*\(e\.g\. np\.[a-z_]+\)", ""),
    (r"noise='(\w+)'", _noise),
    (r"task='(\w+)'", _task),
    (r"method='(\w+)'", _method),
    (r"mode='volume'", "the \u201c3-D volume\u201d stack mode"),
    (r"mode='slices'", "the \u201c2-D per plane\u201d stack mode"),
    (r"boundary='(\w+)'", "the \u201c\\1\u201d boundary"),
    (r"noise_sigma=([-+.\de]+)", "a noise \u03c3 of \\1"),
    (r"noise_sigma", "the noise \u03c3"),
    (r"early_stop=False", "early stopping off"),
    (r"tile=None", "tiles \u201cnone\u201d"),
    (r"tile>=(\d+)", "a tile size of at least \\1"),
    (r"tile=(\d+)", "a tile size of \\1"),
    (r"overlap>=(\d+)", "a tile overlap of at least \\1"),
    (r"overlap=(\d+)", "a tile overlap of \\1"),
    (r"factor=", "the SR factor "),
]

#: (a pattern of the engine's message, what to do in the widget); the first match wins.
FIXES: list[tuple[str, str]] = [
    (r"^mask has shape", "Choose a mask layer of the same size as the image ({size})."),
    (r"^flash image is \d+x\d+", "Choose a flash image of the same size as the image ({size})."),
    (r"^flash image is constant",
     "Choose a flash shot of the same scene, with some contrast, as the flash image."),
    (r"^image is constant", "Choose an image layer that has some contrast."),
    (r"NaN or infinite", "Fill those pixels first, or paint them into a Labels layer and run "
                         "the \u201cinpaint\u201d task with it as the mask."),
    (r"needs non-negative photon counts", "Subtract the camera offset from the layer first, "
                                          "or choose the Gaussian noise model."),
    (r"no known pixel", "Labels above 0 mark the pixels to fill: paint only the holes."),
    (r"mask marks no pixel", "Paint the pixels to fill with a label above 0."),
    (r"images need at least (\d+) pixels", "Choose an image of at least \\1\u00d7\\1 pixels."),
    (r"not smaller than the image's whole value range",
     "Give the noise \u03c3 in the image's own units (8-bit data with noise of 25 grey levels: "
     "25; the same data scaled to [0, 1]: 0.098)."),
    (r"beyond float32", "Scale the layer down first (divide it by its maximum)."),
    (r"values span only", "Subtract the layer's minimum from it first."),
    (r"stops by ES-WMV, which needs no noise level",
     "Choose \u201cunknown (ES-WMV)\u201d as the noise level, or the DIP method."),
    (r"cannot be tiled with boundary='circular'",
     "Choose the \u201cvalid\u201d boundary, or tiles \u201cnone\u201d."),
    (r"cannot be tiled", "Choose tiles \u201cnone\u201d."),
    (r"needs at least \d+ slices along Z", "Choose \u201c2-D per plane\u201d as the stack mode."),
    (r"^no such device|is not available", "Choose another device (\u201cauto\u201d or "
                                          "\u201ccpu\u201d)."),
]


def in_words(text: str) -> str:
    """``text`` with the engine's keyword spellings replaced by the widget's names."""
    for pattern, replacement in TERMS:
        text = re.sub(pattern, replacement, text)
    return text


def for_widget(message: str, context: Context | None = None) -> str:
    """The widget's message for the engine's ``message``: its diagnosis in the controls'
    words, then what to do, as sentences."""
    context = context or Context()
    message = message.strip()
    fix = None
    for pattern, advice in FIXES:
        match = re.search(pattern, message)
        if match:
            fix = match.expand(advice.replace("{size}", context.size))
            break
    diagnosis = message.split("; ", 1)[0] if fix else message
    diagnosis = in_words(diagnosis).rstrip(". ")
    sentence = diagnosis[:1].upper() + diagnosis[1:] + "."
    return f"{sentence} {fix}" if fix else sentence


__all__ = ["Context", "FIXES", "TERMS", "for_widget", "in_words"]
