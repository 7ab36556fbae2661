"""What the dock widget says and shows, without Qt: error messages in the controls' words,
every step reaching the convergence plot, PSNR against a reference, the compare view's
round trip, and layer descriptions (issue 17)."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest

from napari_dip import validate
from napari_dip._compare import CompareView, grid_shape
from napari_dip._layers import build_metadata, describe_run
from napari_dip._messages import Context, for_widget, in_words
from napari_dip._runner import psnr, run_steps
from napari_dip.records import Result

RNG = np.random.default_rng(5)
GOOD = RNG.random((48, 48)).astype(np.float32)
_holes = np.zeros((40, 40), bool)
_holes[2:6, 2:6] = True

#: (engine call, what the widget's message must say, in the controls' words)
ERRORS = [
    (dict(image=GOOD, task="inpaint", mask=_holes),
     "Choose a mask layer of the same size as the image (48\u00d748)."),
    (dict(image=GOOD - 0.5, noise="poisson"),
     "Subtract the camera offset from the layer first, or choose the Gaussian noise model."),
    (dict(image=np.where(GOOD > 0.9, np.nan, GOOD)), "run the \u201cinpaint\u201d task"),
    (dict(image=GOOD, task="flash_no_flash", flash=RNG.random((40, 40))),
     "Choose a flash image of the same size as the image (48\u00d748)."),
    (dict(image=GOOD, noise_sigma=50.0), "Give the noise \u03c3 in the image's own units"),
    (dict(image=np.stack([GOOD] * 3), axes="ZYX", mode="volume"),
     "Choose \u201c2-D per plane\u201d as the stack mode."),
    (dict(image=np.full((48, 48), 0.5, np.float32)),
     "Choose an image layer that has some contrast."),
]


@pytest.mark.parametrize("call, advice", ERRORS, ids=[a[:30] for _, a in ERRORS])
def test_engine_errors_read_as_widget_advice(call, advice):
    call = dict(call)
    image = call.pop("image")
    with pytest.raises(ValueError) as caught:
        validate(image, **call)
    message = for_widget(str(caught.value), Context(image.shape))
    assert advice in message
    # no Python left: keyword=value, numpy calls
    assert not re.search(r"\b[a-z_]+=['\w]", message), message
    assert "np." not in message
    assert message[0].isupper() and message.endswith(".")


def test_keywords_become_control_names():
    text = in_words("noise='poisson' with task='inpaint' and method='deepred', tile=None")
    assert text == ("the Poisson (photon counts) noise model with the \u201cinpaint (fill "
                    "masked pixels)\u201d task and DeepRED, tiles \u201cnone\u201d")
    # a message without a known fix is kept whole, in words, as a sentence
    assert for_widget("early_stop=False runs every iteration") == \
        "Early stopping off runs every iteration."
    assert for_widget("overlap=4 is too small").startswith("A tile overlap of 4")


def _run(**kwargs):
    gen = run_steps(GOOD, iterations=30, preview_every=10, min_interval=10.0, threads=1,
                    seed=0, early_stop=False, **kwargs)
    updates = []
    try:
        while True:
            updates.append(next(gen))
    except StopIteration as stop:
        return updates, stop.value


def test_every_step_reaches_the_plot_once():
    updates, outcome = _run()
    iterations = [i for u in updates for i in u.iterations]
    losses = [v for u in updates for v in u.losses]
    assert iterations == list(range(1, 31))  # all 30, though only 4 updates were yielded
    assert len(updates) == 4  # step 1, previews at 10, 20 and 30 (min_interval is long)
    assert losses == pytest.approx(outcome.result.history["loss"])
    assert all(len(u.variances) == len(u.iterations) for u in updates)
    assert all(u.psnr is None for u in updates)  # no reference


def test_previews_get_their_psnr_against_the_reference():
    truth = np.clip(GOOD + 0.05, 0, 1)
    updates, _ = _run(reference=truth)
    with_preview = [u for u in updates if u.preview is not None]
    assert [u.iterations[-1] for u in with_preview] == [10, 20, 30]
    for u in with_preview:
        assert u.psnr == pytest.approx(psnr(u.preview, truth))
        assert 5 < u.psnr < 60
    assert psnr(truth, truth) == math.inf
    assert math.isnan(psnr(truth, np.ones_like(truth)))
    # a reference of another shape: no PSNR, no error
    updates, _ = _run(reference=np.zeros((10, 10), np.float32))
    assert all(u.psnr is None for u in updates)


def test_parts_are_marked_where_they_start():
    stack = np.stack([GOOD, GOOD[::-1], GOOD.T])
    gen = run_steps(stack, axes="ZYX", iterations=8, preview_every=None, min_interval=0.0,
                    threads=1, early_stop=False, warm_start=False)
    starts, xs = [], []
    try:
        while True:
            update = next(gen)
            starts += update.part_starts
            xs += update.iterations
    except StopIteration:
        pass
    assert starts == [(9, "plane 2"), (17, "plane 3")]
    assert xs == list(range(1, 25))  # the whole run's iteration


class _Layer(SimpleNamespace):
    pass


class _Viewer:
    def __init__(self, names):
        self.layers = [_Layer(name=n, visible=n != "hidden") for n in names]
        self.grid = SimpleNamespace(enabled=False, shape=(-1, -1), stride=1)


def test_compare_shows_the_layers_side_by_side_and_restores_the_viewer():
    viewer = _Viewer(["input", "hidden", "result", "other"])
    before = [layer.visible for layer in viewer.layers]
    view = CompareView(viewer)
    chosen = [viewer.layers[0], viewer.layers[2], viewer.layers[1]]
    view.enter(chosen)
    assert view.active and viewer.grid.enabled and viewer.grid.shape == (1, 3)
    assert [layer.visible for layer in viewer.layers] == [True, True, True, False]
    view.leave()
    assert not view.active and not viewer.grid.enabled and viewer.grid.shape == (-1, -1)
    assert [layer.visible for layer in viewer.layers] == before
    with pytest.raises(ValueError, match="nothing to compare"):
        view.enter([None])
    assert grid_shape(4) == (2, 2) and grid_shape(2) == (1, 2)
    # with the canvas' size: the shape that shows square images largest
    assert grid_shape(3, canvas=(930, 480)) == (3, 1)  # a tall, narrow canvas
    assert grid_shape(3, canvas=(600, 1200)) == (1, 3)
    assert grid_shape(4, canvas=(800, 800)) == (2, 2)
    assert grid_shape(3, canvas=(800, 800), image=(100, 400)) == (3, 1)  # wide images


def test_a_result_layer_describes_its_run_in_full():
    result = Result(image=np.zeros((4, 4), np.float32), iterations=1500, stopped_at=1477,
                    history={"loss": [0.1]}, elapsed=49.2,
                    parameters={"method": "dip", "task": "denoise", "noise": "poisson",
                                "preset": "fast", "device": "cpu", "factor": None})
    record = build_metadata(result, restore_kwargs={"method": "dip", "task": "denoise"},
                            inputs={"image": "hubble"}, source_name="hubble")
    assert record["description"] == describe_run(record) == (
        "hubble restored with DIP denoise (poisson noise model, fast preset), "
        "1500 iterations, kept iteration 1477, 49 s on cpu")
