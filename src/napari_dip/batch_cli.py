"""The ``napari-dip batch`` command's own options, ``--params`` (the JSON the widget's
"Export JSON…" writes), and the run with its summary and exit status.

:mod:`napari_dip.cli` adds the options of ``restore`` to the same parser and turns them into
``restore`` arguments; this module imports nothing of the command line (no cycle), nor dask
or torch until a batch runs.

``--params FILE`` fills every option that is not given on the command line: the JSON's
``restore`` section (the widget's settings) becomes the options' values, as if they had
been typed, so the same checks and conversions apply; an option given explicitly wins.
Options are recognised only when spelt out (the batch parser takes no abbreviations). The
layer's layout (``axes``, ``channel_axis``) is not taken: each file's own is, as
``napari-dip restore`` reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: Settings that the widget exports but a batch does not take.
_NOT_SETTINGS = ("preview_every",)


def add_batch_options(b: argparse.ArgumentParser) -> None:
    """INPUTS, -o OUTDIR and the options of the batch itself (the cluster, splitting,
    --params, --overwrite, --quiet)."""
    from .batch_cluster import JOB_QUEUES

    b.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (their image files) and glob patterns "
                        "(quote them; ** recurses)")
    b.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="folder for the results (OUTDIR/<name>.tif) and the manifest "
                        "OUTDIR/napari-dip-batch.jsonl; created if missing")
    b.add_argument("--params", metavar="FILE",
                   help="settings from the widget's 'Export JSON…' file; options given "
                        "here override them")
    b.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs that the manifest does not record as done")
    b.add_argument("--uncertainty", action="store_true",
                   help="with --ensemble K (K >= 2): also write each result's per-pixel "
                        "standard deviation of the K fits as OUTDIR/<name>_uncertainty.tif")
    b.add_argument("--workers", type=int, help="local cluster: worker processes (default: "
                   "one per --threads-per-worker cores); --cluster: worker processes in all")
    b.add_argument("--threads-per-worker", type=int, default=None, metavar="N",
                   help="torch threads of each restoration (default 1; --threads is the "
                        "same); each worker restores one file at a time")
    b.add_argument("--scheduler", metavar="ADDRESS",
                   help="use a running Dask scheduler, e.g. tcp://HOST:8786 (the inputs "
                        "and OUTDIR must be on a file system its workers share)")
    b.add_argument("--cluster", choices=tuple(JOB_QUEUES),
                   help="start a cluster through dask-jobqueue (pip install "
                        "\"napari-dip[cluster]\")")
    b.add_argument("--cluster-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the dask-jobqueue cluster, e.g. queue=normal, "
                        "cores=8, memory=16GB, walltime=04:00:00 (repeat for several)")
    b.add_argument("--split", choices=("planes",),
                   help="restore chunks of planes of each stack on different workers "
                        "(each chunk warm-starts within itself)")
    b.add_argument("--split-size", type=int, metavar="N",
                   help="planes per chunk with --split planes (default: one chunk per "
                        "worker)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")


def given_options(argv: list[str]) -> set[str]:
    """The destinations of the options written out in ``argv`` (``--no-early-stop`` ->
    ``no_early_stop``); what follows ``--`` is not an option."""
    given = set()
    for token in argv:
        if token == "--":
            break
        if token.startswith("--"):
            given.add(token[2:].split("=", 1)[0].replace("-", "_"))
    return given


def _number_text(value: Any) -> str:
    return "none" if value is None else str(value) if isinstance(value, str) \
        else repr(float(value))


#: restore argument -> (its option's destination, the option's value for it).
_AS_OPTION = {
    "noise_sigma": ("noise_sigma", _number_text),
    "denoiser_sigma": ("denoiser_sigma", _number_text),
    "tile": ("tile", lambda v: None if v is None else str(v)),
    "early_stop": ("no_early_stop", lambda v: v is False),
    "warm_start": ("no_warm_start", lambda v: v is False),
    "kernel": ("kernel", lambda v: v),
    **{name: (name, lambda v: v) for name in (
        "task", "method", "preset", "iterations", "seed", "device", "noise", "factor",
        "denoiser", "axes", "mode", "overlap", "channel_axis", "ensemble")},
}


def _has_option(name: str, value: Any) -> bool:
    """Whether an option can say ``name=value`` (an integer patience, a kernel array and
    settings without an option go to ``restore`` as they are)."""
    if name in ("early_stop", "warm_start"):
        return isinstance(value, bool)
    if name == "kernel":
        return isinstance(value, str)
    return name in _AS_OPTION


def read_params(path: str | Path) -> dict[str, Any]:
    """The JSON of ``--params``: the widget's export ({"restore": {...}, "inputs": ...}) or
    a plain object of ``restore`` arguments. ValueError naming the file otherwise."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read --params {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise ValueError(f"--params {path} is not JSON: {error}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("restore", {}), dict):
        raise ValueError(f"--params {path}: expected the JSON the widget's 'Export JSON…' "
                         "writes (an object with a 'restore' section)")
    return doc


