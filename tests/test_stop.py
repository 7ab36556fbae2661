"""Cancelling a run (issue 14): ``cancel=`` ends a run within an iteration, also while
DeepRED waits for a slow denoiser; a denoiser that does not answer ends the run with a clear
error after ``denoiser_timeout``; a stopped run's denoiser call is joined before the next
run starts; torch's thread setting survives runs that overlap."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from napari_dip import RunCancelled, denoisers, iterate, restore
from napari_dip._runner import RunOutcome, guarded, run_steps
from napari_dip.cancel import BackgroundCall, join_leftovers, leftovers
from napari_dip.solvers.deepred import THREAD_PREFIX
from napari_dip.threads import process_threads, runs_in_flight, torch_threads


def denoiser_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


@pytest.fixture
def slow_denoiser(monkeypatch):
    """Every D(x) call sleeps ``delay[0]`` seconds, then returns its input."""
    delay = [3.0]
    calls = []

    def slow(image, sigma, name):
        calls.append(time.monotonic())
        time.sleep(delay[0])
        return image, 0.01

    monkeypatch.setattr(denoisers, "denoise_with_sigma", slow)
    yield delay, calls
    join_leftovers(timeout=30)  # leave no thread to the next test


def test_cancel_ends_a_dip_run_at_the_next_iteration(noisy64):
    cancel = threading.Event()
    steps = iterate(noisy64[0], iterations=200, early_stop=False, cancel=cancel)
    seen = []
    with pytest.raises(RunCancelled, match="cancelled at iteration 4"):
        for step in steps:
            seen.append(step.iteration)
            if step.iteration == 3:
                cancel.set()
    assert seen == [1, 2, 3]


def test_cancel_ends_a_stack_between_and_within_parts(noisy64):
    stack = np.stack([noisy64[0]] * 3)
    cancel = threading.Event()
    seen = []
    with pytest.raises(RunCancelled):
        for step in iterate(stack, axes="ZYX", iterations=5, warm_start=False,
                            early_stop=False, cancel=cancel):
            seen.append((step.plane, step.iteration))
            if step.plane == 2 and step.iteration == 2:
                cancel.set()
    assert seen[-1] == (2, 2) and len(seen) == 7


def test_cancel_must_be_an_event(noisy64):
    with pytest.raises(ValueError, match="cancel must be a threading.Event"):
        iterate(noisy64[0], cancel=True)


def test_cancel_while_deepred_waits_for_a_slow_denoiser(noisy64, slow_denoiser):
    delay, calls = slow_denoiser
    cancel = threading.Event()
    steps = iterate(noisy64[0], method="deepred", iterations=50, denoise_every=2,
                    early_stop=False, cancel=cancel)
    next(steps)  # iteration 1: the first D(x) call has started (it takes 3 s)
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    start = time.monotonic()
    with pytest.raises(RunCancelled, match="while waiting for the 'nlm' denoiser"):
        for _ in steps:
            pass
    ended = time.monotonic() - start
    assert ended < 0.3 + 0.5, f"the run took {ended:.2f} s to end after the cancel"
    # the call in flight finishes in the background, and the next run waits for it
    assert len(leftovers()) == 1 and len(denoiser_threads()) == 1
    delay[0] = 0.0
    result = restore(noisy64[0], iterations=2, early_stop=False)
    assert result.iterations == 2
    assert leftovers() == [] and denoiser_threads() == []


def test_a_denoiser_that_does_not_answer_fails_with_the_timeout(noisy64, slow_denoiser):
    delay, _ = slow_denoiser
    delay[0] = 2.0
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"'nlm' denoiser did not answer within 0.3 s "
                                           r"\(D\(x\) due at iteration 2\)"):
        restore(noisy64[0], method="deepred", iterations=10, denoise_every=2,
                denoiser_timeout=0.3, early_stop=False)
    assert time.monotonic() - start < 1.5


def test_denoiser_timeout_is_checked_before_the_run(noisy64):
    from napari_dip import validate

    with pytest.raises(ValueError, match="denoiser_timeout must be a positive number"):
        validate(noisy64[0], method="deepred", denoiser_timeout=0)


def test_a_complete_deepred_run_leaves_no_thread(noisy64):
    result = restore(noisy64[0], method="deepred", denoiser="tv", iterations=6,
                     denoise_every=2, early_stop=False)
    assert result.iterations == 6
    assert denoiser_threads() == [] and leftovers() == []


def test_a_hung_call_of_an_earlier_run_is_reported():
    release = threading.Event()
    call = BackgroundCall(release.wait, name="napari-dip-denoiser")
    call.abandon()
    try:
        with pytest.raises(RuntimeError, match="earlier, stopped run is still running"):
            join_leftovers(timeout=0.1)
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(RunCancelled, match="earlier run's denoiser"):
            join_leftovers(cancel)
    finally:
        release.set()
        join_leftovers(timeout=5)
    assert leftovers() == []


def _process_and_main_threads() -> tuple[int, int]:
    return process_threads(), torch.get_num_threads()


def test_overlapping_runs_give_torch_its_thread_count_back(noisy64):
    torch.set_num_threads(2)  # what the user had (the session fixture uses 1)
    try:
        before = _process_and_main_threads()
        for order in ("first ends first", "second ends first"):
            a = run_steps(noisy64[0], iterations=50, early_stop=False, threads=1,
                          preview_every=None)
            b = run_steps(noisy64[0], iterations=50, early_stop=False, threads=1,
                          preview_every=None)
            next(a)
            next(b)
            assert runs_in_flight() == 2 and process_threads() == 1
            first, second = (a, b) if order == "first ends first" else (b, a)
            first.close()
            assert runs_in_flight() == 1 and process_threads() == 1  # still running
            second.close()
            assert runs_in_flight() == 0
            assert _process_and_main_threads() == before, order
    finally:
        torch.set_num_threads(1)


def test_runs_in_worker_threads_give_the_thread_count_back(noisy64):
    torch.set_num_threads(2)
    try:
        before = process_threads()
        outcomes = []

        def worker():
            gen = guarded(run_steps(noisy64[0], iterations=5, early_stop=False, threads=1))
            try:
                while True:
                    next(gen)
            except StopIteration as stop:
                outcomes.append(stop.value)

        threads = [threading.Thread(target=worker) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [o.result.iterations for o in outcomes] == [5, 5, 5]
        assert process_threads() == before == 2
    finally:
        torch.set_num_threads(1)


def test_torch_threads_none_changes_nothing():
    before = process_threads()
    with torch_threads(None):
        assert runs_in_flight() == 0 and process_threads() == before


def test_guarded_reports_a_cancelled_run(noisy64):
    cancel = threading.Event()
    gen = guarded(run_steps(noisy64[0], iterations=100, early_stop=False, cancel=cancel,
                            preview_every=None))
    next(gen)
    cancel.set()
    with pytest.raises(StopIteration) as stop:
        while True:
            next(gen)
    outcome = stop.value.value
    assert isinstance(outcome, RunOutcome) and outcome.cancelled
    assert outcome.result is None and outcome.error is None
