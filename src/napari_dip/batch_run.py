"""Restore many files on Dask distributed: :func:`batch`.

The client process (this one) finds the inputs, asks the manifest which need a run
(:mod:`napari_dip.manifest`), sends one job per file (or per chunk of planes with
``split="planes"``) to the workers (:func:`napari_dip.batch_task.run_job`), and writes each
result as it comes back: the output atomically (:func:`napari_dip.imageio.write_image`),
then the manifest line, with Ctrl-C and SIGTERM held back between the two so that an output
is never left unrecorded. Stopping the batch (Ctrl-C, an exception from ``on_result``)
cancels what is left and leaves complete outputs and a manifest that resumes. A worker
that dies mid-job (killed, out of memory) has its job rerun elsewhere by the scheduler
(up to ``distributed.scheduler.allowed-failures`` times, 3 by default); ``retries`` reruns a
job whose worker ran out of memory (MemoryError). Dask and torch are imported when a batch
runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .batch_inputs import (
    check_names,
    check_uncertainty_ensemble,
    find_inputs,
    stem_of,
    uncertainty_path,
)
from .manifest import DONE, FAILED, SKIPPED, Manifest, fingerprint, parameters_hash
from .safe_write import signals_deferred

#: Test hook: ``NAME=MARKER`` makes the first job for the input named NAME end its worker
#: process (see :func:`napari_dip.batch_task.run_job`).
CRASH_ONCE_ENV = "NAPARI_DIP_BATCH_CRASH_ONCE"
SPLITS = ("planes",)


@dataclass
class FileReport:
    """One input's outcome: ``status`` is ``done``, ``skipped`` (done before with the same
    input and settings) or ``failed`` (``error`` says why); ``iterations`` and ``seconds``
    (compute time on the workers) of the run; ``reason`` why it ran (``new``, ``failed
    before``, ``input changed``, ``parameters changed``, ``output missing``)."""

    input: Path
    output: Path
    status: str
    iterations: int | None = None
    seconds: float | None = None
    error: str | None = None
    reason: str | None = None


@dataclass
class BatchReport:
    """What :func:`batch` returns: a :class:`FileReport` per input, in input order."""

    files: list[FileReport]
    manifest: Path

    def __iter__(self) -> Iterator[FileReport]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def failed(self) -> list[FileReport]:
        return [f for f in self.files if f.status == FAILED]

    def summary(self) -> str:
        """``"6 files: 4 done, 1 skipped (done before), 1 failed"``, plus, where files
        failed, ``"1 of 6 failed; see OUTDIR/napari-dip-batch.jsonl"``."""
        text = (f"{len(self)} files: {self.count(DONE)} done, {self.count(SKIPPED)} skipped "
                f"(done before), {self.count(FAILED)} failed")
        if self.failed:
            text += f"; {len(self.failed)} of {len(self)} failed; see {self.manifest}"
        return text


@dataclass
class _Item:
    """A file to run, and the chunks of it that are out or back."""

    source: Path
    output: Path
    stamp: dict[str, int]
    reason: str
    chunks: list[tuple[int, int]] = field(default_factory=list)
    answers: dict[int, dict[str, Any]] = field(default_factory=dict)


def _prepare_folder(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"-o {out_dir} is a file; give a folder for the outputs")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create the output folder {out_dir}: "
                         f"{error.strerror or error}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write into {out_dir}: permission denied")


def _check_settings(kwargs: dict[str, Any]) -> None:
    """Settings that every file would refuse (an unknown option, a bad number), refused
    before anything is sent: validated on a 64x64 stand-in (or the mask's plane)."""
    from .api import validate

    mask = kwargs.get("mask")
    if np.ndim(mask) > 2 or kwargs.get("flash") is not None:
        return  # its shape depends on the files
    shape = np.shape(mask) if mask is not None else (64, 64)
    probe = {k: v for k, v in kwargs.items() if k not in (
        "axes", "mode", "spacing", "warm_start", "channel_axis", "tile", "overlap")}
    validate(np.random.default_rng(0).random(shape), **probe)


def _identities(paths) -> set:
    """What names a file, for each of ``paths`` that exists: its resolved path and its
    (device, inode), so that links and other spellings of an input are recognised."""
    found: set = set()
    for path in paths:
        with contextlib.suppress(OSError, RuntimeError):
            st = os.stat(path)
            found.update({("inode", st.st_dev, st.st_ino), ("path", str(Path(path).resolve()))})
    return found


def _failure(future) -> str:
    """Why a job that raised (rather than answered) failed."""
    from distributed import KilledWorker

    try:
        future.result()
    except KilledWorker:
        return ("the worker running it died every time it was tried (killed, or out of "
                "memory); see the workers' logs, or give them more memory")
    except MemoryError:
        return "out of memory on the workers (MemoryError on every attempt)"
    except Exception as error:  # noqa: BLE001 - reported per file
        return f"{type(error).__name__}: {error}"
    return "unknown failure"


def _write_all(written: dict[Path, tuple[np.ndarray, dict]], answer: dict[str, Any],
               value_range: tuple[float, float], overwrite: bool) -> None:
    """Write each (values, parameters) to its path, atomically; if one fails, the files
    this call wrote before it are removed again, so a file's outputs appear together."""
    from .imageio import write_image

    done: list[Path] = []
    try:
        for path, (values, parameters) in written.items():
            write_image(path, values, answer["input_dtype"], parameters, axes=answer["axes"],
                        input_range=value_range, overwrite=overwrite)
            done.append(path)
    except BaseException:
        for path in done:
            path.unlink(missing_ok=True)
        raise


class _Batch:
    """One batch run: planning against the manifest, the jobs, the outputs, the report."""

    def __init__(self, manifest: Manifest, settings: dict[str, Any], kwargs: dict[str, Any],
                 options: dict[str, Any]):
        self.manifest = manifest
        self.params = parameters_hash(settings)
        self.kwargs = kwargs
        self.opt = options
        self.reports: dict[Path, FileReport] = {}
        self.order: list[Path] = []
        self.bar = None
        self.running = 0

    # -- planning ---------------------------------------------------------------------------
    def plan(self, outputs: dict[Path, Path]) -> list[_Item]:
        """Decide for every input: skip (done before), fail now (cannot be looked at, or
        its output may not be written) or run."""
        from .safe_write import check_output_path

        todo = []
        keep = _identities([*outputs, *map(Path, self.opt["protected"])])
        for source, output in outputs.items():
            self.order.append(source)
            try:
                stamp = fingerprint(source)
            except OSError as error:
                self._record(source, output, None, FAILED,
                             error=f"cannot read {source}: {error.strerror or error}")
                continue
            needed, reason = self.manifest.decide(source, output, self.params, stamp)
            spread = uncertainty_path(output) if self.opt["uncertainty"] else None
            if not needed and spread is not None and not spread.is_file():
                needed, reason = True, "uncertainty file missing"
            if not needed:
                last = self.manifest.latest(source) or {}
                self._record(source, output, stamp, SKIPPED, iterations=last.get("iterations"),
                             reason=reason)
                continue
            try:
                if output.exists() and _identities([output]) & keep:
                    raise ValueError(f"the output {output} is one of the inputs; choose "
                                     "another -o: napari-dip never writes onto its inputs")
                owned = self.opt["overwrite"] or self.manifest.owns(output)
                check_output_path(output, {"INPUT": source}, owned)
                if spread is not None:
                    if spread in outputs.values() or _identities([spread]) & keep:
                        raise ValueError(f"its uncertainty file {spread} is another input's "
                                         "output or an input; rename that input or restore "
                                         "it in a separate batch (other -o)")
                    check_output_path(spread, {"INPUT": source}, owned)
            except ValueError as error:
                self._record(source, output, stamp, FAILED, error=str(error), reason=reason)
                continue
            todo.append(_Item(source, output, stamp, reason))
        return todo

    # -- recording --------------------------------------------------------------------------
    def _record(self, source: Path, output: Path, stamp, status: str, *, error=None,
                iterations=None, seconds=None, reason=None, notify=True,
                uncertainty: Path | None = None) -> FileReport:
        """Append the file's manifest line and report it (``notify``: to the progress bar
        and ``on_result`` now; else the caller does, with :meth:`_notify`)."""
        line = {"input": str(source), **(stamp or {"size": None, "mtime_ns": None}),
                "params": self.params, "output": str(output), "status": status,
                "error": error, "iterations": iterations, "seconds": seconds}
        if uncertainty is not None:
            line["uncertainty"] = str(uncertainty)
        self.manifest.append(line)
        report = FileReport(source, output, status, iterations, seconds, error, reason)
        self.reports[source] = report
        if notify:
            self._notify(report)
        return report

    def _notify(self, report: FileReport) -> None:
        if self.bar is not None and report.status != SKIPPED:
            self.bar.update(1)
            self._postfix()
        if self.opt["on_result"] is not None:
            self.opt["on_result"](report)

    def _postfix(self, refresh: bool = False) -> None:
        if self.bar is not None:
            failed = sum(r.status == FAILED for r in self.reports.values())
            self.bar.set_postfix(failed=failed, running=self.running, refresh=refresh)

    def _finish(self, item: _Item) -> None:
        """Write a file whose jobs all answered, and record it."""
        answers = [item.answers[k] for k in sorted(item.answers)]
        bad = next((a for a in answers if a["status"] != DONE), None)
        seconds = round(sum(a.get("seconds") or 0 for a in answers), 3)
        if bad is not None:
            where = "" if len(answers) == 1 else \
                f"planes {bad['start']}:{bad['stop']}: "
            self._record(item.source, item.output, item.stamp, FAILED, seconds=seconds,
                         error=where + (bad["error"] or "failed"), reason=item.reason)
            return
        first = answers[0]
        image = first["image"] if len(answers) == 1 else \
            np.concatenate([a["image"] for a in answers], axis=0)
        parameters = dict(first["parameters"])
        if len(answers) > 1:
            parameters["split"] = {"planes": [[a["start"], a["stop"]] for a in answers],
                                   "iterations": [a["iterations"] for a in answers]}
        low = min(a["input_range"][0] for a in answers)
        high = max(a["input_range"][1] for a in answers)
        iterations = sum(a["iterations"] for a in answers)
        overwrite = self.opt["overwrite"] or self.manifest.owns(item.output)
        written = {item.output: (image, parameters)}
        spread_path = uncertainty_path(item.output) if self.opt["uncertainty"] else None
        if spread_path is not None:  # written first: it goes again if the output fails
            spread = first["uncertainty"] if len(answers) == 1 else \
                np.concatenate([a["uncertainty"] for a in answers], axis=0)
            written = {spread_path: (spread, {
                **parameters, "content": "uncertainty: the per-pixel standard deviation of "
                "the ensemble's fits, in the input's units"}), **written}
        with signals_deferred():  # the outputs and their manifest line together
            try:
                _write_all(written, first, (low, high), overwrite)
            except ValueError as error:
                report = self._record(item.source, item.output, item.stamp, FAILED,
                                      seconds=seconds, error=str(error), reason=item.reason,
                                      notify=False)
            else:
                report = self._record(item.source, item.output, item.stamp, DONE,
                                      iterations=iterations, seconds=seconds,
                                      reason=item.reason, notify=False,
                                      uncertainty=spread_path)
        self._notify(report)

    # -- jobs -------------------------------------------------------------------------------
    def _job(self, item: _Item, kwargs: dict[str, Any], **extra) -> dict[str, Any]:
        job = {"input": str(item.source), "kwargs": kwargs,
               "threads": self.opt["threads_per_worker"], **extra}
        name, _, marker = os.environ.get(CRASH_ONCE_ENV, "").partition("=")
        if name and name == item.source.name:
            job["crash_marker"] = marker
        return job

    def _chunk_jobs(self, item: _Item, slots: int) -> list[dict[str, Any]]:
        """``split="planes"``: the file read here and cut along its first axis (T, or Z
        restored plane by plane) into chunks of ``split_size`` (default: one chunk per
        worker thread); one job for a file that cannot be split."""
        from .batch_task import file_layout
        from .imageio import read_data

        source = read_data(item.source)
        kw = file_layout(source, self.kwargs)
        axes = (kw.get("axes") or "").upper()
        image = source.array
        iterated = "T" if kw.get("mode") == "volume" else "TZ"
        if not axes or axes[0] not in iterated or image.shape[0] < 2:
            item.chunks = [(0, image.shape[0])]
            return [self._job(item, kw, image=image, start=0, stop=image.shape[0])]
        n = image.shape[0]
        size = self.opt["split_size"] or math.ceil(n / max(1, slots))
        item.chunks = [(a, min(a + size, n)) for a in range(0, n, size)]
        jobs = []
        for a, b in item.chunks:
            part = dict(kw)
            for name in ("mask", "flash"):  # stacks of masks and flash shots are cut too
                array = kw.get(name)
                if array is not None and np.ndim(array) >= 3 and np.shape(array)[0] == n:
                    part[name] = np.asarray(array)[a:b]
            jobs.append(self._job(item, part, image=image[a:b], start=a, stop=b))
        return jobs

    def submit(self, client, todo: list[_Item]) -> dict[Any, tuple[_Item, int]]:
        """Send every job; returns {future: (its file, its chunk number)}."""
        from .batch_task import run_job

        slots = max(1, len(client.nthreads()) or (self.opt["workers"] or 1))
        futures = {}
        for item in todo:
            if self.opt["split"]:
                try:
                    jobs = self._chunk_jobs(item, slots)
                except ValueError as error:
                    self._record(item.source, item.output, item.stamp, FAILED,
                                 error=str(error), reason=item.reason)
                    continue
            else:
                item.chunks = [(0, 0)]
                jobs = [self._job(item, self.kwargs)]
            for k, job in enumerate(jobs):
                key = f"napari-dip-{stem_of(item.source)}-{k}-{uuid.uuid4().hex[:8]}"
                future = client.submit(run_job, job, key=key, pure=False,
                                       retries=self.opt["retries"])
                futures[future] = (item, k)
        return futures

    def _count_running(self, client, keys: set[str]) -> int:
        try:
            processing = client.processing()
            nthreads = client.nthreads()
        except Exception:  # noqa: BLE001 - only the progress bar's count
            return self.running
        return sum(min(len([k for k in ks if k in keys]), nthreads.get(w, 1))
                   for w, ks in processing.items())

    def collect(self, client, futures: dict[Any, tuple[_Item, int]]) -> None:
        """Take the answers as they come, writing each file once all its jobs answered."""
        from distributed import as_completed

        done = as_completed(list(futures))
        keys = {f.key for f in futures}
        polled = 0.0
        while futures:
            ready = done.next_batch(block=False)
            if not ready:
                if time.monotonic() - polled > 1:
                    running, self.running = self.running, self._count_running(client, keys)
                    self._postfix(refresh=running != self.running)
                    polled = time.monotonic()
                time.sleep(0.05)
                continue
            for future in ready:
                item, k = futures.pop(future)
                keys.discard(future.key)
                if future.status == "finished":
                    answer = future.result()
                else:
                    answer = {"status": FAILED, "error": _failure(future)}
                answer.setdefault("start", item.chunks[k][0])
                answer.setdefault("stop", item.chunks[k][1])
                item.answers[k] = answer
                future.release()
                if len(item.answers) == len(item.chunks):
                    self._finish(item)

    def report(self) -> BatchReport:
        files = [self.reports[s] for s in self.order if s in self.reports]
        return BatchReport(files, self.manifest.path)


def _start_bar(total: int, skipped: int, quiet: bool):
    if quiet or total == 0:
        return None
    from tqdm import tqdm

    if skipped:
        print(f"napari-dip batch: {skipped} file{'s' if skipped > 1 else ''} done before "
              "with the same settings, skipped", file=sys.stderr)
    return tqdm(total=total, unit="file", desc="napari-dip batch", dynamic_ncols=True,
                file=sys.stderr, mininterval=1.0)


def batch(inputs: str | Path | Iterable[str | Path], out_dir: str | Path, client=None, *,
          overwrite: bool = False, split: str | None = None, split_size: int | None = None,
          workers: int | None = None, threads_per_worker: int = 1,
          scheduler: str | None = None, cluster: str | None = None,
          cluster_options: dict[str, Any] | None = None, retries: int = 2,
          progress: bool = True, on_result: Callable[[FileReport], None] | None = None,
          protected: Iterable[str | Path] = (), uncertainty: bool = False,
          **restore_kwargs) -> BatchReport:
    """Restore every file of ``inputs`` (files, folders, glob patterns) into ``out_dir`` with
    the same :func:`napari_dip.restore` arguments, on Dask distributed.

    Each result is ``out_dir/<name>.tif``; ``out_dir/napari-dip-batch.jsonl`` records every
    file (see :mod:`napari_dip.manifest`). Running the same call again skips the files done
    with the same input and settings (whose output still exists), retries failed ones and
    redoes changed ones. An existing output the manifest does not record as done is kept
    unless ``overwrite``; outputs are never written onto inputs (or ``protected`` files).

    ``client``: a ``distributed.Client`` to use (left open); otherwise one is opened on
    ``scheduler`` (an address), on a dask-jobqueue ``cluster`` (``"slurm"``, ``"pbs"``,
    ``"lsf"`` with ``cluster_options``, e.g. ``{"queue": ..., "cores": 8, "memory":
    "16GB"}``) or on a local cluster of ``workers`` processes (default one per
    ``threads_per_worker`` cores). Each restoration uses ``threads_per_worker`` torch threads.
    ``split="planes"`` cuts each stack along its first axis (T, or Z restored plane by plane)
    into chunks of ``split_size`` planes (default: one per worker) restored on different
    workers, each chunk warm-starting within itself. ``uncertainty`` (with ``ensemble``
    K >= 2): also write each result's per-pixel standard deviation over the K fits, in the
    input's units, as ``out_dir/<name>_uncertainty.tif``. ``progress``: a bar on stderr;
    ``on_result(FileReport)`` is called as each file is recorded (an exception there stops
    the batch as Ctrl-C does). ``retries``: reruns of a job that ran out of memory.

    Returns a :class:`BatchReport`; one file's failure (a corrupt input, settings that do
    not suit it, a run that does not fit a worker) is in its report, and the others go on.
    Raises ValueError before any work for settings every file would refuse, missing
    inputs, or two inputs with the same output name; KeyboardInterrupt passes after the
    batch has stopped cleanly."""
    if split not in (None, *SPLITS):
        raise ValueError(f"split takes {', '.join(SPLITS)} or None, got {split!r}")
    if split_size is not None and split_size < 1:
        raise ValueError(f"--split-size must be at least 1, got {split_size}")
    if not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise ValueError(f"--threads-per-worker must be at least 1, got {threads_per_worker}")
    if uncertainty:
        check_uncertainty_ensemble(restore_kwargs.get("ensemble"))
    out_dir = Path(out_dir).absolute()
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    _check_settings(restore_kwargs)
    manifest = Manifest(out_dir)  # read only: which files are earlier outputs
    outputs = check_names(find_inputs(inputs, manifest.outputs_done()), out_dir)
    _prepare_folder(out_dir)
    settings = {**restore_kwargs, "split": split, "split_size": split_size}
    if uncertainty:  # only then, so that earlier manifests' settings keep their hash
        settings["uncertainty"] = True
    options = {"overwrite": overwrite, "split": split, "split_size": split_size,
               "uncertainty": uncertainty,
               "workers": workers, "threads_per_worker": threads_per_worker,
               "retries": retries, "on_result": on_result, "protected": list(protected)}
    with manifest:
        run = _Batch(manifest, settings, dict(restore_kwargs), options)
        manifest.note_settings(run.params, settings)
        todo = run.plan(outputs)
        if todo:
            _execute(run, todo, client, progress, scheduler=scheduler, cluster=cluster,
                     cluster_options=cluster_options, workers=workers,
                     threads_per_worker=threads_per_worker)
        return run.report()


def _execute(run: _Batch, todo: list[_Item], client, progress: bool, **cluster) -> None:
    """Open the client, send the jobs, take the answers; on any interruption cancel what
    is left (the client and a cluster it started are closed on the way out)."""
    from .batch_cluster import open_client

    skipped = sum(r.status == SKIPPED for r in run.reports.values())
    with open_client(client, quiet=not progress, **cluster) as c:
        futures = {}
        run.bar = _start_bar(len(todo), skipped, not progress)
        try:
            futures = run.submit(c, todo)
            run.collect(c, futures)
        except BaseException:
            if futures:
                with contextlib.suppress(Exception):
                    c.cancel(list(futures), force=True)
            raise
        finally:
            if run.bar is not None:
                run.bar.close()


__all__ = ["BatchReport", "FileReport", "batch"]
