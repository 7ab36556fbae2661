"""The record of a batch: ``OUTDIR/napari-dip-batch.jsonl``, one JSON object a line.

Only the client process of :func:`napari_dip.batch` writes it, and only by appending: each
line is flushed and synced to disk before the next file is taken up, so a batch stopped at
any moment (Ctrl-C, a killed client, a power cut) leaves every finished file recorded and
at worst one torn last line, which reading skips. Two kinds of line:

- a file's outcome: ``input`` (absolute path), ``size`` and ``mtime_ns`` of the input when
  it was taken up, ``params`` (:func:`parameters_hash` of the settings), ``output``,
  ``status`` (``done``, ``failed`` or ``skipped``: done before with the same input and
  settings), ``error`` (the message, or null), ``iterations``, ``seconds`` (compute time
  on the workers) and ``time`` (when the line was written, ISO 8601, UTC);
- the settings behind a hash, once per hash: ``params`` and ``settings``.

:meth:`Manifest.decide` says whether an input needs a run: not when its latest ``done`` (or
``skipped``) line has the same size, modification time and parameters hash and the output
it names still exists; a ``failed`` line never counts as done. Torch-free and dask-free.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: The manifest's file name inside the output folder.
MANIFEST_NAME = "napari-dip-batch.jsonl"
#: Statuses of a file's line; ``skipped`` counts as done for the next run.
DONE, FAILED, SKIPPED = "done", "failed", "skipped"


def _canonical(value: Any) -> Any:
    """``value`` as plain JSON; arrays by their shape, dtype and a hash of their bytes."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        return {"array": hashlib.sha256(data.tobytes()).hexdigest()[:16],
                "shape": list(data.shape), "dtype": str(data.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def settings_record(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings as they are written to the manifest (arrays summarised)."""
    return _canonical(dict(settings))


def parameters_hash(settings: Mapping[str, Any]) -> str:
    """A short hash (16 hex digits) of the settings that decide a result: equal settings
    (dict order aside; arrays by content) give equal hashes."""
    text = json.dumps(settings_record(settings), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(path: str | Path) -> dict[str, int]:
    """The input's ``size`` (bytes) and ``mtime_ns`` (modification time, nanoseconds);
    OSError if it cannot be looked at."""
    st = os.stat(path)
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every complete line of a manifest (none if there is no file); a line that is not a
    JSON object (a torn last line) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
    return records


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class Manifest:
    """The manifest of one output folder, opened for appending by one batch at a time (an
    exclusive lock on POSIX: a second batch writing into the same folder is refused)."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / MANIFEST_NAME
        self.records = read_records(self.path)
        self._latest: dict[str, dict[str, Any]] = {}
        self._hashes = {r["params"] for r in self.records if "settings" in r}
        for record in self.records:
            if "status" in record and "input" in record:
                self._latest[record["input"]] = record
        self._file = None

    # -- reading ----------------------------------------------------------------------------
    def latest(self, source: str | Path) -> dict[str, Any] | None:
        """The last line about ``source`` (an input path), or None."""
        return self._latest.get(str(Path(source).absolute()))

    def outputs_done(self) -> set[str]:
        """Absolute paths of the outputs that lines record as written (done or skipped),
        uncertainty files included."""
        return {str(Path(r[key]).absolute()) for r in self.records
                if r.get("status") in (DONE, SKIPPED) for key in ("output", "uncertainty")
                if r.get(key)}

    def decide(self, source: str | Path, output: str | Path, params: str,
               stamp: Mapping[str, int]) -> tuple[bool, str]:
        """(whether ``source`` needs a run, why) given the input's :func:`fingerprint`
        ``stamp`` and the settings' hash ``params``."""
        last = self.latest(source)
        if last is None:
            return True, "new"
        if last.get("status") not in (DONE, SKIPPED):
            return True, "failed before"
        if (last.get("size"), last.get("mtime_ns")) != (stamp["size"], stamp["mtime_ns"]):
            return True, "input changed"
        if last.get("params") != params:
            return True, "parameters changed"
        if str(Path(last.get("output", "")).absolute()) != str(Path(output).absolute()) \
                or not Path(output).is_file():
            return True, "output missing"
        return False, "done before"

    def owns(self, output: str | Path) -> bool:
        """Whether ``output`` was written by a batch into this folder (a done line names
        it), so that a rerun may replace it."""
        return str(Path(output).absolute()) in self.outputs_done()

    # -- writing ----------------------------------------------------------------------------
    def open(self) -> Manifest:
        """Open for appending and take the folder's lock; ValueError if another batch holds
        it. A torn last line left by a killed batch is ended first."""
        self._file = open(self.path, "a+b")  # noqa: SIM115 - kept open until close()
        try:
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # Windows: no lock
            pass
        except OSError as error:  # other errors: a file system without locks, go on
            if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                self._file.close()
                self._file = None
                raise ValueError(f"another napari-dip batch is writing into "
                                 f"{self.path.parent} (its manifest is locked); wait for it "
                                 "or choose another -o") from None
        self._file.seek(0, os.SEEK_END)
        if self._file.tell():
            self._file.seek(-1, os.SEEK_END)
            if self._file.read(1) != b"\n":
                self._write_line("")
        return self

    def _write_line(self, text: str) -> None:
        self._file.write((text + "\n").encode("utf-8"))
        self._file.flush()
        os.fsync(self._file.fileno())

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Append one line (``time`` added) and sync it to disk; returns the record."""
        if self._file is None:
            raise RuntimeError("the manifest is not open")
        line = {**_canonical(dict(record)), "time": _now()}
        self._write_line(json.dumps(line, default=repr))
        self.records.append(line)
        if "status" in line and "input" in line:
            self._latest[line["input"]] = line
        return line

    def note_settings(self, params: str, settings: Mapping[str, Any]) -> None:
        """Record the settings behind a hash, the first time it is used here."""
        if params not in self._hashes:
            self.append({"params": params, "settings": settings_record(settings)})
            self._hashes.add(params)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None

    def __enter__(self) -> Manifest:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def opened(folder: str | Path) -> Iterator[Manifest]:
    """``with opened(OUTDIR) as manifest:`` the folder's manifest, locked and appendable."""
    manifest = Manifest(folder)
    with manifest:
        yield manifest


__all__ = ["DONE", "FAILED", "MANIFEST_NAME", "SKIPPED", "Manifest", "fingerprint",
           "opened", "parameters_hash", "read_records", "settings_record"]