def _check_arrays(doc: dict[str, Any], args, path) -> None:
    """The widget's arrays came from layers: the batch needs them as files."""
    inputs = doc.get("inputs") or {}
    for name in ("mask", "flash"):
        if name in inputs and getattr(args, name) is None:
            raise ValueError(f"--params {path} was tuned with a {name} (the layer "
                             f"{inputs[name]!r}); pass it as a file: --{name} FILE")
    if "plane" in inputs:
        print(f"napari-dip batch: the widget restored only the plane {inputs['plane']}; the "
              "batch restores every plane of each file", file=sys.stderr)


def apply_params(args, argv: list[str]) -> dict[str, Any]:
    """With ``--params``: set every option not given in ``argv`` from the JSON, and return
    the ``restore`` arguments that have no option (voxel spacing, ES-WMV patience, method
    settings), which the caller adds. Without it: nothing changes ({})."""
    if not args.params:
        return {}
    doc = read_params(args.params)
    settings = dict(doc["restore"] if "restore" in doc else doc)
    given = given_options(argv)
    _check_arrays(doc, args, args.params)
    # the layer's layout: each file's own is taken instead (or --axes / --channel-axis)
    dropped = {"axes", "channel_axis"}
    if "method" in given and args.method != settings.get("method", args.method):
        dropped |= {"denoiser", "denoiser_sigma"}  # the other method's settings
    settings = {k: v for k, v in settings.items() if k not in dropped}
    extra: dict[str, Any] = {}
    for name, value in settings.items():
        if name in _NOT_SETTINGS or name in ("mask", "flash"):
            continue
        dest, convert = _AS_OPTION.get(name, (name, None))
        if dest in given:
            continue
        if _has_option(name, value):
            setattr(args, dest, convert(value))
        else:
            extra[name] = value
    return extra


def protected_files(args) -> list[str]:
    """Files the batch reads besides its inputs (never to be written)."""
    files = [args.mask, args.flash, args.params]
    if args.kernel not in (None, "gaussian", "uniform"):
        files.append(args.kernel)
    return [f for f in files if f]


def run_batch_command(args, kwargs: dict[str, Any]) -> int:
    """Run the batch; print a JSON summary (stdout) and the failures (stderr). Exit status
    0 when every file is done (or was before), 1 when some failed."""
    from .batch_cluster import parse_option
    from .batch_run import batch

    options = dict(parse_option(text) for text in args.cluster_option)
    if options and not args.cluster:
        raise ValueError("--cluster-option needs --cluster (slurm, pbs or lsf)")
    threads = next((n for n in (args.threads_per_worker, args.threads) if n is not None), 1)
    try:
        report = batch(args.inputs, args.output, overwrite=args.overwrite, split=args.split,
                       split_size=args.split_size, workers=args.workers,
                       threads_per_worker=threads, scheduler=args.scheduler,
                       cluster=args.cluster, cluster_options=options,
                       progress=not args.quiet, protected=protected_files(args),
                       uncertainty=args.uncertainty, **kwargs)
    except KeyboardInterrupt:
        print("napari-dip batch: stopped; the outputs written so far are complete and "
              "recorded: run the same command again to resume", file=sys.stderr)
        raise
    print(json.dumps({"files": len(report), "done": report.count("done"),
                      "skipped": report.count("skipped"), "failed": report.count("failed"),
                      "manifest": str(report.manifest)}))
    failed = report.failed
    for entry in failed[:10]:
        print(f"napari-dip batch: {entry.input}: {entry.error}", file=sys.stderr)
    if failed:
        more = f" ({len(failed) - 10} more in the manifest)" if len(failed) > 10 else ""
        print(f"napari-dip batch: {len(failed)} of {len(report)} failed{more}; see "
              f"{report.manifest}", file=sys.stderr)
        return 1
    return 0


__all__ = ["add_batch_options", "apply_params", "given_options", "protected_files",
           "read_params", "run_batch_command"]
