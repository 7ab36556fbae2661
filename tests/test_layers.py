"""The widget's Qt-free helpers: names, geometry, metadata, the worker generator."""

from __future__ import annotations

import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import drain

from napari_dip._layers import (
    Geometry,
    build_metadata,
    jsonable,
    parameters_json,
    result_name,
    sample_hints,
)
from napari_dip._runner import (
    PreviewThrottle,
    RunOutcome,
    describe_error,
    engine_preview_every,
    format_duration,
    format_progress,
    guarded,
    run_steps,
)
from napari_dip.records import Result, Step


def test_result_names():
    assert result_name("cells", "dip", "denoise") == "cells · DIP denoise"
    assert result_name("cells", "deepred", "deblur") == "cells · DeepRED deblur"
    assert result_name("m", "dip", "super_resolution", 4) == "m · DIP super-resolution x4"
    assert result_name("m", "dip", "flash_no_flash") == "m · DIP flash/no-flash"


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_upsampled_geometry_keeps_pixel_centres(factor):
    g = Geometry(scale=(3.0, 0.5, 2.0), translate=(7.0, 10.0, -4.0), units=("s", "um", "um"),
                 axis_labels=("t", "y", "x"))
    up = g.upsampled(factor)
    assert up.scale == (3.0, 0.5 / factor, 2.0 / factor)
    assert up.translate[0] == 7.0
    for ax in (1, 2):
        s, t = g.scale[ax], g.translate[ax]
        assert up.translate[ax] == pytest.approx(t - s * (factor - 1) / (2 * factor))
        # The mean position of the f fine pixels in input pixel 3 is that pixel's centre.
        fine = up.translate[ax] + up.scale[ax] * (3 * factor + np.arange(factor))
        assert fine.mean() == pytest.approx(t + s * 3)
        # Both grids cover the same extent: edges at -s/2 and (n - 1/2) s.
        assert up.translate[ax] - up.scale[ax] / 2 == pytest.approx(t - s / 2)
    assert up.units == g.units and up.axis_labels == g.axis_labels
    assert g.upsampled(1) is g


def test_geometry_of_a_layer_and_stack_axis():
    layer = SimpleNamespace(scale=np.array([0.5, 0.25]), translate=np.array([1.0, 2.0]),
                            units=("micrometer", "micrometer"), axis_labels=("y", "x"))
    g = Geometry.of(layer)
    assert g.layer_kwargs() == {"scale": (0.5, 0.25), "translate": (1.0, 2.0),
                                "units": ("micrometer", "micrometer"),
                                "axis_labels": ("y", "x")}
    stack = g.with_leading_axis(step=50, start=50)
    assert stack.scale == (50.0, 0.5, 0.25) and stack.translate == (50.0, 1.0, 2.0)
    assert stack.axis_labels == ("iteration", "y", "x")
    assert stack.units == ("pixel", "micrometer", "micrometer")


def _result(**over):
    params = {"task": "denoise", "method": "dip", "preset": "fast", "iterations": 40,
              "early_stop": True, "seed": 3, "device": "cpu", "version": "9.9",
              "lr": np.float32(0.01)}
    return Result(image=np.zeros((4, 4), np.float32), iterations=30, stopped_at=22,
                  history={"loss": [1.0, 0.5], "variance": [math.nan, 0.1]},
                  parameters={**params, **over}, elapsed=1.23456)


def test_metadata_holds_everything_and_is_json():
    kwargs = {"task": "denoise", "method": "dip", "seed": 3, "iterations": 40,
              "early_stop": True, "preset": "fast", "device": "cpu"}
    record = build_metadata(_result(), restore_kwargs=kwargs,
                            inputs={"image": "noisy", "mask": "holes"}, source_name="noisy",
                            stack_every=10)
    for key in ("version", "seed", "iterations_run", "stopped_at", "parameters",
                "restore_kwargs", "device", "history", "early_stop"):
        assert key in record
    assert record["version"] == "9.9" and record["seed"] == 3
    assert record["iterations_run"] == 30 and record["stopped_at"] == 22
    assert record["history"]["variance"][0] is None  # NaN is not JSON
    json.dumps(record, allow_nan=False)

    doc = json.loads(parameters_json(record))
    assert doc["restore"] == kwargs
    assert doc["inputs"] == {"image": "noisy", "mask": "holes"}
    assert "mask=mask" in doc["python"]
    assert doc["result"]["stopped_at"] == 22
    assert doc["parameters"]["lr"] == pytest.approx(0.01)


def test_jsonable_and_hints():
    assert jsonable({"a": np.arange(2), "b": (np.int64(1), np.float32(2.5))}) == \
        {"a": [0, 1], "b": [1, 2.5]}
    assert sample_hints(None) == {}
    assert sample_hints({"napari_dip_sample": {"task": "inpaint"}}) == {"task": "inpaint"}


