"""Where a batch runs: a Dask ``distributed.Client`` on a local cluster (the default), on a
running scheduler (``scheduler="tcp://HOST:PORT"``) or on a SLURM, PBS or LSF cluster that
dask-jobqueue starts (``cluster="slurm"``; ``pip install "napari-dip[cluster]"``).

Threads: each worker runs one restoration at a time, and each restoration uses
``threads_per_worker`` torch threads. The local cluster has ``workers`` single-threaded
worker processes (default: one per ``threads_per_worker`` cores) and refuses more threads
in total than the machine has cores. Dask is imported only when a client is opened.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

#: --cluster names and the dask-jobqueue class of each.
JOB_QUEUES = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster"}
_INSTALL = 'pip install "napari-dip[cluster]"'


def cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def local_workers(workers: int | None, threads_per_worker: int) -> int:
    """The local cluster's worker count: ``workers``, or one per ``threads_per_worker``
    cores. ValueError for counts below 1 or more threads in total than cores."""
    if threads_per_worker < 1:
        raise ValueError(f"--threads-per-worker must be at least 1, got {threads_per_worker}")
    have = cores()
    n = max(1, have // threads_per_worker) if workers is None else int(workers)
    if n < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if n * threads_per_worker > have:
        raise ValueError(
            f"{n} workers x {threads_per_worker} threads = {n * threads_per_worker} threads, "
            f"but this machine has {have} cores; use at most --workers "
            f"{max(1, have // threads_per_worker)} with --threads-per-worker "
            f"{threads_per_worker}")
    return n


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of --cluster-option: VALUE as an int, float, true/false, a JSON list
    or object, or else the string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--cluster-option takes KEY=VALUE (e.g. queue=gpu, cores=8, "
                         f"memory=16GB), got {text!r}")
    value = value.strip()
    lowered = value.lower()
    if lowered in ("true", "false"):
        return key.strip(), lowered == "true"
    for convert in (int, float):
        with contextlib.suppress(ValueError):
            return key.strip(), convert(value)
    if value[:1] in "[{":
        with contextlib.suppress(ValueError):
            return key.strip(), json.loads(value)
    return key.strip(), value


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ValueError(f"batch runs need Dask distributed: {_INSTALL}") from None
    return distributed


def job_queue_options(kind: str, options: Mapping[str, Any], threads_per_worker: int
                      ) -> tuple[str, dict[str, Any]]:
    """(the dask-jobqueue class name, its keyword arguments) for ``--cluster kind``: the
    --cluster-option values, and ``processes`` (worker processes per job) defaulting to one
    per ``threads_per_worker`` of the job's ``cores``. ValueError for an unknown kind or
    a job without cores and memory."""
    if kind not in JOB_QUEUES:
        raise ValueError(f"--cluster takes {', '.join(JOB_QUEUES)}, got {kind!r}")
    opts = dict(options)
    if "cores" not in opts or "memory" not in opts:
        raise ValueError(f"--cluster {kind} needs the cores and memory of one job, e.g. "
                         "--cluster-option cores=8 --cluster-option memory=16GB")
    opts.setdefault("processes", max(1, int(opts["cores"]) // threads_per_worker))
    return JOB_QUEUES[kind], opts


def _job_queue(kind: str, options: Mapping[str, Any], threads_per_worker: int,
               workers: int | None):
    """A dask-jobqueue cluster scaled to ``workers`` worker processes (default: one job)."""
    name, opts = job_queue_options(kind, options, threads_per_worker)
    try:
        import dask_jobqueue
    except ImportError:
        raise ValueError(f"--cluster {kind} needs dask-jobqueue, in the optional extra "
                         f"[cluster]: {_INSTALL}") from None
    try:
        cluster = getattr(dask_jobqueue, name)(**opts)
    except TypeError as error:
        raise ValueError(f"--cluster {kind}: {error} (see the dask-jobqueue documentation "
                         f"of {name} for its options)") from None
    cluster.scale(n=workers if workers is not None else opts["processes"])
    return cluster


def ignore_interrupts() -> None:
    """Run on the local cluster's workers: Ctrl-C in a terminal reaches every process of
    its group, and the client, not each worker, is the one to stop the batch (it cancels
    the jobs and closes the workers)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _local(workers: int | None, threads_per_worker: int):
    distributed = _import_distributed()
    dashboard = ":8787" if _has_dashboard_packages() else None
    return distributed.LocalCluster(
        n_workers=local_workers(workers, threads_per_worker), threads_per_worker=1,
        processes=True, dashboard_address=dashboard, silence_logs=logging.ERROR)


def _has_dashboard_packages() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


def _scheduler_has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def dashboard(client) -> str | None:
    """The Dask dashboard's address, when the scheduler serves one (its web server is up
    and has bokeh, which draws the pages)."""
    try:
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return None
        if not client.run_on_scheduler(_scheduler_has_bokeh):
            return None
    except Exception:  # noqa: BLE001 - no dashboard is no error
        return None
    return client.dashboard_link


@contextlib.contextmanager
def open_client(client=None, *, workers: int | None = None, threads_per_worker: int = 1,
                scheduler: str | None = None, cluster: str | None = None,
                cluster_options: Mapping[str, Any] | None = None,
                quiet: bool = False) -> Iterator[Any]:
    """A client for the batch, closed at the end unless it was given (``client``). Prints
    the dashboard's address (stderr) unless ``quiet``."""
    if client is not None:
        yield client
        return
    if scheduler and cluster:
        raise ValueError("give either --scheduler or --cluster, not both")
    distributed = _import_distributed()
    made = None
    try:
        if scheduler:
            try:
                own = distributed.Client(scheduler, timeout="20s")
            except OSError as error:
                raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: "
                                 f"{error}") from None
        else:
            made = _job_queue(cluster, cluster_options or {}, threads_per_worker, workers) \
                if cluster else _local(workers, threads_per_worker)
            own = distributed.Client(made)
            if not cluster:
                own.run(ignore_interrupts)
        try:
            link = dashboard(own)
            if link and not quiet:
                print(f"napari-dip batch: Dask dashboard at {link}", file=sys.stderr)
            yield own
        finally:
            own.close()
    finally:
        if made is not None:
            made.close()


__all__ = ["JOB_QUEUES", "cores", "dashboard", "job_queue_options", "local_workers",
           "open_client", "parse_option"]
