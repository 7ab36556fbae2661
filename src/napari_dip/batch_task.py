"""What a batch worker does with one job: read the file (or take the planes it was sent),
check that the run fits this worker, restore, and hand the result back.

A job never writes a file: the client writes every output (atomically) and the manifest,
so a worker that dies, or a batch that is stopped, cannot leave a partial output behind.
Runs in a worker process (imported there by reference); torch is imported when a job runs.

A job is a dict: ``input`` (path), ``kwargs`` (the ``restore`` arguments), ``threads``
(torch's CPU threads for the run), and for one chunk of a split stack ``image`` (the
planes) with ``start`` and ``stop``; ``crash_marker`` is for tests only (see
:func:`run_job`). The answer is a dict: ``status`` (``done`` or ``failed``), ``error`` (the
message), ``image`` (float32), ``parameters``, ``iterations``, ``seconds``, ``axes``,
``input_dtype``, ``input_range`` and ``worker``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

#: One restoration at a time per worker process: torch's thread count is process-wide, so
#: tasks that a multi-threaded worker would run side by side queue here instead.
_ONE_RUN = threading.Lock()


def file_layout(source, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``restore`` arguments for one file: the batch's, plus what the file says about
    itself, as ``napari-dip restore`` takes it (an RGB picture's channel axis, a stack's axis
    names, a volume's voxel size). Settings for stacks are dropped for a single 2-D image,
    so one set of settings serves a folder of both. ValueError for a stack that names no
    axes when the settings name none either."""
    kw = {k: v for k, v in kwargs.items() if not (k in ("axes", "channel_axis") and v is None)}
    if "axes" not in kw and "channel_axis" not in kw:
        kw.update(source.layout("it"))
    if "axes" not in kw:  # one 2-D image (grey or colour)
        for name in ("mode", "spacing") + (() if kw.get("tile") is not None else
                                           ("warm_start",)):
            kw.pop(name, None)
    elif kw.get("mode") == "volume" and source.spacing is not None:
        kw["spacing"] = source.spacing
    elif kw.get("mode") != "volume":
        kw.pop("spacing", None)
    return kw


def worker_budget(device) -> int | None:
    """Bytes this worker may still use on ``device``: the device's free memory, and on the
    CPU also the worker's memory limit less what the process holds (None: unknown)."""
    from .sizing import available_bytes

    free = available_bytes(device)
    if device.type != "cpu":
        return free
    try:
        import psutil
        from distributed import get_worker

        limit = get_worker().memory_manager.memory_limit
    except (ImportError, ValueError, AttributeError):  # not in a worker, or no limit known
        return free
    if not limit:
        return free
    left = max(int(limit) - int(psutil.Process().memory_info().rss), 0)
    return left if free is None else min(free, left)


def check_fits(plan, budget: int | None, where: str = "this worker") -> None:
    """ValueError when one part of ``plan`` (a plane, tile or volume) needs more than
    ``budget`` bytes allow (the same estimate as ``restore``'s own check,
    :func:`napari_dip.sizing.part_bytes`), naming the largest tile that fits."""
    if budget is None:
        return
    from .memory import USABLE_FRACTION, gib, largest_tile
    from .presets import get_preset
    from .sizing import part_bytes
    from .stacks import MIN_TILE

    t = plan.template
    n = len(plan.layout.iterated)
    channels = plan.image.shape[n]
    guide = 0 if plan.flash is None else plan.flash.shape[n]
    spatial = tuple(plan.image.shape[n + 1:])
    usable = USABLE_FRACTION * budget

    def need(shape):
        return part_bytes(t, shape, channels, guide)

    if plan.layout.volume:
        if need(spatial) > usable:
            raise ValueError(f"restoring a {'x'.join(map(str, spatial))} volume needs about "
                             f"{gib(need(spatial))} but {where} may use {gib(usable)}; restore "
                             "it plane by plane (--mode slices) or give the workers more memory")
        return
    h, w = spatial
    tile = plan.tile if isinstance(plan.tile, int) else None
    side = (min(tile, h), min(tile, w)) if tile else (h, w)
    if plan.tile == "auto" or need(side) <= usable:
        return
    multiple = get_preset(t.preset, t.task, factor=t.factor).network.size_multiple
    fit = largest_tile(lambda s: need((s, s)), int(usable), multiple, MIN_TILE, max(h, w))
    advice = f"--tile {fit} (tile={fit}) fits" if fit else \
        f"not even a {MIN_TILE} px tile fits; give the workers more memory"
    what = f"{side[0]}x{side[1]} tiles" if tile else f"a {h}x{w} plane"
    raise ValueError(f"restoring {what} with the {t.preset!r} preset needs about "
                     f"{gib(need(side))} but {where} may use {gib(usable)}; {advice}")


def _crash_if_asked(job: dict[str, Any]) -> None:
    """Tests only: end this worker process at once (as a kill or the out-of-memory killer
    would) the first time a job carries ``crash_marker``, recorded by creating that file."""
    marker = job.get("crash_marker")
    if marker and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)


def _worker_name() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None


def _restore(image: np.ndarray, kw: dict[str, Any], threads: int) -> Any:
    """Check the memory, then run ``restore`` with ``threads`` torch threads."""
    from .api import restore
    from .devices import resolve_device
    from .request import build_plan
    from .threads import torch_threads

    plan = build_plan(image, **kw)
    check_fits(plan, worker_budget(resolve_device(kw.get("device", "auto"))))
    with torch_threads(threads):
        return restore(image, **kw)


def _thread_count(requested: int) -> int:
    """``requested``, or fewer where this worker's task threads times it would exceed the
    machine's cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1
    try:
        from distributed import get_worker

        slots = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        slots = 1
    return max(1, min(int(requested), cores // max(1, slots)))


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Restore one job (see the module's description). An error of the input or of the run
    (a corrupt file, settings that do not suit it, a run that does not fit) is the answer's
    ``error``, so that the batch goes on; MemoryError is raised, so that Dask retries the
    job (``retries=``) on another worker."""
    from . import api  # noqa: F401 - torch's import is not the job's time
    from .imageio import read_data

    _crash_if_asked(job)
    started = time.perf_counter()
    answer: dict[str, Any] = {"status": "failed", "error": None, "worker": _worker_name()}
    with _ONE_RUN:
        try:
            if job.get("image") is not None:  # a chunk of planes, sent by the client
                image, kw = job["image"], dict(job["kwargs"])
            else:
                source = read_data(job["input"])
                image, kw = source.array, file_layout(source, job["kwargs"])
            values = np.asarray(image)
            threads = _thread_count(job.get("threads") or 1)
            result = _restore(image, kw, threads)
        except MemoryError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure is reported, not raised
            text = str(error) or type(error).__name__
            answer["error"] = text if isinstance(error, (ValueError, OSError)) \
                else f"{type(error).__name__}: {text}"
            answer["seconds"] = round(time.perf_counter() - started, 3)
            return answer
    axes = kw.get("axes")
    answer.update(
        status="done", image=result.image, uncertainty=result.uncertainty,
        parameters=result.parameters,
        iterations=int(result.iterations), seconds=round(time.perf_counter() - started, 3),
        axes=axes.upper() if axes else None, input_dtype=str(values.dtype),
        input_range=(float(values.min()), float(values.max())), threads=threads,
        parts=list(result.parts))
    return answer


__all__ = ["check_fits", "file_layout", "run_job", "worker_budget"]