def test_progress_text_and_durations():
    step = Step(iteration=10, total=100, loss=0.00123, elapsed=5.0)
    assert format_progress(step) == "iteration 10 / 100 \u00b7 0:45 left"
    # a run that may stop early: the limit is an upper bound until the rule can tell
    assert format_progress(step, stops_early=True) == \
        "iteration 10 / 100 \u00b7 at most 0:45 left"
    step.expected_stop = 30  # the rule expects its stop 20 steps on: 0.5 s each
    assert format_progress(step, stops_early=True) == "iteration 10 / 100 \u00b7 ~0:10 left"
    stack = Step(iteration=120, total=1500, loss=0.1, elapsed=6.0, plane=3, planes=25,
                 run_iteration=3120, run_total=37500, run_elapsed=156.0)
    assert format_progress(stack) == \
        "plane 3 / 25 \u00b7 iteration 120 / 1500 \u00b7 28:39 left"
    # a blend's second fit, on validation data (napari_dip.thinning)
    validation = Step(iteration=40, total=1500, loss=0.1, elapsed=2.0, stage="validation",
                      run_iteration=186, run_total=1646, run_elapsed=7.44)
    assert format_progress(validation) == \
        "validation fit \u00b7 iteration 40 / 1500 \u00b7 0:58 left"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(float("nan")) == "--:--"


def test_engine_preview_every():
    assert engine_preview_every(None, None) is None
    assert engine_preview_every(25, None) == 25
    assert engine_preview_every(None, 50) == 50
    assert engine_preview_every(20, 50) == 10


def test_preview_throttle_keeps_to_budget():
    now = [0.0]
    throttle = PreviewThrottle(0.1, clock=lambda: now[0])
    now[0] = 1.0
    assert throttle.allow()
    throttle.spent(0.5)  # a very slow preview: 50% of the run so far
    now[0] = 2.0
    assert not throttle.allow()
    now[0] = 5.0
    assert throttle.allow()
    assert throttle.shown == 1 and throttle.skipped == 1


def test_describe_error():
    assert describe_error(ValueError("mask has shape (3, 3)")) == "mask has shape (3, 3)"
    assert "out of memory" in describe_error(RuntimeError("CUDA out of memory. Tried 2 GiB"))
    assert describe_error(KeyError("x")).startswith("KeyError")


def _noisy(size=32, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    return (0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy) + rng.normal(0, 0.1, (size, size)))


def test_run_steps_previews_stack_and_result():
    times = iter(np.arange(0, 100, 0.001))
    gen = run_steps(_noisy(), task="denoise", iterations=12, early_stop=False, device="cpu",
                    preview_every=4, stack_every=6, min_interval=1e9,
                    clock=lambda: next(times))
    updates, outcome = drain(gen)
    # first step, then only the steps carrying a preview (every 4)
    assert [u.step.iteration for u in updates] == [1, 4, 8, 12]
    assert all(u.preview is not None for u in updates[1:])
    assert outcome.stack_iterations == [6, 12]
    assert [a.shape for a in outcome.stack] == [(32, 32), (32, 32)]
    assert outcome.result.iterations == 12 and outcome.result.image.shape == (32, 32)


def test_run_steps_validates_at_once_and_guarded_reports_errors():
    with pytest.raises(ValueError, match="mask"):
        next(run_steps(_noisy(), task="inpaint", mask=np.ones((5, 5)), device="cpu"))
    gen = guarded(run_steps(_noisy(), task="inpaint", mask=np.ones((5, 5)), device="cpu"))
    with pytest.raises(StopIteration) as stop:
        next(gen)
    outcome = stop.value.value
    assert isinstance(outcome, RunOutcome) and outcome.failed
    assert "mask has shape" in describe_error(outcome.error)


def test_run_steps_can_be_cancelled():
    gen = run_steps(_noisy(), task="denoise", iterations=10_000, device="cpu", min_interval=0)
    first = next(gen)
    assert first.step.iteration == 1
    gen.close()  # must not raise, and the generator is finished
    with pytest.raises(StopIteration):
        next(gen)


def test_helpers_import_neither_torch_nor_qt():
    import subprocess
    import sys

    code = ("import napari_dip._layers, napari_dip._runner, napari_dip._sample_data, sys; "
            "print(' '.join(sys.modules))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not {"torch", "napari", "qtpy", "PyQt6", "magicgui"} & loaded


def test_run_steps_sets_torch_threads_for_the_run_only():
    import torch

    from napari_dip._runner import gui_threads

    assert 1 <= gui_threads() <= max(1, (os.cpu_count() or 1))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        gen = run_steps(_noisy(), iterations=3, early_stop=False, device="cpu", threads=1)
        next(gen)
        assert torch.get_num_threads() == 1  # during the run
        _, outcome = drain(gen)
        assert outcome.result.iterations == 3
        assert torch.get_num_threads() == 2  # restored afterwards
    finally:
        torch.set_num_threads(before)
