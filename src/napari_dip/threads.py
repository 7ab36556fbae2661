"""Torch's CPU thread count while runs are going, restored when the last one ends.

``torch.set_num_threads`` is process-wide, so two runs that overlap (a DIP dock and a
DeepRED dock) must not each save and restore it: the second would save the first's setting
and put it back last. :func:`torch_threads` counts the runs in flight; the first saves the
setting and the last restores it. Runs overlap freely (they are not queued).

Torch keeps the count per thread as well as for the process (OpenMP): a thread that set it
reads back its own value, while new threads start from the process's. The setting saved is
therefore read in a fresh thread, so a reused worker thread cannot hand on a stale count.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
_ACTIVE = 0
_SAVED: int | None = None


def process_threads() -> int:
    """Torch's CPU thread count as a new thread sees it (the process's setting)."""
    import torch

    seen: list[int] = []
    reader = threading.Thread(target=lambda: seen.append(torch.get_num_threads()),
                              name="napari-dip-thread-count")
    reader.start()
    reader.join()
    return seen[0]


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Use ``count`` torch CPU threads inside the block (None: leave the setting alone)."""
    global _ACTIVE, _SAVED
    if count is None:
        yield
        return
    import torch

    with _LOCK:
        if _ACTIVE == 0:
            _SAVED = process_threads()
        _ACTIVE += 1
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE -= 1
            if _ACTIVE == 0 and _SAVED is not None:
                torch.set_num_threads(_SAVED)
                _SAVED = None


def runs_in_flight() -> int:
    """How many runs are inside :func:`torch_threads` now."""
    return _ACTIVE


__all__ = ["process_threads", "runs_in_flight", "torch_threads"]
