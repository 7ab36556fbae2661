"""Inpainting's stopping rule (issue 15, target 2): a random share of the known pixels is
hidden from the fit and the run keeps the estimate that predicts them best."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import psnr
from skimage.restoration import inpaint_biharmonic

from napari_dip import restore
from napari_dip.held_out import FRACTION, MIN_KNOWN, HeldOut, blend_weight, hold_out
from napari_dip.operators import Mask


class _Problem:
    """The parts of a Problem that hold_out touches: a padded measurement, its mask
    operator and the crop of the image inside the padding."""

    def __init__(self, known: np.ndarray, pad: int = 4):
        rng = np.random.default_rng(0)
        padded = np.pad(known, pad, mode="reflect")
        self.y = torch.tensor(rng.random(padded.shape) * padded, dtype=torch.float32)[None, None]
        self.operator = Mask(padded)
        self.crop = (slice(pad, pad + known.shape[0]), slice(pad, pad + known.shape[1]))


def _text_mask(size=64, seed=0) -> np.ndarray:
    """Holes (True) like strokes of text."""
    rng = np.random.default_rng(seed)
    holes = np.zeros((size, size), bool)
    for r in range(6, size, 11):
        holes[r:r + 2, rng.integers(0, 12):rng.integers(size // 2, size)] = True
    return holes


def test_hold_out_hides_a_share_of_the_known_pixels_inside_the_image():
    holes = _text_mask()
    problem = _Problem(~holes)
    known_before = problem.operator.known.clone()
    y_before = problem.y.clone()
    rule = hold_out(problem, patience=50, seed=3)
    held = (known_before > 0) & (problem.operator.known == 0)
    inside = torch.zeros_like(held)
    inside[(slice(None), slice(None), *problem.crop)] = True
    assert bool(held.any()) and not bool((held & ~inside).any())  # never in the padding
    n_known = int(((known_before > 0) & inside).sum())
    assert rule.pixels == int(held.sum())
    assert abs(rule.pixels / n_known - FRACTION) < 0.015
    # the measurement loses them; the rule keeps their values
    assert float(problem.y[held].abs().sum()) == 0
    assert torch.equal(problem.y[~held], y_before[~held])
    assert float(rule.error(y_before)) == 0.0
    assert rule.parameters() == {"stopping": "held-out", "held_out_fraction": FRACTION,
                                 "held_out_pixels": rule.pixels, "held_out_patience": 50}
    # the same seed draws the same pixels; too few known pixels: no rule, nothing hidden
    again = _Problem(~holes)
    hold_out(again, patience=50, seed=3)
    assert torch.equal(again.operator.known, problem.operator.known)
    small = _Problem(np.ones((16, 16), bool))
    assert 16 * 16 < MIN_KNOWN and hold_out(small, patience=50, seed=0) is None
    assert float(small.operator.known.min()) == 1.0


def test_the_rule_keeps_the_best_prediction_and_stops_after_its_patience():
    y = torch.rand(1, 1, 20, 20, dtype=torch.float64)
    held = torch.zeros_like(y)
    held[..., ::3, ::3] = 1
    rule = HeldOut(y, held, patience=10)
    # estimates approach y until step 30, then drift away
    distances = [abs(30 - t) / 30 + 0.01 for t in range(1, 80)]
    stopped = None
    for it, d in enumerate(distances, start=1):
        rule.observe(it, y, y + d, torch.tensor(0.0))
        if rule.should_stop(it):
            stopped = it
            break
    assert rule.best_iteration == 30 and stopped == 40
    estimate, iteration = rule.kept()
    assert iteration == 30 and torch.allclose(estimate, y + 0.01)
    assert rule.progress(35) == {"kept": 30, "expected_stop": 40}
    # an ensemble's members (K, C, ...): the error of their mean
    members = torch.cat([y + 0.1, y - 0.1])
    assert float(rule.error(members)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least one held-out pixel"):
        HeldOut(y, torch.zeros_like(y), patience=10)


def test_the_blend_weight_is_the_least_squares_convex_combination():
    rng = np.random.default_rng(0)
    truth = rng.random(200)
    other = truth + rng.normal(0, 0.1, 200)
    assert blend_weight(truth, other, truth) == pytest.approx(1.0)
    assert blend_weight(other, truth, truth) == pytest.approx(0.0, abs=1e-12)
    # two predictions with independent errors of equal size: about half each
    a, b = truth + rng.normal(0, 0.1, 200), truth + rng.normal(0, 0.1, 200)
    w = blend_weight(a, b, truth)
    assert 0.3 < w < 0.7
    blended = w * a + (1 - w) * b
    assert np.mean((blended - truth) ** 2) < min(np.mean((a - truth) ** 2),
                                                 np.mean((b - truth) ** 2))
    assert blend_weight(truth, truth, other) == 1.0  # they agree: nothing to weigh
    assert blend_weight(truth + 1, truth, truth - 1) == 0.0  # clipped to [0, 1]


def test_an_inpainting_run_stops_by_its_held_out_pixels(camera64):
    """A 64 px camera crop with text-like holes: the default run watches held-out pixels,
    returns the estimate of its best held-out step blended with the biharmonic fill by the
    weight the held-out pixels give, keeps every known pixel as measured (the hidden ones
    too), and fills the holes better than either the biharmonic fill or the network alone
    would by a margin the weight explains."""
    holes = _text_mask()
    damaged = np.where(holes, 0, camera64).astype(np.float32)
    result = restore(damaged, task="inpaint", mask=holes, iterations=600, seed=0)
    p = result.parameters
    assert p["stopping"] == "held-out" and p["held_out_pixels"] > 0
    assert 0.0 <= p["held_out_blend_weight"] <= 1.0
    np.testing.assert_array_equal(result.image[~holes], damaged[~holes])
    fill = inpaint_biharmonic(damaged, holes)
    ours = psnr(result.image[holes], camera64[holes])
    assert ours >= psnr(fill[holes], camera64[holes]) - 0.3
    # ES-WMV where asked for (a patience), and for DeepRED, which returns its last estimate
    assert restore(damaged, task="inpaint", mask=holes, iterations=3,
                   early_stop=100).parameters["stopping"] == "es-wmv"
    assert restore(damaged, task="inpaint", mask=holes, iterations=3,
                   method="deepred").parameters["stopping"] == "es-wmv"
