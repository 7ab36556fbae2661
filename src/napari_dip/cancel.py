"""Cancelling a run from another thread, and the denoiser calls that run beside it.

A run takes ``cancel=``: any object with ``is_set()`` (a :class:`threading.Event`). The engine
looks at it before every iteration and while it waits for a denoiser, and ends the run by
raising :class:`RunCancelled`, in the thread that runs it: whoever asked (a GUI thread)
never waits.

Denoiser calls (DeepRED's D(x), plain numpy/scikit-image/bm3d code) cannot be interrupted.
Each runs in a daemon thread of its own (:class:`BackgroundCall`). A cancelled or failed run
leaves its call in flight to finish in the background; :func:`join_leftovers` waits for
such calls at the start of the next run, so no denoiser thread of an earlier run competes
with a new one and none outlives the run that follows it. Torch-free.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

#: Seconds between looks at the cancel flag while waiting for a call.
POLL_SECONDS = 0.02
#: Seconds a new run waits for an earlier run's call before refusing to start.
LEFTOVER_WAIT_SECONDS = 120.0


class RunCancelled(Exception):
    """The run was cancelled (its ``cancel`` flag was set); nothing was returned."""


def check_cancel(cancel) -> None:
    """``cancel`` is None or has ``is_set()`` (a threading.Event); ValueError otherwise."""
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise ValueError(f"cancel must be a threading.Event (anything with is_set()) or "
                         f"None, got {cancel!r}")


def raise_if_cancelled(cancel, where: str = "") -> None:
    if cancel is not None and cancel.is_set():
        raise RunCancelled(f"the run was cancelled{where}")


class BackgroundCall:
    """``fn(*args)`` in a daemon thread named ``name``; :meth:`wait` collects the result."""

    def __init__(self, fn: Callable[..., Any], *args, name: str):
        self.name = name
        self.started = time.monotonic()
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, *args), name=name,
                                       daemon=True)
        self.thread.start()

    def _run(self, fn, *args) -> None:
        try:
            self._result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self._error = exc
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float, cancel=None, what: str = "the call"):
        """The call's result (its exception re-raised), waiting at most ``timeout`` seconds
        from when the call started: TimeoutError after that, RunCancelled as soon as
        ``cancel`` is set."""
        while not self._done.wait(POLL_SECONDS):
            raise_if_cancelled(cancel, f" while waiting for {what}")
            waited = time.monotonic() - self.started
            if waited > timeout:
                raise TimeoutError(f"{what} did not finish within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self._result

    def abandon(self) -> None:
        """Leave the call to finish in the background; the next run waits for it."""
        if not self.done:
            with _LOCK:
                _LEFTOVERS.append(self)


_LOCK = threading.Lock()
_LEFTOVERS: list[BackgroundCall] = []


def leftovers() -> list[BackgroundCall]:
    """The abandoned calls still running."""
    with _LOCK:
        _LEFTOVERS[:] = [call for call in _LEFTOVERS if not call.done]
        return list(_LEFTOVERS)


def join_leftovers(cancel=None, timeout: float = LEFTOVER_WAIT_SECONDS) -> None:
    """Wait until every abandoned call has finished (RunCancelled if ``cancel`` is set
    meanwhile; RuntimeError after ``timeout`` seconds, naming the call that hangs)."""
    deadline = time.monotonic() + timeout
    for call in leftovers():
        while not call._done.wait(POLL_SECONDS):
            raise_if_cancelled(cancel, " while waiting for an earlier run's denoiser")
            if time.monotonic() > deadline:
                running = time.monotonic() - call.started
                raise RuntimeError(
                    f"a {call.name} call of an earlier, stopped run is still running after "
                    f"{running:.0f} s; napari-dip waits for it before starting another run "
                    "so the two do not share the CPU. Wait and try again, or, if the "
                    "denoiser hangs, restart the program")
        call.thread.join()
    leftovers()


__all__ = ["BackgroundCall", "RunCancelled", "check_cancel", "join_leftovers", "leftovers",
           "raise_if_cancelled"]
